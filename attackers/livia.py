"""LIVIA's start (the untargeted winner of the NeurIPS 2018 Adversarial Vision Challenge,
Rony & Sabourin, luizgh/avc_nips_2018), then a surrogate-guided refinement.

1. Directions from white-box surrogates (`attackers.surrogates`; one of them adversarially
   trained: its adversarials follow more robust, better-transferring features). First the
   direction of the minimal-norm adversarial (DDN, Rony et al. 2019) of the surrogates'
   ensemble (`ensemble`, with several), then of targeted DDN on the ensemble toward its
   `targets` most likely wrong classes, then for each surrogate: the direction of its own DDN
   adversarial and of its margin's gradient at the clean image.
2. Each direction d is searched on the target along the ray x0 + eps * d (clipped to the
   bounds), all samples at once, in at most `line_queries` queries per sample: the first
   direction from the surrogate's own adversarial distance, bracketed by doubling (while not
   adversarial) or halving (while adversarial), then bisected on eps to `tolerance`. Once a
   sample has an adversarial at distance b, a further direction is first tried at eps = b:
   not adversarial there, it cannot do better along that ray and costs one query.
3. The closest point found is handed to the refinement: CGBA with the same surrogates'
   gradients as priors (`attackers.prior_guided`). A sample no direction works for falls back
   on CGBA's own start.

Measured on the demo model (40 samples, 1000 queries, natural surrogate + PGD-AT surrogate;
mean l2 / white-box DDN, docs/benchmarks.md): the start reaches 1.84x in ~100 queries (transfer-
PGD's 2.16x), 1.77x with the ensemble direction first; after the refinement 1.65x, 1.60x with
the ensemble. DDN with 100 steps instead of `ddn_steps`=30 changes nothing (1.645x vs 1.647x)
at three times the surrogate work; `targets`=3 targeted directions 1.50x (9: 1.50x); without
the gradient directions 1.54x; `line_queries` 12: 1.53x.
"""

from __future__ import annotations

import numpy as np

from attackers.base import Attack, check_float, check_int, check_seed
from attackers.bisection import bisect
from attackers.prior_guided import PriorGuidedCGBA
from attackers.starting import find_starting_points
from attackers.surrogates import Surrogates
from attackers.tracker import Tracker


