"""CGBA: the curvature-aware geometric boundary attack (Reza, Rahmati, Wu & Liu, ICCV 2023),
untargeted, l2, label-only.

Per iteration t, for every sample in play at once, from a boundary point x_b at distance D of
the original x0:
1. estimate the boundary's normal eta at x_b by Monte Carlo from low-frequency probes, as
   HopSkipJump does (n_t = init_estimates * sqrt(t) probes; `HopSkipJump.estimate_gradient`);
2. in the plane spanned by v = (x_b - x0) / D and eta, every point of the semicircle whose
   diameter is [x0, x_b],
       x(phi) = x0 + D cos(phi) (cos(phi) v + sin(phi) w),   w = eta's part orthogonal to v,
   sees x0 and x_b at a right angle (Thales), so for a flat boundary with normal eta the
   closest boundary point to x0 lies on it; x(0) = x_b is adversarial, x(pi/2) = x0 is not,
   and the distance D cos(phi) shrinks as phi grows. `variant="cgba"` bisects phi
   on [0, pi/2] for the boundary on that arc; the new boundary point is x(phi) at the largest
   phi found adversarial. `variant="cgba-h"` tries phi = theta/2, theta/4, ... (theta
   the angle between v and eta, where a flat boundary's closest point lies) until adversarial,
   then bisects from there straight toward x0.
The start is HopSkipJump's (the nearest clean image of another label, or noise), bisected toward
x0; then the directions toward the next `screen_images` nearest other-label images are each
tried at 0.95 x the best distance so far (one query each; bisected where adversarial).

Arena tuning, measured on the demo model (40 samples, 1000 queries, mean l2 / white-box DDN;
docs/benchmarks.md): HopSkipJump's low-frequency probes (`probe_resolution`=16; 8: 2.88x
against 2.61x) and probe radius (`delta` x the distance); the angle bisected to
`angle_tolerance`=0.01 rad (~8 queries per search; 0.04: 2.79x, 0.005: 2.62x); n_t =
`init_estimates` x sqrt(t) probes with init_estimates=40 (10: 2.59x, 20: 2.54x, 40: 2.44x, 80:
2.54x, with 20 screened images); `screen_images`=35 (0: 2.61x, 20: 2.54x, 35: 2.42x). The
semicircle beats the halving search (CGBA-H: 3.02x) here, as the paper finds for untargeted
attacks. Estimates made at a point that did not move are pooled with the next ones (`pool`);
keeping a share `momentum` of them after a move did not help on a flat boundary (0.5: 1.18x the
minimum at 1000 queries against 1.15x without), so it is off.
"""

from __future__ import annotations

import math

import numpy as np

from attackers.base import check_choice, check_float, check_int
from attackers.bisection import bisect
from attackers.hopskipjump import HopSkipJump, Walk
from attackers.starting import nearest_other_label
from attackers.tracker import Tracker

VARIANTS = ("cgba", "cgba-h")
# A screened direction is pursued only if it beats the best distance by 5% (one query says so).
SCREEN = 0.95


