"""Which evaluation sample a queried image is charged to (docs/rules.md section 4, rules v3).

Shared by the server (Predict, verification) and the local oracle (`attackers.local`), so an attack
meets the same accounting offline as on the arena. Numpy only.

The budget must bound what a team learns about each sample's neighbourhood, whatever index it
names: otherwise naming donor samples buys unlimited answers about one image. The rule: every
sample c of a split owns the open ball of radius r_c around its image x_c, where r_c is half the
l2 distance from x_c to the nearest other image of the split. By the triangle inequality these
balls never overlap, so an image lies in at most one of them (and then that sample is its
nearest). An image inside the ball of c is charged to c; any other image (far from every
sample: noise, or between samples) is charged to the sample the request names, so an honest
attack's queries around its own sample, and its far starting points, are charged as before. So
is an image identical to another sample's clean image (a common starting point): its label is
one fixed answer, which asking again under other names cannot add to.

Hot path. Most images are near the sample they name: one distance decides (float32, with a
relative margin for its rounding; images within the margin are decided in float64). Only the
other images need the search over the split: one float32 GEMM against the split's images with
precomputed norms gives candidate balls (a tolerance covers the GEMM's rounding), and each
candidate is decided in float64, so the answer is that of exact float64 arithmetic.
"""

from __future__ import annotations

import numpy as np

FAST_MARGIN = 1e-3        # relative rounding bound of a float32 sum of 12,288 squares (with room)
GEMM_TOLERANCE = 1e-3     # relative to |x|^2 + |s|^2: the float32 GEMM's error on a squared distance


class SampleCharger:
    """The charging rule of one split: `charged(images, named)` -> the sample each image is charged to."""

    def __init__(self, images: np.ndarray, block: int = 256) -> None:
        n = images.shape[0]
        self.num_samples = n
        self._flat = np.ascontiguousarray(images.reshape(n, -1) if n else np.zeros((0, 1)), dtype=np.float32)
        self._sq = np.einsum("ij,ij->i", self._flat.astype(np.float64), self._flat.astype(np.float64))
        self.radius2 = np.full(n, np.inf)       # squared ball radius per sample (inf: a split of one)
        for start in range(0, n, block):
            rows = np.arange(start, min(n, start + block))
            d2 = self._gemm_d2(self._flat[rows], self._sq[rows])
            d2[np.arange(rows.size), rows] = np.inf
            tol = self._tolerance(self._sq[rows], self._sq)
            for k, row in enumerate(rows):
                if n < 2:
                    break
                # the nearest other sample, exactly: every GEMM candidate that may be the minimum
                near = np.flatnonzero(d2[k] - tol[k] <= (d2[k] + tol[k]).min())
                self.radius2[row] = min(self._exact_d2(self._flat[row], self._flat[c]) for c in near) / 4.0
        self.fast_images = 0                     # counters for `arena bench serve`
        self.slow_images = 0

    @staticmethod
    def _tolerance(sq_x: np.ndarray, sq_s: np.ndarray) -> np.ndarray:
        """[m, n]: a bound on the GEMM's error on each squared distance."""
        return GEMM_TOLERANCE * (sq_x[:, None] + sq_s[None, :]) + 1e-6

    def _gemm_d2(self, x: np.ndarray, sq_x: np.ndarray) -> np.ndarray:
        """Approximate squared distances [m, n] (float32 GEMM, float64 norms)."""
        return sq_x[:, None] + self._sq[None, :] - 2.0 * (x @ self._flat.T).astype(np.float64)

    @staticmethod
    def _exact_d2(a: np.ndarray, b: np.ndarray) -> float:
        diff = a.astype(np.float64) - b.astype(np.float64)
        return float(diff @ diff)

    def fast(self, images: np.ndarray, named: np.ndarray) -> np.ndarray:
        """bool [m]: the images inside their named sample's ball (charged to it); the others need `slow`."""
        m = images.shape[0]
        x = images.reshape(m, -1)
        # row by row through one image-sized buffer: batch-sized temporaries (a gather and a
        # difference, 3 MiB each at 64 images) cost twice the CPU on a loaded server
        # (docs/benchmarks.md, "The server's profile"); the float32 sum stays within FAST_MARGIN
        d2 = np.empty(m)
        buf = np.empty(x.shape[1], dtype=np.float32)
        flat = self._flat
        for i, c in enumerate(named.tolist()):
            np.subtract(x[i], flat[c], out=buf)
            d2[i] = np.dot(buf, buf)
        r2 = self.radius2[named]
        inside = d2 < r2 * (1.0 - FAST_MARGIN)
        unsure = np.flatnonzero(~inside & (d2 <= r2 * (1.0 + FAST_MARGIN)))
        for i in unsure:
            inside[i] = self._exact_d2(x[i], self._flat[named[i]]) < r2[i]
        return inside

    def slow(self, images: np.ndarray, named: np.ndarray) -> np.ndarray:
        """int64 [m]: the sample whose ball holds each image, else its named sample (images outside
        their named ball: the full search)."""
        m = images.shape[0]
        out = np.asarray(named, dtype=np.int64).copy()
        if m == 0:
            return out
        x = images.reshape(m, -1)
        sq_x = np.einsum("ij,ij->i", x.astype(np.float64), x.astype(np.float64))
        d2 = self._gemm_d2(x, sq_x)
        rows, cols = np.nonzero(d2 < self.radius2[None, :] + self._tolerance(sq_x, self._sq))
        best = np.full(m, np.inf)
        for i, c in zip(rows.tolist(), cols.tolist()):   # candidates in index order: ties go to the lowest
            exact = self._exact_d2(x[i], self._flat[c])
            # another sample's own clean image stays with the named sample: its label is one fixed
            # answer that asking again cannot add to, and attacks start from such images
            if 0.0 < exact < self.radius2[c] and exact < best[i]:
                best[i], out[i] = exact, c
        return out

    def fast_path(self, images: np.ndarray, named: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(charged, rest): int64 [m] with the named sample where the fast path decided, and the
        rows it could not decide (for `slow`; the caller may run that off the event loop)."""
        named = np.asarray(named, dtype=np.int64)
        inside = self.fast(images, named)
        rest = np.flatnonzero(~inside)
        self.fast_images += int(inside.size - rest.size)
        self.slow_images += int(rest.size)
        return named.copy(), rest

    def charged(self, images: np.ndarray, named: np.ndarray) -> np.ndarray:
        """int64 [m]: the sample each image is charged to (see the module docstring)."""
        out, rest = self.fast_path(images, named)
        if rest.size:
            out[rest] = self.slow(images[rest], out[rest])
        return out


__all__ = ["SampleCharger"]
