"""The fused image kernels against the numpy formulas they replace, on both code paths."""

from __future__ import annotations

import numpy as np
import pytest

from arena.ground import contract
from attackers import kernels

SHAPE = (3, 8, 8)


@pytest.fixture(params=["serial", "parallel"])
def path(request, monkeypatch):
    """Runs a test once on the one-thread kernels and once on the parallel ones."""
    monkeypatch.setattr(kernels, "PARALLEL_MIN_VALUES", 0 if request.param == "parallel" else 10**12)
    return request.param


def _rng():
    return np.random.default_rng(7)


def test_step_is_clip_of_base_plus_coef_times_direction(path):
    rng = _rng()
    base = rng.random((5, *SHAPE), dtype=np.float32)
    direction = rng.standard_normal((4, *SHAPE), dtype=np.float32)
    base_rows = np.array([0, 0, 3, 4, 1, 2])
    direction_rows = np.array([1, 2, 0, 3, 3, 1])
    coef = rng.standard_normal(6).astype(np.float32)
    got = kernels.step(base, coef, direction, (0.0, 1.0), base_rows=base_rows, direction_rows=direction_rows)
    want = np.clip(base[base_rows] + coef[:, None, None, None] * direction[direction_rows], 0.0, 1.0)
    assert got.dtype == np.float32 and got.shape == (6, *SHAPE)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)  # FMA may round once instead of twice
    assert got.min() >= 0.0 and got.max() <= 1.0 and (got == 0.0).any() and (got == 1.0).any()


def test_step_defaults_and_unbounded_difference(path):
    rng = _rng()
    a = rng.random((3, *SHAPE), dtype=np.float32)
    b = rng.random((3, *SHAPE), dtype=np.float32)
    # scalar coefficient, identity rows, no clipping: a - b exactly (one rounding)
    np.testing.assert_array_equal(kernels.step(a, -1.0, b, (-np.inf, np.inf)), a - b)


def test_l2_distances_are_exact_float64(path):
    rng = _rng()
    images = rng.random((6, *SHAPE), dtype=np.float32)
    originals = rng.random((3, *SHAPE), dtype=np.float32)
    rows, owners = np.array([5, 1, 1, 0]), np.array([0, 2, 1, 1])
    got = kernels.l2_distances(images, originals, rows=rows, owners=owners)
    want = contract.l2_distances(images[rows], originals[owners])   # the reference of the rules
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-13)
    # defaults: row k against original k
    np.testing.assert_allclose(kernels.l2_distances(images[:3], originals),
                               contract.l2_distances(images[:3], originals), rtol=1e-13)


def test_copy_rows_copies_in_place(path):
    rng = _rng()
    dest = rng.random((5, *SHAPE), dtype=np.float32)
    src = rng.random((3, *SHAPE), dtype=np.float32)
    want = dest.copy()
    want[[4, 0]] = src[[2, 2]]
    kernels.copy_rows(dest, np.array([4, 0]), src, np.array([2, 2]))
    np.testing.assert_array_equal(dest, want)


def test_serial_and_parallel_paths_agree_bit_for_bit(monkeypatch):
    rng = _rng()
    base = rng.random((7, 3, 64, 64), dtype=np.float32)
    direction = rng.standard_normal((7, 3, 64, 64), dtype=np.float32)
    coef = rng.random(7).astype(np.float32)
    out = {}
    for name, threshold in (("serial", 10**12), ("parallel", 0)):
        monkeypatch.setattr(kernels, "PARALLEL_MIN_VALUES", threshold)
        out[name] = (kernels.step(base, coef, direction, (0.0, 1.0)), kernels.l2_distances(base, direction))
    np.testing.assert_array_equal(out["serial"][0], out["parallel"][0])
    np.testing.assert_array_equal(out["serial"][1], out["parallel"][1])


