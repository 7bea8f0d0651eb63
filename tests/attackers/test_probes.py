"""Random probe directions: the low-resolution ones are the bilinear upsampling of their draws,
and their norms are those of the full-resolution directions."""

from __future__ import annotations

import numpy as np
import pytest

from attackers.probes import upsample_matrix, draw_directions, upsample, vertical_weights


def test_vertical_weights_are_bilinear_with_clamped_edges():
    first, second, w_first, w_second = vertical_weights(8, 4)
    np.testing.assert_allclose(w_first + w_second, 1.0)
    # sample centres at (i + 0.5) / 2 - 0.5 in source pixels: -0.25, 0.25, 0.75, ...
    assert (first[0], second[0]) == (0, 0)  # clamped at the left edge: the first pixel alone
    np.testing.assert_allclose([w_first[1], w_second[1]], [0.75, 0.25])
    assert (first[1], second[1]) == (0, 1)
    assert (first[-1], second[-1]) == (3, 3)
    m = upsample_matrix(8, 4)
    z = np.arange(4, dtype=np.float32)
    np.testing.assert_allclose(m @ z, w_first * z[first] + w_second * z[second])


def test_upsample_reproduces_constants_and_ramps():
    z = np.full((2, 3, 4, 4), 2.5, dtype=np.float32)
    np.testing.assert_allclose(upsample(z, (3, 16, 16)), 2.5, rtol=1e-6)
    ramp = np.tile(np.arange(4, dtype=np.float32), (1, 1, 4, 1))
    up = upsample(ramp, (1, 16, 16))[0, 0, 5]
    np.testing.assert_allclose(np.diff(up[2:-2]), 0.25, rtol=1e-5)  # linear inside the edges


@pytest.mark.parametrize("resolution", [None, 16, 8])
def test_directions_norms_are_those_of_the_full_resolution_directions(resolution):
    rng = np.random.default_rng(3)
    d = draw_directions(rng, 6, (3, 64, 64), resolution)
    u = d.full()
    assert u.shape == (6, 3, 64, 64) and d.low_resolution == (resolution is not None)
    np.testing.assert_allclose(d.inv_norm * np.linalg.norm(u.reshape(6, -1).astype(np.float64), axis=1), 1.0, rtol=1e-5)


def test_probes_are_clipped_steps_along_the_directions():
    rng = np.random.default_rng(4)
    d = draw_directions(rng, 3, (3, 64, 64), 16)
    x = rng.random((2, 3, 64, 64), dtype=np.float32)
    coef = np.array([0.5, -1.0, 2.0, 0.1], dtype=np.float32)
    base_rows, direction_rows = np.array([0, 1, 1, 0]), np.array([2, 0, 1, 1])
    got, dist = d.probes(x, coef, (0.0, 1.0), base_rows=base_rows, direction_rows=direction_rows,
                         distances_to=(x, base_rows))
    want = np.clip(x[base_rows] + coef[:, None, None, None] * d.full()[direction_rows], 0.0, 1.0)
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(dist, np.linalg.norm((got - x[base_rows]).reshape(4, -1).astype(np.float64), axis=1),
                               rtol=1e-6)
