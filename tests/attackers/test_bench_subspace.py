"""arena bench subspace: the share of a normal inside a probe subspace, and the predicted cosine."""

from __future__ import annotations

import math

import numpy as np
import pytest

from arena.top.bench.subspace import bilinear_basis, pca_basis, principal_components, shares, sign_estimate_cosine
from attackers.probes import upsample


def test_bilinear_basis_holds_its_own_upsamplings_and_not_all_directions():
    shape = (3, 64, 64)
    basis = bilinear_basis(shape, 8)
    assert basis.shape == (3 * 64 * 64, 3 * 8 * 8)
    assert np.allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-8)
    rng = np.random.default_rng(0)
    inside = upsample(rng.standard_normal((4, 3, 8, 8)).astype(np.float32), shape).reshape(4, -1)
    inside /= np.linalg.norm(inside, axis=1, keepdims=True)
    assert np.allclose(shares(inside, basis), 1.0, atol=1e-5)
    # a random full-resolution direction: about sqrt(d / D) of it lies inside
    outside = rng.standard_normal((64, 3 * 64 * 64))
    outside /= np.linalg.norm(outside, axis=1, keepdims=True)
    assert shares(outside, basis).mean() == pytest.approx(math.sqrt(192 / 12288), rel=0.15)
    assert np.allclose(shares(outside, bilinear_basis(shape, 64)), 1.0)   # full resolution: everything


def test_pca_basis_finds_the_direction_the_images_vary_along():
    rng = np.random.default_rng(1)
    direction = rng.standard_normal(48)
    direction /= np.linalg.norm(direction)
    images = (rng.standard_normal((200, 1)) * 5.0 * direction + 0.01 * rng.standard_normal((200, 48))).reshape(200, 3, 4, 4)
    assert shares(direction[None], pca_basis(principal_components(images), 1))[0] == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="only 48 components"):
        pca_basis(principal_components(images), 49)


def test_sign_estimate_cosine_matches_a_simulated_sign_estimate():
    rng = np.random.default_rng(2)
    d, n = 192, 100
    normal = np.zeros(d)
    normal[0] = 1.0
    cosines = []
    for _ in range(200):
        u = rng.standard_normal((n, d))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        estimate = np.sign(u @ normal) @ u
        cosines.append(estimate[0] / np.linalg.norm(estimate))
    assert np.mean(cosines) == pytest.approx(sign_estimate_cosine(n, d), rel=0.05)
