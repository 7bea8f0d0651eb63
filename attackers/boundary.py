"""Boundary Attack (Brendel, Rauber & Bethge 2018), untargeted, l2, label-only.

The paper draws the orthogonal perturbation from an i.i.d. Gaussian (`noise_resolution=None`).
By default it is drawn at 16 x 16 per channel and upsampled bilinearly: low-frequency noise
(Brunner et al. 2019, "Guessing Smart", whose biased Boundary Attack won the 2018 challenge's
targeted track) reaches 2.6 instead of 8.1 mean l2 at 1000 queries on the demo model, and
costs a sixteenth of the random numbers.

From an adversarial starting point (a given one, or uniform noise blended toward the original
by bisection), each step proposes, for every sample in play at once:
- an orthogonal (spherical) step: a Gaussian perturbation orthogonal to the direction to the
  original, of norm spherical_step * d, projected back onto the sphere of radius d around it;
- then a step toward the original that shrinks the distance by the factor (1 - source_step).
A proposal is accepted when it is adversarial. Both step sizes adapt to recent success rates
as in the paper: the spherical step so that about half the orthogonal steps stay adversarial
(checked with an extra query every `check_every` steps, as Foolbox does, so most steps cost
one query), the source step so that the full proposals succeed between 20% and 50% of the
time. Rates are taken over windows of recent outcomes, which are cleared after each change.
"""

from __future__ import annotations

import numpy as np

from attackers import kernels
from attackers.base import check_choice, check_float, check_int, check_seed
from attackers.probes import upsample
from attackers.starting import INITS, BoundaryWalk
from attackers.tracker import Tracker


class _Window:
    """Per-sample ring buffers of recent success outcomes."""

    def __init__(self, k: int, size: int) -> None:
        self.values = np.zeros((k, size), dtype=bool)
        self.count = np.zeros(k, dtype=np.int64)
        self.size = size

    def push(self, rows: np.ndarray, outcomes: np.ndarray) -> None:
        self.values[rows, self.count[rows] % self.size] = outcomes
        self.count[rows] += 1

    def full(self) -> np.ndarray:
        return self.count >= self.size

    def rate(self) -> np.ndarray:
        return self.values.mean(axis=1)

    def clear(self, rows: np.ndarray) -> None:
        self.count[rows] = 0