class LIVIA(Attack):
    """LIVIA's surrogate-directed start, then prior-guided CGBA (see the module docstring);
    `surrogates`: checkpoint paths or torch modules (one adversarially trained, ideally)."""

    name = "livia"

    def __init__(
        self,
        surrogates,
        *,
        ddn_steps: int = 30,
        gradient_directions: bool = True,
        ensemble: bool = True,
        targets: int = 3,
        line_queries: int = 20,
        tolerance: float = 1e-3,
        refine_params: dict | None = None,
        seed: int | None = 0,
    ) -> None:
        self.surrogates = surrogates if isinstance(surrogates, Surrogates) else Surrogates(surrogates)
        self.ddn_steps = check_int("ddn_steps", ddn_steps, minimum=1)
        if not isinstance(gradient_directions, bool):
            raise ValueError(f"gradient_directions must be True or False, got {gradient_directions!r}")
        self.gradient_directions = gradient_directions
        if not isinstance(ensemble, bool):
            raise ValueError(f"ensemble must be True or False, got {ensemble!r}")
        self.ensemble = ensemble
        self.targets = check_int("targets", targets, minimum=0)
        self.line_queries = check_int("line_queries", line_queries, minimum=2)
        self.tolerance = check_float("tolerance", tolerance, 0.0, 0.5)
        self.refine_params = dict(refine_params or {})
        self.seed = check_seed(seed)
        try:
            self._refiner = PriorGuidedCGBA(self.surrogates, seed=self.seed, **self.refine_params)
        except TypeError as error:
            raise ValueError(f"refine_params: {error}") from None

    def check_surrogate(self, num_classes: int, image_shape: tuple[int, ...]) -> None:
        self.surrogates.check(num_classes, image_shape)

    # ------------------------------------------------------------------ search
    def search(self, tracker: Tracker, positions: np.ndarray, starts: np.ndarray | None,
               rng: np.random.Generator) -> None:
        x0 = tracker.originals[positions]
        labels = tracker.labels[positions]
        with tracker.timed("surrogate"):  # one-off white-box work
            self.check_surrogate(tracker.oracle.num_classes, tuple(tracker.originals.shape[1:]))
            directions = self.directions(x0, labels)
        k = positions.shape[0]
        best = np.zeros_like(x0)
        best_d = np.full(k, np.inf)
        for direction, length in directions:
            screen = np.isfinite(best_d)
            points, d = self.line_search(tracker, positions, x0, direction, np.where(screen, best_d, length), screen)
            better = d < best_d
            best[better] = points[better]
            best_d[better] = d[better]
        found = np.isfinite(best_d)
        rest = np.flatnonzero(~found & (tracker.remaining[positions] > 0))
        if rest.size:  # CGBA's own start for the samples no direction works for
            more, ok = find_starting_points(tracker, positions[rest], rng, None if starts is None else starts[rest],
                                            init=self._refiner.init, noise_tries=self._refiner.noise_tries)
            if ok.any():
                points, _ = bisect(tracker, positions[rest[ok]], more[ok], self.tolerance)
                best[rest[ok]] = points
                found[rest[ok]] = True
        rows = np.flatnonzero(found)
        if rows.size:
            self._refiner.iterate(tracker, positions[rows], best[rows], rng)

    def directions(self, x0: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Step 1: (unit directions float32 [k, ...], starting eps float64 [k]) per candidate,
        in the order tried: each surrogate's DDN direction, then its gradient direction (from
        that surrogate's DDN distance, or 1 where DDN found nothing). A zero row: no direction."""
        k = x0.shape[0]
        flat0 = x0.reshape(k, -1)
        out = []
        ddn = self.surrogates.minimal_adversarials(x0, labels, self.ddn_steps, ensemble=self.ensemble)
        for adversarials, ok in ddn:
            d = adversarials.reshape(k, -1) - flat0
            norm = np.linalg.norm(d, axis=1)
            ok = ok & (norm > 0)
            unit = np.where(ok[:, None], d / np.maximum(norm, 1e-12)[:, None], 0.0).astype(np.float32)
            out.append((unit.reshape(x0.shape), np.where(ok, norm, 1.0)))
        if self.targets:  # targeted DDN on the ensemble toward its most likely wrong classes
            import torch

            model = self.surrogates.ensemble()
            with torch.no_grad():
                logits = model(torch.from_numpy(x0)).numpy()
            logits[np.arange(k), labels] = -np.inf
            ranked = np.argsort(-logits, axis=1, kind="stable")[:, :self.targets]
            for j in range(ranked.shape[1]):
                adversarials, ok = self.surrogates.targeted_adversarials(model, x0, ranked[:, j], self.ddn_steps)
                d = adversarials.reshape(k, -1) - flat0
                norm = np.linalg.norm(d, axis=1)
                ok = ok & (norm > 0)
                unit = np.where(ok[:, None], d / np.maximum(norm, 1e-12)[:, None], 0.0).astype(np.float32)
                out.append((unit.reshape(x0.shape), np.where(ok, norm, 1.0)))
        if self.gradient_directions:
            for model, (_, length) in zip(self.surrogates.models(), out[len(ddn) - len(self.surrogates.sources):len(ddn)]):
                g = Surrogates([model], self.surrogates.batch_size).gradient(x0, labels)
                out.append((g.reshape(x0.shape), length))
        return out

    def line_search(self, tracker: Tracker, positions: np.ndarray, x0: np.ndarray, direction: np.ndarray,
                    eps: np.ndarray, screen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step 2 for one direction from `eps`: (closest adversarial point found float32 [k, ...],
        its distance, +inf where none), in at most `line_queries` queries per sample. Where
        `screen`, a first answer "not adversarial" ends the search (eps is the best distance
        the sample already has)."""
        k = positions.shape[0]
        lo_b, hi_b = tracker.bounds
        flat0 = x0.reshape(k, -1)
        flat_d = direction.reshape(k, -1)
        usable = np.abs(flat_d).max(axis=1) > 0
        best = np.zeros_like(x0)
        best_d = np.full(k, np.inf)
        lo = np.zeros(k)            # largest eps known not adversarial
        hi = np.full(k, np.inf)     # smallest eps known adversarial
        eps = eps.astype(np.float64).copy()
        spent = np.zeros(k, dtype=np.int64)
        # The far end: beyond it the clipped ray stops moving (every value at a bound).
        limit = np.sqrt(flat0.shape[1]) * (hi_b - lo_b) * 2.0
        while True:
            bracketed = np.isfinite(hi) & (lo > 0)
            narrow = bracketed & ((hi - lo) <= self.tolerance * hi)
            open_ = np.flatnonzero(usable & ~narrow & (spent < self.line_queries) & (tracker.remaining[positions] > 0)
                                   & ~(np.isinf(hi) & (eps > limit)))
            if open_.size == 0:
                break
            # bracket: eps doubles (no adversarial yet) or halves (no clean point yet); then bisect
            e = np.where(np.isinf(hi[open_]), eps[open_],
                         np.where(lo[open_] == 0, hi[open_] / 2.0, (lo[open_] + hi[open_]) / 2.0))
            points = np.clip(flat0[open_] + e[:, None] * flat_d[open_], lo_b, hi_b).astype(np.float32)
            answer = tracker.query(positions[open_], points.reshape(open_.size, *x0.shape[1:]))
            spent[open_] += 1
            adv = answer.adversarial
            hi[open_[adv]] = e[adv]
            closer = adv & (answer.distances < best_d[open_])
            best[open_[closer]] = points[closer].reshape(-1, *x0.shape[1:])
            best_d[open_[closer]] = answer.distances[closer]
            clean = answer.answered & ~adv
            lo[open_[clean]] = e[clean]
            eps[open_[clean]] = e[clean] * 2.0
            usable[open_[clean & screen[open_] & (spent[open_] == 1)]] = False
            usable[open_[~answer.answered]] = False
        return best, best_d
