"""Random unit directions for the gradient-direction estimates of the decision-based attacks.

`resolution=None` draws i.i.d. Gaussian directions in the full image space (as in the papers).
A smaller `resolution` draws them at resolution x resolution per channel and upsamples them
bilinearly: low-frequency directions, in which the boundary's normal of an image classifier
has most of its mass, so each label-only probe carries more information (the idea of QEBA,
Li et al. 2020). Every direction is scaled to unit l2 norm.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=8)
def _upsample_matrix(size: int, resolution: int) -> np.ndarray:
    """[size, resolution] bilinear interpolation weights (half-pixel centres, edges clamped)."""
    m = np.zeros((size, resolution), dtype=np.float32)
    centres = (np.arange(size) + 0.5) * resolution / size - 0.5
    left = np.floor(centres).astype(int)
    frac = centres - left
    for row, (i, f) in enumerate(zip(left, frac)):
        m[row, min(max(i, 0), resolution - 1)] += 1.0 - f
        m[row, min(max(i + 1, 0), resolution - 1)] += f
    return m


def upsample(z: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Bilinear upsampling of float32 [..., c, r, r] to [..., c, h, w] (shape = (c, h, w))."""
    _, h, w = shape
    r = z.shape[-1]
    if r == h and z.shape[-2] == w:
        return z
    return _upsample_matrix(h, r) @ z @ _upsample_matrix(w, r).T


def draw_directions(rng: np.random.Generator, count: int, shape: tuple[int, ...],
                    resolution: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, z, inv_norm): random directions u float32 [count, *shape], NOT normalised (scale row
    b by inv_norm[b] for unit norm; callers fold that into their own scaling), and the draws z
    with u = upsample(z) (z is u itself at full resolution)."""
    c, h, w = shape
    if resolution is None or (resolution >= h and resolution >= w):
        u = rng.standard_normal((count, c, h, w), dtype=np.float32)
        z = u
    else:
        z = rng.standard_normal((count, c, resolution, resolution), dtype=np.float32)
        u = upsample(z, shape)
    flat = u.reshape(count, -1)
    inv = (1.0 / np.maximum(np.sqrt(np.einsum("ij,ij->i", flat, flat)), 1e-12)).astype(np.float32)
    return u, z, inv


def random_directions(rng: np.random.Generator, count: int, shape: tuple[int, ...],
                      resolution: int | None = None) -> np.ndarray:
    """float32 [count, *shape] of unit l2 norm; shape is (channels, height, width)."""
    u, _, inv = draw_directions(rng, count, shape, resolution)
    u *= inv[:, None, None, None]
    return u
