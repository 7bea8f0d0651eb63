"""HopSkipJump (Chen, Jordan & Wainwright 2020), untargeted, l2, label-only.

Per iteration t, for every sample in play at once:
1. `estimate_gradient`: the direction of the boundary's normal at the current boundary point
   x_t by Monte Carlo: n_t random unit directions u_b, probes x_t + delta * u_b, signs
   phi_b = +1 where the probe is adversarial; the estimate is mean((phi_b - mean(phi)) * u_b),
   the paper's baseline correction (plain mean(phi) * mean(u) when all signs agree);
2. `geometric_step_size`: xi = ||x_t - x0|| / sqrt(t), halved until x_t + xi * v is
   adversarial (v the unit estimate);
3. `binary_search`: from that point toward the original to the boundary: x_{t+1}.
`iterate` is the loop of Algorithm 1 over t; `advance` is steps 2-3, which an attack that
walks the boundary another way (CGBA, `attackers.cgba`) overrides, keeping the rest.
It starts from a given starting point, or finds one (below), blended toward the original by
bisection.

Tuned to the arena's 1000 queries per sample (the paper's defaults spend them on ~5
iterations; ART's implementation lands near 9x the white-box minimum there):
- n_t = init_estimates * sqrt(t), capped at max_estimates: the paper's schedule, with a
  smaller init (20 instead of 100: more iterations, fewer probes each);
- low-frequency probe directions (`probe_resolution`=16: drawn at 16 x 16 per channel and
  upsampled, see `attackers.probes`), whose label answers say far more about the normal;
- the probe radius and the bisection tolerance tied to the current distance (`delta`=0.1,
  `tolerance`=1e-3: ~10 queries per bisection) instead of the paper's d^-3/2 thresholds
  (~21 queries per bisection);
- a cheap start (`init`="images"): the nearest clean images of other samples with another
  label, free to rank, meet the boundary twice as close as uniform noise does;
- `keep_best`: accept a step only when it shortens the distance, pool the estimates made at the
  same point, halve the step otherwise. Off by default (the paper always moves on); on when
  refining a close start (transfer-PGD), where it is what keeps the point from drifting away.
Measured on the demo model (`arena bench attack`, 40 samples, 1000 queries): mean l2 1.55
against 5.16 for ART's HopSkipJump (0.30x; ART draws unseeded noise, 5.2-5.7 from run to run)
and 0.58 for the white-box minimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from attackers import kernels
from attackers.base import check_choice, check_float, check_int, check_seed
from attackers.bisection import bisect
from attackers.kernels import l2_distances
from attackers.probes import draw_directions, to_image
from attackers.starting import INITS, BoundaryWalk
from attackers.tracker import Tracker

# Most probe images built and sent in one tracker query (bounds memory: ~48 KiB each).
MAX_PROBE_IMAGES = 1024
# Samples whose probes are made together (their points and originals, 96 KiB each, stay in the
# core's cache while the directions are cycled through; `kernels.probe_tiles`).
SAMPLE_TILE = 8
# Fewest probes worth an iteration; a sample that cannot afford them is done.
MIN_ESTIMATES = 4


@dataclass
class Walk:
    """The per-sample state of the iterations: tracker positions, originals x0, current
    boundary points x and their distances, and the step-size multiplier (halved after a step
    that lost ground, with keep_best)."""

    pos: np.ndarray
    x0: np.ndarray
    x: np.ndarray
    dist: np.ndarray
    scale: np.ndarray


class HopSkipJump(BoundaryWalk):
    """HopSkipJump (Chen, Jordan and Wainwright, 2020), l2: bisect to the boundary, estimate its normal
    from the signs of random probes, step along it by geometric search, bisect again."""

    name = "hsja"
    momentum = 0.0  # share of the pooled estimates' weight kept after a move (CGBA's option)

    def __init__(
        self,
        *,
        init_estimates: int = 20,
        max_estimates: int = 200,
        probe_resolution: int | None = 16,
        delta: float = 0.1,
        tolerance: float = 1e-3,
        max_halvings: int = 10,
        keep_best: bool = False,
        init: str = "images",
        noise_tries: int = 10,
        seed: int | None = 0,
    ) -> None:
        self.init_estimates = check_int("init_estimates", init_estimates, minimum=1)
        self.max_estimates = check_int("max_estimates", max_estimates, minimum=self.init_estimates)
        self.probe_resolution = None if probe_resolution is None else check_int("probe_resolution", probe_resolution, minimum=1)
        self.delta = check_float("delta", delta, 0.0, 1.0)
        self.tolerance = check_float("tolerance", tolerance, 0.0, 0.5)
        self.max_halvings = check_int("max_halvings", max_halvings, minimum=1, maximum=60)
        if not isinstance(keep_best, bool):
            raise ValueError(f"keep_best must be True or False, got {keep_best!r}")
        self.keep_best = keep_best
        self.init = check_choice("init", init, INITS)
        self.noise_tries = check_int("noise_tries", noise_tries, minimum=1)
        self.seed = check_seed(seed)

    @property
    def pools_estimates(self) -> bool:
        """Whether estimates made at a point that did not move are pooled with the next ones."""
        return self.keep_best

    def reserve_queries(self) -> int:
        """Queries kept back for steps 2-3 of an iteration (the step search and the bisection)."""
        return int(math.ceil(math.log2(1.0 / self.tolerance))) + 2

    def num_estimates(self, t: int) -> int:
        """n_t = init_estimates * sqrt(t), capped at max_estimates (the paper's schedule)."""
        return min(int(round(self.init_estimates * math.sqrt(t))), self.max_estimates)

    # ------------------------------------------------------------------ Algorithm 1
    def iterate(self, tracker: Tracker, pos: np.ndarray, boundary: np.ndarray, rng: np.random.Generator) -> None:
        """The iterations from adversarial points near the boundary, until every sample's budget
        is spent (each iteration charges every sample in play)."""
        x = boundary.astype(np.float32, copy=True)
        x0 = tracker.originals[pos]
        walk = Walk(pos, x0, x, l2_distances(x, x0), np.ones(x.shape[0]))
        alive = walk.dist > 0
        reserve = self.reserve_queries()
        # Estimates made at the current point (at the draws' resolution), pooled until it moves.
        pooled = None
        pooled_n = np.zeros(x.shape[0])
        # Each iteration charges every sample in play at least MIN_ESTIMATES queries: the budget
        # bounds the loop (the cap guards against an oracle that stops answering).
        for t in range(1, int(tracker.remaining[pos].max(initial=0)) // MIN_ESTIMATES + 2):
            n = np.minimum(self.num_estimates(t), tracker.remaining[pos] - reserve)
            alive &= n >= MIN_ESTIMATES
            rows = np.flatnonzero(alive)
            if rows.size == 0:
                break
            estimate = self.estimate_gradient(tracker, pos[rows], x, rows, walk.dist[rows], n[rows], rng)
            probes = n[rows]
            if self.pools_estimates:
                if pooled is None:
                    pooled = np.zeros((x.shape[0], estimate.shape[1]), dtype=np.float32)
                pooled[rows] += estimate * n[rows, None]
                pooled_n[rows] += n[rows]
                estimate = pooled[rows] / pooled_n[rows, None].astype(np.float32)
                probes = pooled_n[rows]
            v = self.gradient_direction(tracker, walk, rows, estimate, probes, rng)
            moved, new_x, new_d = self.advance(tracker, walk, rows, v, t)
            x[moved] = new_x
            walk.dist[moved] = new_d
            if pooled is not None:  # a point that moved keeps `momentum` of its past estimates' weight
                pooled[moved] *= self.momentum
                pooled_n[moved] *= self.momentum

    def advance(self, tracker: Tracker, walk: Walk, rows: np.ndarray, v: np.ndarray,
                t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Steps 2-3 for the samples walk.*[rows], along the unit gradient estimates v [k, D]:
        geometric step-size search, then binary search back to the boundary. Returns (the walk
        indices that move, their new boundary points, their distances); with keep_best only the
        steps that shorten the distance move (a step that does not halves that sample's scale)."""
        xi = walk.scale[rows] * walk.dist[rows] / math.sqrt(t)
        candidates, ok = self.geometric_step_size(tracker, walk.pos[rows], walk.x, rows, xi,
                                                  v.reshape(rows.size, *walk.x.shape[1:]))
        moved = rows[ok]
        if moved.size:
            new_x, new_d = self.binary_search(tracker, walk.pos[moved], candidates[ok])
        else:
            new_x, new_d = candidates[:0], np.zeros(0)
        if self.keep_best:
            better = new_d < walk.dist[moved]
            walk.scale[moved[~better]] /= 2.0
            walk.scale[rows[~ok]] /= 2.0
            moved, new_x, new_d = moved[better], new_x[better], new_d[better]
        return moved, new_x, new_d

    # ------------------------------------------------------------------ step 1
    def estimate_gradient(self, tracker: Tracker, pos: np.ndarray, x: np.ndarray, x_rows: np.ndarray,
                          dist: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Monte Carlo estimates [k, c * r * r] of the boundary normal (towards the adversarial
        side), at the draws' resolution r, at the points x[x_rows] (k of them; pos, dist and
        counts are per point): mean over probes of (phi - mean(phi)) * u, probes at radius
        delta * dist. All samples share one set of random directions (each sample's estimate
        only needs its own to be random), and the sums use the intended directions (the probes
        are clipped to the bounds; ignoring that costs nothing measurable), formed on the
        low-resolution draws as one matrix product (linear: the caller upsamples them)."""
        k = pos.shape[0]
        dirs = draw_directions(rng, int(counts.max()), x.shape[1:], self.probe_resolution)
        unit_low = dirs.z.reshape(dirs.z.shape[0], -1) * dirs.inv_norm[:, None]  # unit directions, before upsampling
        low = np.zeros((k, unit_low.shape[1]), dtype=np.float32)
        for start, stop, local, within in kernels.probe_tiles(counts, MAX_PROBE_IMAGES, SAMPLE_TILE):
            owner = local + start
            # probe = clip(x + delta * dist * u / |u|): one fused pass per probe, measured as written
            probes, probe_d = dirs.probes(x, self.delta * dist[owner] * dirs.inv_norm[within], tracker.bounds,
                                          base_rows=x_rows[owner], direction_rows=within,
                                          distances_to=(tracker.originals, pos[owner]))
            answer = tracker.query(pos[owner], probes, distances=probe_d)
            c = counts[start:stop].astype(np.int64)
            weights = np.zeros((stop - start, unit_low.shape[0]), dtype=np.float32)
            weights[local, within] = baseline_corrected_signs(answer, local, c) / c[local]
            low[start:stop] = weights @ unit_low
        return low

    def gradient_direction(self, tracker: Tracker, walk: Walk, rows: np.ndarray, estimate: np.ndarray,
                           probes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The unit direction [k, D] that steps 2-3 follow at walk.x[rows], from the Monte Carlo
        estimate (made of `probes` probes per sample, pooled): the estimate itself, upsampled."""
        return _unit(to_image(estimate, walk.x.shape[1:]), rng)

    # ------------------------------------------------------------------ step 2
    def geometric_step_size(self, tracker: Tracker, pos: np.ndarray, x: np.ndarray, x_rows: np.ndarray,
                            xi: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """From the points x[x_rows]: x + xi * v, halving xi until adversarial (at most
        max_halvings times). Returns (candidates, ok): ok where an adversarial candidate was
        paid for."""
        k = pos.shape[0]
        candidates = np.empty_like(v)
        ok = np.zeros(k, dtype=bool)
        xi = xi.astype(np.float32).copy()
        for _ in range(self.max_halvings):
            open_ = np.flatnonzero(~ok & (tracker.remaining[pos] > 0))
            if open_.size == 0:
                break
            c, d = kernels.step(x, xi[open_], v, tracker.bounds, base_rows=x_rows[open_], direction_rows=open_,
                                distances_to=(tracker.originals, pos[open_]))
            answer = tracker.query(pos[open_], c, distances=d)
            hit = open_[answer.adversarial]
            kernels.copy_rows(candidates, hit, c, np.flatnonzero(answer.adversarial))
            ok[hit] = True
            xi[open_[~answer.adversarial]] /= 2.0
        return candidates, ok

    # ------------------------------------------------------------------ step 3
    def binary_search(self, tracker: Tracker, pos: np.ndarray, adversarial: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """From adversarial points toward their originals, to the boundary within `tolerance`
        (relative): (boundary points, their distances)."""
        return bisect(tracker, pos, adversarial, self.tolerance)


def baseline_corrected_signs(answer, owner: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """phi_b - mean(phi) per probe (phi = +1 adversarial, -1 not, 0 unanswered; the mean over
    the probes of the same sample, `owner`), the paper's baseline correction; where all of a
    sample's signs agree, phi_b itself (the correction would zero them)."""
    phi = np.where(answer.adversarial, 1.0, -1.0)
    phi[~answer.answered] = 0.0
    mean_phi = np.bincount(owner, weights=phi, minlength=counts.shape[0]) / counts
    baseline = np.where(np.abs(mean_phi) == 1.0, 0.0, mean_phi)
    return phi - baseline[owner]


def _unit(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows of v scaled to unit l2 norm; a zero row (no information) becomes a random direction."""
    norms = np.sqrt(np.einsum("ij,ij->i", v, v))
    zero = norms <= 1e-12
    if zero.any():
        v = v.copy()
        v[zero] = rng.standard_normal((int(zero.sum()), v.shape[1]), dtype=np.float32)
        norms[zero] = np.sqrt(np.einsum("ij,ij->i", v[zero], v[zero]))
    return v / norms[:, None]
