"""Vectorised bisection on the segments from the originals to adversarial points.

For each sample, the points x(a) = x0 + a * (x_adv - x0), a in [low, 1], are searched for the
boundary: x(low) is known not adversarial (the original at a = 0), x(1) = x_adv is adversarial.
One batched query per halving for every sample whose interval is still wider than its
tolerance and that has budget left. The returned points are the adversarial ends: the exact
float32 images that were queried (or x_adv itself), so the tracker's best matches them.
"""

from __future__ import annotations

import numpy as np

from attackers.base import clip
from attackers.tracker import Tracker

# A float32 image cannot resolve steps below ~2^-24 of its values: no halving past this.
MAX_HALVINGS = 30


def bisect(
    tracker: Tracker,
    positions: np.ndarray,
    adversarial: np.ndarray,
    tolerance: float | np.ndarray,
    *,
    low: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Bisects towards the boundary on each sample's segment until high - low <= tolerance
    (in units of the segment, i.e. relative to the distance of `adversarial`) or its budget runs
    out. Returns (boundary points float32 [k], their segment parameters `high` float64 [k])."""
    k = positions.shape[0]
    x0 = tracker.originals[positions]
    direction = adversarial.astype(np.float32) - x0
    lo = np.zeros(k) if low is None else np.asarray(low, dtype=np.float64).copy()
    hi = np.ones(k)
    tol = np.broadcast_to(np.asarray(tolerance, dtype=np.float64), (k,))
    best = adversarial.astype(np.float32, copy=True)
    for _ in range(MAX_HALVINGS):
        open_ = np.flatnonzero((hi - lo > tol) & (tracker.remaining[positions] > 0))
        if open_.size == 0:
            break
        mid = (lo[open_] + hi[open_]) / 2.0
        x = clip(x0[open_] + mid.astype(np.float32)[:, None, None, None] * direction[open_], tracker.bounds)
        answer = tracker.query(positions[open_], x)
        adv = answer.adversarial
        hi[open_[adv]] = mid[adv]
        best[open_[adv]] = x[adv]
        not_adv = answer.answered & ~adv
        lo[open_[not_adv]] = mid[not_adv]
    return best, hi
