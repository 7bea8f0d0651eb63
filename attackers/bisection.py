"""Vectorised bisection on the segments from the originals to adversarial points.

For each sample, the points x(a) = x0 + a * (x_adv - x0), a in [0, 1], are searched for the
boundary: x(0) is the original (not adversarial), x(1) = x_adv is adversarial.
One batched query per halving for every sample whose interval is still wider than its
tolerance and that has budget left. The returned points are the adversarial ends: the exact
float32 images that were queried (or x_adv itself), so the tracker's best matches them, with
their distances as the tracker measured them.
"""

from __future__ import annotations

import numpy as np

from attackers import kernels
from attackers.kernels import l2_distances
from attackers.tracker import Tracker

# A float32 image cannot resolve steps below ~2^-24 of its values: no halving past this.
MAX_HALVINGS = 30


def bisect(
    tracker: Tracker,
    positions: np.ndarray,
    adversarial: np.ndarray,
    tolerance: float | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Bisects towards the boundary on each sample's segment until high - low <= tolerance
    (in units of the segment, i.e. relative to the distance of `adversarial`) or its budget runs
    out. Returns (boundary points float32 [k], their l2 distances float64 [k])."""
    k = positions.shape[0]
    # direction = adversarial - x0, one pass (no clipping)
    direction = kernels.step(adversarial, -1.0, tracker.originals, (-np.inf, np.inf), direction_rows=positions)
    lo = np.zeros(k)
    hi = np.ones(k)
    tol = np.broadcast_to(np.asarray(tolerance, dtype=np.float64), (k,))
    best_d = l2_distances(adversarial, tracker.originals, owners=positions)
    # Where each sample's closest adversarial point lives: a row of one of the query batches
    # (batch -1: `adversarial`), gathered once at the end instead of copied at every hit.
    batches: list[np.ndarray] = []
    where = np.full(k, -1)
    row = np.arange(k)
    for _ in range(MAX_HALVINGS):
        open_ = np.flatnonzero((hi - lo > tol) & (tracker.remaining[positions] > 0))
        if open_.size == 0:
            break
        mid = (lo[open_] + hi[open_]) / 2.0
        x, d = kernels.step(tracker.originals, mid, direction, tracker.bounds, base_rows=positions[open_],
                            direction_rows=open_, distances_to=(tracker.originals, positions[open_]))
        answer = tracker.query(positions[open_], x, distances=d)
        adv = answer.adversarial
        hi[open_[adv]] = mid[adv]
        where[open_[adv]] = len(batches)
        row[open_[adv]] = np.flatnonzero(adv)
        batches.append(x)
        for b in np.setdiff1d(np.arange(len(batches)), where):
            batches[b] = None  # no sample's closest point left in it: free it
        best_d[open_[adv]] = answer.distances[adv]
        not_adv = answer.answered & ~adv
        lo[open_[not_adv]] = mid[not_adv]
    best = np.empty((k, *adversarial.shape[1:]), dtype=np.float32)
    for b, batch in [(-1, adversarial), *enumerate(batches)]:
        mine = np.flatnonzero(where == b)
        if mine.size:
            kernels.copy_rows(best, mine, batch, row[mine])
    return best, best_d