class CGBA(HopSkipJump):
    """The curvature-aware geometric boundary attack (see the module docstring): HopSkipJump's
    start, loop and normal estimates (`estimate_gradient`); its own steps 2-3 (`advance`: a
    search on the semicircle through x0 and the boundary point) and a screened start."""

    name = "cgba"

    def __init__(
        self,
        *,
        variant: str = "cgba",
        init_estimates: int = 40,
        max_estimates: int = 200,
        probe_resolution: int | None = 16,
        delta: float = 0.1,
        angle_tolerance: float = 0.01,
        tolerance: float = 1e-3,
        max_halvings: int = 10,
        pool: bool = True,
        momentum: float = 0.0,
        init: str = "images",
        noise_tries: int = 10,
        screen_images: int = 35,
        seed: int | None = 0,
    ) -> None:
        super().__init__(init_estimates=init_estimates, max_estimates=max_estimates, probe_resolution=probe_resolution,
                         delta=delta, tolerance=tolerance, max_halvings=max_halvings, init=init,
                         noise_tries=noise_tries, seed=seed)
        self.variant = check_choice("variant", variant, VARIANTS)
        self.screen_images = check_int("screen_images", screen_images, minimum=0)
        self.angle_tolerance = check_float("angle_tolerance", angle_tolerance, 0.0, 1.0)
        if not isinstance(pool, bool):
            raise ValueError(f"pool must be True or False, got {pool!r}")
        self.pool = pool
        self.momentum = check_float("momentum", momentum, 0.0, 1.0, low_open=False, high_open=True)

    @property
    def pools_estimates(self) -> bool:
        return self.pool

    def reserve_queries(self) -> int:
        """Queries kept back for the boundary search of an iteration."""
        if self.variant == "cgba":
            return int(math.ceil(math.log2((math.pi / 2) / self.angle_tolerance))) + 1
        return self.max_halvings + int(math.ceil(math.log2(1.0 / self.tolerance))) + 1

    # ------------------------------------------------------------------ the start
    def initialize(self, tracker: Tracker, positions: np.ndarray, starts: np.ndarray | None,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """HopSkipJump's start, bisected; then, with `screen_images`, the directions toward that
        many more of the nearest other-label images, each tried at 0.95 x the best distance so far
        (one query; bisected toward x0 where adversarial)."""
        pos, boundary, dist = super().initialize(tracker, positions, starts, rng)
        if pos.size == 0 or not self.screen_images:
            return pos, boundary, dist
        # (the nearest one was the start: from the second on)
        ranked = nearest_other_label(tracker, pos, self.screen_images + 1)[:, 1:]
        x0 = tracker.originals[pos].reshape(pos.size, -1)
        for j in range(ranked.shape[1]):
            rows = np.flatnonzero((ranked[:, j] >= 0) & (tracker.remaining[pos] > 0))
            if rows.size == 0:
                continue
            direction = tracker.originals[ranked[rows, j]].reshape(rows.size, -1) - x0[rows]
            scale = SCREEN * dist[rows] / np.maximum(np.linalg.norm(direction, axis=1), 1e-12)
            probe = (x0[rows] + np.minimum(scale, 1.0)[:, None] * direction).astype(np.float32)
            answer = tracker.query(pos[rows], probe.reshape(rows.size, *tracker.originals.shape[1:]))
            hit = rows[answer.adversarial]
            if hit.size:
                new_x, new_d = bisect(tracker, pos[hit], probe[answer.adversarial].reshape(hit.size, *boundary.shape[1:]),
                                      self.tolerance)
                better = new_d < dist[hit]
                boundary[hit[better]] = new_x[better]
                dist[hit[better]] = new_d[better]
        return pos, boundary, dist

    # ------------------------------------------------------------------ steps 2-3
    def advance(self, tracker: Tracker, walk: Walk, rows: np.ndarray, v: np.ndarray,
                t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The boundary search in the plane of (x_b - x0) and the normal estimate v; a sample
        moves only where it found a closer boundary point."""
        new_x, new_d = self.boundary_search(tracker, walk.pos[rows], walk.x0[rows], walk.x[rows], walk.dist[rows], v)
        moved = new_d < walk.dist[rows]
        return rows[moved], new_x[moved], new_d[moved]

    # ------------------------------------------------------------------ step 2, the semicircle
    def boundary_search(self, tracker: Tracker, pos: np.ndarray, x0: np.ndarray, xb: np.ndarray,
                        dist: np.ndarray, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The next boundary point of each sample (or xb itself, at its distance, where none
        closer was found): the semicircular search (CGBA) or the halving one (CGBA-H)."""
        k = pos.shape[0]
        v = (xb - x0).reshape(k, -1).astype(np.float64) / dist[:, None]
        eta = eta.astype(np.float64)
        along = np.einsum("ij,ij->i", eta, v)
        w = eta - along[:, None] * v
        w_norm = np.linalg.norm(w, axis=1)
        usable = w_norm > 1e-9                 # eta parallel to v: no plane to search in
        w[usable] /= w_norm[usable, None]
        theta = np.arccos(np.clip(along, -1.0, 1.0))
        if self.variant == "cgba":
            return self._semicircle(tracker, pos, x0, xb, dist, v, w, usable)
        return self._halving(tracker, pos, x0, xb, dist, v, w, theta, usable)

    def _arc_points(self, tracker: Tracker, x0: np.ndarray, rows: np.ndarray, dist: np.ndarray, v: np.ndarray,
                    w: np.ndarray, phi: np.ndarray) -> np.ndarray:
        """x(phi) = x0 + D cos(phi) (cos(phi) v + sin(phi) w) for the samples `rows`, clipped to the bounds."""
        c, s = np.cos(phi), np.sin(phi)
        offset = (dist[rows] * c)[:, None] * (c[:, None] * v[rows] + s[:, None] * w[rows])
        lo, hi = tracker.bounds
        points = x0[rows].reshape(rows.size, -1) + offset
        return np.clip(points, lo, hi).astype(np.float32).reshape(rows.size, *x0.shape[1:])

    def _semicircle(self, tracker, pos, x0, xb, dist, v, w, usable):
        """Bisects phi on [0, pi/2]: x(0) = xb adversarial, x(pi/2) = x0 not (neither is queried)."""
        k = pos.shape[0]
        lo = np.zeros(k)                     # the largest angle known adversarial
        hi = np.full(k, math.pi / 2)         # the smallest known not to be
        best = xb.copy()
        best_d = dist.copy()
        while True:
            open_ = np.flatnonzero(usable & (hi - lo > self.angle_tolerance) & (tracker.remaining[pos] > 0))
            if open_.size == 0:
                break
            mid = (lo[open_] + hi[open_]) / 2.0
            points = self._arc_points(tracker, x0, open_, dist, v, w, mid)
            answer = tracker.query(pos[open_], points)
            adv = answer.adversarial
            lo[open_[adv]] = mid[adv]
            hi[open_[answer.answered & ~adv]] = mid[answer.answered & ~adv]
            closer = adv & (answer.distances < best_d[open_])
            best[open_[closer]] = points[closer]
            best_d[open_[closer]] = answer.distances[closer]
            if not answer.answered.all():
                usable = usable.copy()
                usable[open_[~answer.answered]] = False
        return best, best_d

    def _halving(self, tracker, pos, x0, xb, dist, v, w, theta, usable):
        """phi = theta/2, theta/4, ... until x(phi) is adversarial, then bisection toward x0."""
        k = pos.shape[0]
        phi = theta / 2.0
        found = np.zeros(k, dtype=bool)
        candidates = xb.copy()
        for _ in range(self.max_halvings):
            open_ = np.flatnonzero(usable & ~found & (tracker.remaining[pos] > 0))
            if open_.size == 0:
                break
            points = self._arc_points(tracker, x0, open_, dist, v, w, phi[open_])
            answer = tracker.query(pos[open_], points)
            hit = open_[answer.adversarial]
            candidates[hit] = points[answer.adversarial]
            found[hit] = True
            phi[open_[~answer.adversarial]] /= 2.0
        best = xb.copy()
        best_d = dist.copy()
        rows = np.flatnonzero(found)
        if rows.size:
            points, d = bisect(tracker, pos[rows], candidates[rows], self.tolerance)
            closer = d < best_d[rows]
            best[rows[closer]] = points[closer]
            best_d[rows[closer]] = d[closer]
        return best, best_d
