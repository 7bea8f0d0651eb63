"""The fused image kernels against the numpy formulas they replace, on both code paths."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_step2_is_clip_of_base_plus_two_terms(path):
    rng = _rng()
    base = rng.random((4, *SHAPE), dtype=np.float32)
    r = rng.standard_normal((4, *SHAPE), dtype=np.float32) * 0.3
    eta = rng.standard_normal((1, *SHAPE), dtype=np.float32)
    rows = np.array([2, 0, 2, 3])
    c1 = rng.random(4).astype(np.float32)
    c2 = rng.standard_normal(4).astype(np.float32) * 0.1
    got = kernels.step2(base, c1, r, c2, eta, (0.0, 1.0), rows=rows, direction2_rows=np.zeros(4, dtype=np.int64))
    want = np.clip(base[rows] + c1[:, None, None, None] * r[rows] + c2[:, None, None, None] * eta[0], 0.0, 1.0)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_l2_distances_are_exact_float64(path):
    rng = _rng()
    images = rng.random((6, *SHAPE), dtype=np.float32)
    originals = rng.random((3, *SHAPE), dtype=np.float32)
    rows, owners = np.array([5, 1, 1, 0]), np.array([0, 2, 1, 1])
    got = kernels.l2_distances(images, originals, rows=rows, owners=owners)
    diff = images[rows].astype(np.float64) - originals[owners].astype(np.float64)
    want = np.sqrt((diff.reshape(4, -1) ** 2).sum(axis=1))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-13)
    # defaults: row k against original k
    np.testing.assert_allclose(kernels.l2_distances(images[:3], originals),
                               np.linalg.norm((images[:3].astype(np.float64) - originals).reshape(3, -1), axis=1), rtol=1e-13)


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


def test_step_writes_rows_in_place(path):
    rng = _rng()
    a = rng.random((4, *SHAPE), dtype=np.float32)
    b = rng.random((3, *SHAPE), dtype=np.float32)
    out = np.zeros((5, *SHAPE), dtype=np.float32)
    got = kernels.step(a, -1.0, b, (-np.inf, np.inf), base_rows=np.array([3, 0]), direction_rows=np.array([2, 2]),
                       out=out, out_rows=np.array([4, 1]))
    assert got is out
    np.testing.assert_array_equal(out[[4, 1]], a[[3, 0]] - b[[2, 2]])
    assert not out[[0, 2, 3]].any()