class BoundaryAttack(BoundaryWalk):
    """Boundary Attack (Brendel, Rauber and Bethge, 2018): a random walk along the decision boundary
    from an adversarial start towards the clean image."""

    name = "boundary"

    def __init__(
        self,
        *,
        spherical_step: float = 0.05,
        source_step: float = 0.05,
        step_adaptation: float = 1.5,
        check_every: int = 5,
        spherical_window: int = 10,
        step_window: int = 20,
        min_source_step: float = 1e-7,
        noise_resolution: int | None = 16,
        tolerance: float = 1e-3,
        init: str = "noise",
        noise_tries: int = 10,
        seed: int | None = 0,
    ) -> None:
        self.spherical_step = check_float("spherical_step", spherical_step, 0.0, 10.0)
        self.source_step = check_float("source_step", source_step, 0.0, 1.0, high_open=True)
        self.step_adaptation = check_float("step_adaptation", step_adaptation, 1.0, 10.0)
        self.check_every = check_int("check_every", check_every, minimum=1)
        self.spherical_window = check_int("spherical_window", spherical_window, minimum=1)
        self.step_window = check_int("step_window", step_window, minimum=1)
        self.min_source_step = check_float("min_source_step", min_source_step, 0.0, self.source_step)
        self.noise_resolution = None if noise_resolution is None else check_int("noise_resolution", noise_resolution, minimum=1)
        self.tolerance = check_float("tolerance", tolerance, 0.0, 0.5)
        self.init = check_choice("init", init, INITS)
        self.noise_tries = check_int("noise_tries", noise_tries, minimum=1)
        self.seed = check_seed(seed)

    def iterate(self, tracker: Tracker, pos: np.ndarray, start: np.ndarray, rng: np.random.Generator) -> None:
        """Boundary Attack steps until every sample's budget is spent or its source step has
        converged below min_source_step. Each sample walks from its best adversarial so far, the
        tracker's (`start`, paid for, is one; an accepted proposal is closer, so it becomes the
        best): the tracker keeps the walk's state, nothing is copied twice."""
        k = pos.shape[0]
        spherical = np.full(k, self.spherical_step)
        source = np.full(k, self.source_step)
        sph_stats = _Window(k, self.spherical_window)
        step_stats = _Window(k, self.step_window)
        a = self.step_adaptation
        # Every step charges each sample in play, so the budget bounds the loop; the cap is a
        # second guard against an oracle that stops answering without charging.
        max_steps = 2 * int(tracker.remaining[pos].max(initial=0)) + 2
        for step in range(1, max_steps + 1):
            check = step % self.check_every == 0
            cost = 2 if check else 1
            dist = tracker.best_distance[pos]
            going = (source >= self.min_source_step) & (dist > 0) & np.isfinite(dist)
            if not (going & (tracker.remaining[pos] >= 1)).any():
                break
            rows = np.flatnonzero(going & (tracker.remaining[pos] >= cost))
            if rows.size == 0:
                continue  # a check step some samples can no longer afford; the next one is cheaper
            m = rows.size
            # the full proposals, then (check steps) the spherical ones: one batched query
            images, distances = self._proposals(tracker, pos[rows], dist[rows], spherical[rows], source[rows],
                                                rng, check)
            owners = np.concatenate([pos[rows], pos[rows]]) if check else pos[rows]
            answer = tracker.query(owners, images, distances=distances)
            if check:
                sph_stats.push(rows, answer.adversarial[m:])
            step_stats.push(rows, answer.adversarial[:m])

            if check:  # the paper's step-size adaptation, from the windows' success rates
                full = sph_stats.full()
                rate = sph_stats.rate()
                up = full & (rate > 0.5)
                down = full & (rate < 0.2)
                spherical[up] *= a
                source[up] *= a
                spherical[down] /= a
                source[down] /= a
                sph_stats.clear(np.flatnonzero(up | down))
                full = step_stats.full()
                rate = step_stats.rate()
                up = full & (rate > 0.5)
                down = full & (rate < 0.2)
                source[up] *= a
                source[down] /= a
                step_stats.clear(np.flatnonzero(up | down))
                np.minimum(source, 0.5, out=source)

    def _proposals(self, tracker: Tracker, pos: np.ndarray, dist: np.ndarray, spherical: np.ndarray,
                   source: np.ndarray, rng: np.random.Generator, with_spherical: bool) -> tuple[np.ndarray, np.ndarray]:
        """float32 [m, *shape] full candidates of the samples at tracker positions `pos` (the
        other arguments per sample), followed, with_spherical, by their spherical candidates; and
        their distances to the originals (float64, measured in the same pass). The perturbation
        r is each sample's best adversarial minus its original, |r| = dist.

        With eta' the part of the noise eta orthogonal to the perturbation r (|r| = D), scaled to
        norm spherical * D, the spherical candidate is x0 + (r + eta') * D / |r + eta'|, where
        |r + eta'| = D * sqrt(1 + spherical^2) is known; the full candidate shrinks that by
        (1 - source). Both are x0 + a * r + b * eta with per-sample scalars a, b from r . eta:
        one fused kernel per sample (`attackers.kernels.boundary_proposals`). The samples of a
        step share one noise draw (each sample only needs its own to be random), drawn and
        upsampled once."""
        shape = tracker.originals.shape[1:]
        res = self.noise_resolution
        if res is None or res >= shape[1]:
            eta = rng.standard_normal(shape, dtype=np.float32)
        else:
            eta = upsample(rng.standard_normal((shape[0], res, res), dtype=np.float32), shape)
        return kernels.boundary_proposals(tracker.originals, tracker.best, pos, eta, dist, spherical, source,
                                          tracker.bounds, with_spherical)
