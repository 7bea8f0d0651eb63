"""An attack that lives outside the arena's repository: blended uniform noise, then bisection.

The method is Foolbox's LinearSearchBlendedUniformNoiseAttack followed by a binary search
(Rauber et al., Foolbox 3; the usual starting point of decision-based attacks): for each of
`draws` uniform noise images u, find the smallest blend x0 + eps (u - x0) that the model
misclassifies, first on a grid of `steps` values of eps, then by bisection to `tolerance`.
The best blend over all draws is the result. See docs/write-an-attack.md for a walk-through.
"""

from __future__ import annotations

import numpy as np

from attackers import Attack, Tracker


class BlendedNoise(Attack):
    """Blended uniform noise, linear search then bisection; `draws` noise images per sample."""

    name = "blended-noise"  # how the scoreboard names it

    def __init__(self, *, draws: int = 5, steps: int = 10, tolerance: float = 1e-3, seed: int | None = 0) -> None:
        if draws < 1 or steps < 1 or not 0 < tolerance < 1:
            raise ValueError("draws and steps must be >= 1 and tolerance in (0, 1)")
        self.draws, self.steps, self.tolerance, self.seed = draws, steps, tolerance, seed

    def search(self, tracker: Tracker, positions: np.ndarray, starts, rng: np.random.Generator) -> None:
        lo_bound, hi_bound = tracker.bounds
        x0 = tracker.originals[positions]
        for _ in range(self.draws):
            noise = rng.uniform(lo_bound, hi_bound, size=x0.shape).astype(np.float32)
            lo = np.zeros(len(positions))          # largest blend known not adversarial
            hi = np.full(len(positions), np.inf)   # smallest blend known adversarial
            # 1. linear search on the grid eps = 1/steps, 2/steps, ..., 1
            for eps in np.linspace(1.0 / self.steps, 1.0, self.steps):
                rows = np.flatnonzero(np.isinf(hi) & (tracker.remaining[positions] > 0))
                if rows.size == 0:
                    break
                answer = tracker.query(positions[rows], self._blend(x0, noise, rows, np.full(rows.size, eps)))
                hi[rows[answer.adversarial]] = eps
                lo[rows[answer.answered & ~answer.adversarial]] = eps
            # 2. bisection between the last clean blend and the first adversarial one
            while True:
                rows = np.flatnonzero(np.isfinite(hi) & (hi - lo > self.tolerance) & (tracker.remaining[positions] > 0))
                if rows.size == 0:
                    break
                mid = (lo[rows] + hi[rows]) / 2.0
                answer = tracker.query(positions[rows], self._blend(x0, noise, rows, mid))
                hi[rows[answer.adversarial]] = mid[answer.adversarial]
                lo[rows[answer.answered & ~answer.adversarial]] = mid[answer.answered & ~answer.adversarial]
        # Nothing to return: the tracker kept every sample's closest adversarial it was asked about.

    @staticmethod
    def _blend(x0: np.ndarray, noise: np.ndarray, rows: np.ndarray, eps: np.ndarray) -> np.ndarray:
        e = eps.astype(np.float32)[:, None, None, None]
        return ((1.0 - e) * x0[rows] + e * noise[rows]).astype(np.float32)