def test_bad_rows_and_shapes_are_refused():
    base = np.zeros((2, *SHAPE), dtype=np.float32)
    with pytest.raises(IndexError, match="base_rows"):
        kernels.step(base, 1.0, base, (0, 1), base_rows=np.array([2]))
    with pytest.raises(ValueError, match="disagree"):
        kernels.step(base, np.ones(3, dtype=np.float32), base, (0, 1), base_rows=np.array([0, 1]))
    with pytest.raises(ValueError, match="differ"):
        kernels.step(base, 1.0, np.zeros((2, 3, 4, 4), dtype=np.float32), (0, 1))
    with pytest.raises(IndexError, match="owners"):
        kernels.l2_distances(base, base, owners=np.array([0, 5]))


def _exact(images, originals):
    diff = images.reshape(len(images), -1).astype(np.float64) - originals.reshape(len(originals), -1)
    return np.sqrt((diff ** 2).sum(axis=1))


def test_step_measures_what_it_writes(path):
    rng = _rng()
    base = rng.random((3, *SHAPE), dtype=np.float32)
    direction = rng.standard_normal((2, *SHAPE), dtype=np.float32)
    originals = rng.random((4, *SHAPE), dtype=np.float32)
    owners = np.array([3, 0, 0, 2])
    images, d = kernels.step(base, np.array([0.5, -2.0, 0.1, 3.0], np.float32), direction, (0.0, 1.0),
                             base_rows=np.array([0, 1, 2, 2]), direction_rows=np.array([1, 0, 0, 1]),
                             distances_to=(originals, owners))
    assert d.dtype == np.float64
    np.testing.assert_allclose(d, _exact(images, originals[owners]), rtol=1e-13)
    np.testing.assert_array_equal(images, kernels.step(base, np.array([0.5, -2.0, 0.1, 3.0], np.float32), direction,
                                                       (0.0, 1.0), base_rows=np.array([0, 1, 2, 2]),
                                                       direction_rows=np.array([1, 0, 0, 1])))


def test_step_upsampled_is_step_with_the_upsampled_direction(path):
    from attackers.probes import draw_directions, vertical_weights

    rng = _rng()
    shape = (3, 16, 16)
    dirs = draw_directions(rng, 5, shape, 4)
    u = dirs.full()
    base = rng.random((3, *shape), dtype=np.float32)
    base_rows, direction_rows = np.array([0, 2, 2, 1, 0, 1]), np.array([4, 4, 0, 1, 2, 3])
    coef = rng.standard_normal(6).astype(np.float32)
    got, d = kernels.step_upsampled(base, coef, dirs.rows, vertical_weights(16, 4), (0.0, 1.0), base_rows=base_rows,
                                    direction_rows=direction_rows, distances_to=(base, base_rows))
    want = np.clip(base[base_rows] + coef[:, None, None, None] * u[direction_rows], 0.0, 1.0)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(d, _exact(got, base[base_rows]), rtol=1e-13)
    with pytest.raises(ValueError, match="vertical"):
        kernels.step_upsampled(base, coef, dirs.rows, vertical_weights(8, 4), (0.0, 1.0), base_rows=base_rows,
                               direction_rows=direction_rows)


def test_keep_closer_measures_and_copies_only_what_is_closer(path):
    rng = _rng()
    originals = rng.random((3, *SHAPE), dtype=np.float32)
    src = rng.random((4, *SHAPE), dtype=np.float32)
    dest = rng.random((3, *SHAPE), dtype=np.float32)
    before = dest.copy()
    src_rows, dest_rows = np.array([3, 1, 0]), np.array([2, 0, 1])
    exact = _exact(src[src_rows], originals[dest_rows])
    limits = np.array([exact[0] + 1.0, exact[1], exact[2] - 1e-9])  # closer; a tie; farther
    got = kernels.keep_closer(dest, dest_rows, limits, src, src_rows, originals, dest_rows)
    np.testing.assert_allclose(got, exact, rtol=1e-13)
    np.testing.assert_array_equal(dest[2], src[3])
    np.testing.assert_array_equal(dest[[0, 1]], before[[0, 1]])


