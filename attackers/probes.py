"""Random directions for the gradient-direction estimates of the decision-based attacks.

`resolution=None` draws i.i.d. Gaussian directions in the full image space (as in the papers).
A smaller `resolution` draws them at resolution x resolution per channel and upsamples them
bilinearly: low-frequency directions, in which the boundary's normal of an image classifier
has most of its mass, so each label-only probe carries more information (the idea of QEBA,
Li et al. 2020).

Low-resolution directions are never materialised at full resolution on the hot path: they are
upsampled along the width only (a quarter of the full size at 16 -> 64), and the probe kernel
interpolates the height as it writes each probe (`attackers.kernels.step_upsampled`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from attackers import kernels


@lru_cache(maxsize=8)
def vertical_weights(size: int, resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear interpolation from `resolution` to `size` samples (half-pixel centres, edges
    clamped): (first, second, w_first, w_second), each [size]; sample i is
    w_first[i] * z[first[i]] + w_second[i] * z[second[i]]."""
    centres = (np.arange(size) + 0.5) * resolution / size - 0.5
    left = np.floor(centres).astype(np.int64)
    frac = (centres - left).astype(np.float32)
    out = (np.clip(left, 0, resolution - 1), np.clip(left + 1, 0, resolution - 1), 1.0 - frac, frac)
    for a in out:
        a.setflags(write=False)
    return out


@lru_cache(maxsize=8)
def upsample_matrix(size: int, resolution: int) -> np.ndarray:
    """[size, resolution] bilinear interpolation weights (the matrix form of vertical_weights)."""
    first, second, w_first, w_second = vertical_weights(size, resolution)
    m = np.zeros((size, resolution), dtype=np.float32)
    np.add.at(m, (np.arange(size), first), w_first)
    np.add.at(m, (np.arange(size), second), w_second)
    m.setflags(write=False)
    return m


def upsample(z: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Bilinear upsampling of float32 [..., c, r, r] to [..., c, h, w] (shape = (c, h, w))."""
    _, h, w = shape
    if z.shape[-2:] == (h, w):
        return z
    return upsample_matrix(h, z.shape[-2]) @ z @ upsample_matrix(w, z.shape[-1]).T


def to_image(v: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """[k, c * r * r] vectors at a draw resolution r (see `Directions.z`) as [k, c * h * w]: the
    bilinear upsampling (linear, so averages may be taken before it), or v itself at full size."""
    c, h, w = shape
    if v.shape[1] == c * h * w:
        return v
    r = int(round(np.sqrt(v.shape[1] / c)))
    return upsample(v.reshape(v.shape[0], c, r, r), shape).reshape(v.shape[0], -1)


@dataclass(frozen=True)
class Directions:
    """`count` random directions u_b, not normalised (callers fold inv_norm into their scaling).

    z: float32 [count, c, r, r], the draws (u = upsample(z); z is u at full resolution);
    rows: float32 [count, c, r, w], z upsampled along the width only (None at full resolution);
    inv_norm: float32 [count], 1 / ||u_b||_2 over the full-resolution direction."""

    z: np.ndarray
    rows: np.ndarray | None
    inv_norm: np.ndarray
    shape: tuple[int, ...]

    @property
    def low_resolution(self) -> bool:
        return self.rows is not None

    def full(self) -> np.ndarray:
        """float32 [count, c, h, w]: the directions at full resolution (for tests and slow paths)."""
        return self.z if self.rows is None else upsample(self.z, self.shape)

    def probes(self, base: np.ndarray, coef, bounds: tuple[float, float], *, base_rows=None,
               direction_rows=None, distances_to: tuple[np.ndarray, np.ndarray] | None = None):
        """float32 images clip(base[base_rows[k]] + coef[k] * u[direction_rows[k]], bounds), one
        pass per image, measured with distances_to (see `attackers.kernels.step`)."""
        if self.rows is None:
            return kernels.step(base, coef, self.z, bounds, base_rows=base_rows, direction_rows=direction_rows,
                                distances_to=distances_to)
        return kernels.step_upsampled(base, coef, self.rows, vertical_weights(self.shape[1], self.z.shape[2]),
                                      bounds, base_rows=base_rows, direction_rows=direction_rows,
                                      distances_to=distances_to)


def draw_directions(rng: np.random.Generator, count: int, shape: tuple[int, ...],
                    resolution: int | None = None) -> Directions:
    """`count` Gaussian directions in `shape` = (c, h, w), drawn at resolution x resolution per
    channel when that is smaller than the image (see the module docstring)."""
    c, h, w = shape
    if resolution is None or (resolution >= h and resolution >= w):
        z = rng.standard_normal((count, c, h, w), dtype=np.float32)
        flat = z.reshape(count, -1)
        return Directions(z, None, _inverse(np.einsum("ij,ij->i", flat, flat)), tuple(shape))
    z = rng.standard_normal((count, c, resolution, resolution), dtype=np.float32)
    rows = z @ upsample_matrix(w, resolution).T
    # ||V @ rows||^2 per direction, V the [h, r] height interpolation: sum of rows * (V^T V) @ rows
    gram = upsample_matrix(h, resolution).T @ upsample_matrix(h, resolution)
    squares = np.einsum("ncrw,ncrw->n", gram @ rows, rows)
    return Directions(z, rows, _inverse(squares), tuple(shape))


def _inverse(squares: np.ndarray) -> np.ndarray:
    return (1.0 / np.maximum(np.sqrt(squares), 1e-12)).astype(np.float32)