def test_boundary_proposals_follow_the_papers_geometry(path):
    rng = _rng()
    x0 = rng.random((3, *SHAPE), dtype=np.float32) * 0.5 + 0.25
    current = np.clip(x0 + rng.standard_normal(x0.shape).astype(np.float32) * 0.05, 0, 1)
    eta = rng.standard_normal(SHAPE).astype(np.float32)
    rows = np.array([2, 0])
    dist = _exact(current[rows], x0[rows])
    spherical, source = np.array([0.05, 0.2]), np.array([0.1, 0.01])
    got, d = kernels.boundary_proposals(x0, current, rows, eta, dist, spherical, source, (0.0, 1.0), True)
    assert got.shape == (4, *SHAPE)
    np.testing.assert_allclose(d, _exact(got, x0[np.tile(rows, 2)]), rtol=1e-12)
    for k, row in enumerate(rows):
        r = (current[row] - x0[row]).astype(np.float64).ravel()
        e = eta.astype(np.float64).ravel()
        ortho = e - (r @ e) / (r @ r) * r
        ortho *= spherical[k] * dist[k] / np.linalg.norm(ortho)
        sphere = (r + ortho) / np.sqrt(1 + spherical[k] ** 2)       # back on the sphere of radius dist
        np.testing.assert_allclose(np.linalg.norm(sphere), dist[k], rtol=1e-9)
        want_sph = np.clip(x0[row].ravel() + sphere, 0, 1)
        want_full = np.clip(x0[row].ravel() + (1 - source[k]) * sphere, 0, 1)
        np.testing.assert_allclose(got[k].ravel(), want_full, atol=2e-6)
        np.testing.assert_allclose(got[2 + k].ravel(), want_sph, atol=2e-6)
    only, _ = kernels.boundary_proposals(x0, current, rows, eta, dist, spherical, source, (0.0, 1.0), False)
    np.testing.assert_array_equal(only, got[:2])


def test_new_kernels_agree_bit_for_bit_on_both_paths(monkeypatch):
    from attackers.probes import draw_directions, vertical_weights

    rng = _rng()
    x0 = rng.random((5, 3, 64, 64), dtype=np.float32)
    current = np.clip(x0 + rng.standard_normal(x0.shape).astype(np.float32) * 0.05, 0, 1)
    dirs = draw_directions(rng, 4, (3, 64, 64), 16)
    rows = np.array([4, 1, 0])
    out = {}
    for name, threshold in (("serial", 10**12), ("parallel", 0)):
        monkeypatch.setattr(kernels, "PARALLEL_MIN_VALUES", threshold)
        probes = kernels.step_upsampled(x0, np.float32(0.3), dirs.rows, vertical_weights(64, 16), (0.0, 1.0),
                                        base_rows=rows, direction_rows=np.array([3, 0, 1]),
                                        distances_to=(current, rows))
        proposals = kernels.boundary_proposals(x0, current, rows, dirs.full()[0], np.ones(3), np.full(3, 0.05),
                                               np.full(3, 0.01), (0.0, 1.0), True)
        out[name] = (*probes, *proposals)
    for a, b in zip(out["serial"], out["parallel"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_probe_tiles_cover_every_probe_once_in_bounded_groups():
    counts = np.array([5, 300, 700, 20, 1, 1024, 3])
    seen = []
    for start, stop, local, within in kernels.probe_tiles(counts, 1024, 4):
        group = counts[start:stop]
        assert group.sum() <= 1024 or stop - start == 1     # a sample is never split
        assert local.size == group.sum()
        # probe p: sample start + local[p], direction within[p] < that sample's count
        assert (within < group[local]).all()
        # direction-major within tiles of 4 samples
        tiles = local // 4
        assert (np.diff(tiles) >= 0).all()
        for tile in np.unique(tiles):
            w = within[tiles == tile]
            assert (np.diff(w) >= 0).all()
        seen += [(start + i, j) for i, j in zip(local, within)]
    expected = [(i, j) for i in range(counts.size) for j in range(counts[i])]
    assert sorted(seen) == expected
