"""Transfer-PGD: a surrogate's white-box adversarials as starting points, refined label-only.

1. On a surrogate torch model (any checkpoint from `arena train`, or a module), l2 PGD with a
   margin loss (best other logit minus true logit, not capped: high-confidence adversarials
   transfer better) at each of the increasing `radii`; then targeted PGD (target logit minus
   the best other) toward each of the surrogate's `targets` most likely wrong classes, at the
   radii `target_levels` steps above the smallest one that fooled the surrogate. All batched.
2. On the real oracle, the candidates are tried in that order, one query each, one batched
   query per round: until a sample has an adversarial, a candidate itself; after that, the
   candidate's direction at `screen` times the best distance so far, so a candidate that cannot
   do better costs one query. Each hit is bisected along its direction toward the original.
   (Which wrong class transfers closest is hard to predict, even from the target's own logits:
   trying many directions this cheaply is what gets near the white-box minimum.)
3. The remaining budget refines the best point with HopSkipJump (or Boundary Attack).
A sample no candidate works for falls back on the refining attack's own start.

torch is imported here only, lazily: the rest of `attackers` never needs it. The surrogate
computation is deterministic on a given machine and thread count (needed for resuming a remote
run by replaying its requests).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from attackers import kernels
from attackers.base import Attack, check_choice, check_float, check_int, check_seed
from attackers.bisection import bisect
from attackers.boundary import BoundaryAttack
from attackers.hopskipjump import HopSkipJump
from attackers.starting import find_starting_points
from attackers.surrogates import SurrogateError
from attackers.tracker import Tracker

REFINERS = {"hsja": HopSkipJump, "boundary": BoundaryAttack}
DEFAULT_RADII = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
# Refining from a close start is local work: bigger, finer gradient estimates and only steps that
# shorten the distance pay off there (measured: 0.92 vs 1.06 mean l2 with the standalone defaults).
REFINE_DEFAULTS = {"hsja": {"init_estimates": 50, "keep_best": True}}


class TransferPGD(Attack):
    """Transfer attack: PGD on a white-box surrogate gives the start directions, then a label-only
    refinement on the target."""

    name = "transfer-pgd"

    def __init__(
        self,
        surrogate: str | os.PathLike | Any,
        *,
        radii: tuple[float, ...] = DEFAULT_RADII,
        steps: int = 5,
        targets: int = 9,
        target_levels: tuple[int, ...] = (1,),
        screen: float = 0.98,
        refine: str = "hsja",
        refine_params: dict | None = None,
        tolerance: float = 1e-3,
        batch_size: int = 128,
        seed: int | None = 0,
    ) -> None:
        if isinstance(surrogate, (str, os.PathLike)):
            path = Path(surrogate)
            if not path.exists():
                raise ValueError(f"surrogate checkpoint {path} does not exist")
            self.surrogate: Any = str(surrogate)
        elif callable(surrogate):
            self.surrogate = surrogate  # a torch module mapping [N,3,64,64] in [0,1] to logits
        else:
            raise ValueError(f"surrogate must be a checkpoint path or a torch module, got {type(surrogate).__name__}")
        radii = tuple(radii)
        if not radii:
            raise ValueError("radii must hold at least one radius")
        self.radii = tuple(check_float("radii", r, 0.0) for r in radii)
        if list(self.radii) != sorted(set(self.radii)):
            raise ValueError(f"radii must be strictly increasing, got {radii!r}")
        self.steps = check_int("steps", steps, minimum=1)
        self.targets = check_int("targets", targets, minimum=0)
        self.target_levels = tuple(check_int("target_levels", v, minimum=0) for v in target_levels)
        self.screen = check_float("screen", screen, 0.0, 1.0)
        self.refine = check_choice("refine", refine, tuple(REFINERS))
        self.refine_params = dict(refine_params or {})
        self.tolerance = check_float("tolerance", tolerance, 0.0, 0.5)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.seed = check_seed(seed)
        params = {"seed": self.seed, **REFINE_DEFAULTS.get(refine, {}), **self.refine_params}
        try:
            self._refiner = REFINERS[refine](**params)
        except TypeError as error:
            raise ValueError(f"refine_params: {error}") from None
        self._model = None

    # ------------------------------------------------------------------ the surrogate
    def surrogate_model(self):
        """The surrogate as a torch module in eval mode (loaded once)."""
        if self._model is None:
            if isinstance(self.surrogate, str):
                from defenses.checkpoint import load_checkpoint

                try:
                    self._model = load_checkpoint(self.surrogate).model
                except Exception as error:  # unreadable, not ours, or another architecture's weights
                    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                    raise SurrogateError(f"cannot load the surrogate {self.surrogate}: {first}") from None
            else:
                self._model = self.surrogate
            self._model.eval()
        return self._model

    def check_surrogate(self, num_classes: int, image_shape: tuple[int, ...]) -> None:
        """Raises SurrogateError unless the surrogate takes images of image_shape and has
        num_classes logits (call it before starting a run, so a wrong one wastes nothing)."""
        import torch

        model = self.surrogate_model()
        try:
            with torch.no_grad():
                out = model(torch.zeros((2, *image_shape), dtype=torch.float32))
        except Exception as error:  # any shape error of any layer
            raise SurrogateError(
                f"the surrogate {self._describe()} does not take images of shape {list(image_shape)}: {error}"
            ) from None
        if tuple(out.shape) != (2, num_classes):
            got = out.shape[-1] if out.ndim == 2 else list(out.shape[1:])
            raise SurrogateError(
                f"the surrogate {self._describe()} has {got} classes but the target has {num_classes}"
            )

    def _describe(self) -> str:
        return self.surrogate if isinstance(self.surrogate, str) else type(self.surrogate).__name__

    def __getstate__(self):  # the loaded module is a cache, not configuration
        state = dict(self.__dict__)
        state["_model"] = None
        return state

    # ------------------------------------------------------------------ search
    def search(self, tracker: Tracker, positions: np.ndarray, starts: np.ndarray | None,
                rng: np.random.Generator) -> None:
        x0 = tracker.originals[positions]
        with tracker.timed("surrogate"):  # one-off white-box work, reported apart by the benchmark
            self.check_surrogate(tracker.oracle.num_classes, tuple(tracker.originals.shape[1:]))
            candidates, valid = self.surrogate_candidates(x0, tracker.labels[positions], tracker.bounds)
        k = positions.shape[0]
        best = np.zeros_like(x0)
        best_d = np.full(k, np.inf)
        flat0 = x0.reshape(k, -1)
        for j in range(candidates.shape[1]):
            rows = np.flatnonzero(valid[:, j] & (tracker.remaining[positions] > 0))
            if rows.size == 0:
                continue
            direction = candidates[rows, j].reshape(rows.size, -1) - flat0[rows]
            norm = np.linalg.norm(direction, axis=1)
            keep = norm > 0
            rows, direction, norm = rows[keep], direction[keep], norm[keep]
            # Without an adversarial yet: the candidate itself. With one at distance b: the
            # candidate's direction at screen * b, one query that tells whether it can do better.
            length = np.where(np.isfinite(best_d[rows]), self.screen * best_d[rows], norm)
            probe = kernels.step(x0, length / norm, direction.reshape(rows.size, *x0.shape[1:]), tracker.bounds,
                                 base_rows=rows)
            answer = tracker.query(positions[rows], probe)
            hit = np.flatnonzero(answer.adversarial)
            if hit.size == 0:
                continue
            points, d = bisect(tracker, positions[rows[hit]], probe[hit], self.tolerance)
            better = d < best_d[rows[hit]]
            best[rows[hit[better]]] = points[better]
            best_d[rows[hit[better]]] = d[better]
        found = np.isfinite(best_d)
        # Given starting points, then the refining attack's own start, for the rest.
        rest = np.flatnonzero(~found & (tracker.remaining[positions] > 0))
        if rest.size:
            more, ok = find_starting_points(
                tracker, positions[rest], rng, None if starts is None else starts[rest],
                init=self._refiner.init, noise_tries=self._refiner.noise_tries,
            )
            if ok.any():
                points, _ = bisect(tracker, positions[rest[ok]], more[ok], self.tolerance)
                best[rest[ok]] = points
                found[rest[ok]] = True
        rows = np.flatnonzero(found)
        if rows.size == 0:
            return
        self._refiner.iterate(tracker, positions[rows], best[rows], rng)

    def surrogate_candidates(self, x0: np.ndarray, labels: np.ndarray,
                             bounds: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        """The surrogate's adversarial candidates, in the order they are tried: untargeted PGD at
        every radius (increasing), then targeted PGD toward each of the surrogate's `targets`
        most likely wrong classes, at the radii `target_levels` steps above the smallest radius
        that fooled the surrogate. Returns (candidates float32 [k, M, ...], valid bool [k, M]):
        valid where the surrogate misclassifies the candidate."""
        import torch

        model = self.surrogate_model()
        k, R = x0.shape[0], len(self.radii)
        y = labels.astype(np.int64)
        untargeted = np.repeat(np.arange(k), R), np.tile(np.arange(R), k)
        adv_u, ok_u = self._pgd_batches(model, x0, y, untargeted[0], np.asarray(self.radii)[untargeted[1]],
                                        np.full(k * R, -1), bounds)
        cands = [adv_u.reshape(k, R, *x0.shape[1:])]
        valid = [ok_u.reshape(k, R)]
        if self.targets and self.target_levels:
            with torch.no_grad():
                logits = torch.cat([model(torch.from_numpy(x0[i:i + self.batch_size]))
                                    for i in range(0, k, self.batch_size)]).numpy()
            logits[np.arange(k), y] = -np.inf
            n_t = min(self.targets, logits.shape[1] - 1)
            ranked = np.argsort(-logits, axis=1, kind="stable")[:, :n_t]
            fooled_at = np.where(valid[0].any(axis=1), valid[0].argmax(axis=1), R - 1)
            L = len(self.target_levels)
            sample = np.repeat(np.arange(k), n_t * L)
            target = np.repeat(ranked.reshape(-1), L)
            level = np.tile(np.asarray(self.target_levels), k * n_t)
            radius = np.asarray(self.radii)[np.minimum(fooled_at[sample] + level, R - 1)]
            adv_t, ok_t = self._pgd_batches(model, x0, y, sample, radius, target, bounds)
            cands.append(adv_t.reshape(k, n_t * L, *x0.shape[1:]))
            valid.append(ok_t.reshape(k, n_t * L))
        return np.concatenate(cands, axis=1), np.concatenate(valid, axis=1)

    def _pgd_batches(self, model, x0, y, sample, radius, target, bounds):
        import torch

        m = sample.shape[0]
        adv = np.empty((m, *x0.shape[1:]), dtype=np.float32)
        ok = np.zeros(m, dtype=bool)
        for start in range(0, m, self.batch_size):
            sl = slice(start, start + self.batch_size)
            a, o = _pgd_l2(model, torch.from_numpy(x0[sample[sl]]), torch.from_numpy(y[sample[sl]]),
                           torch.from_numpy(radius[sl].astype(np.float32)), torch.from_numpy(target[sl].astype(np.int64)),
                           self.steps, bounds)
            adv[sl], ok[sl] = a, o
        return adv, ok


def _pgd_l2(model, x, y, radius, target, steps: int, bounds: tuple[float, float]):
    """l2 PGD within ||delta|| <= radius maximising a margin: max_{j != y} z_j - z_y where
    target < 0 (untargeted), z_target - max_{j != target} z_j otherwise. The margin is not
    capped: a high-confidence adversarial transfers better. Returns (the best iterate per row,
    float32 numpy; whether the surrogate misclassifies it, bool numpy)."""
    import torch

    lo, hi = bounds
    step = (2.5 * radius / steps)[:, None, None, None]
    targeted = target >= 0
    delta = torch.zeros_like(x)
    best = x.clone()
    best_margin = torch.full((x.shape[0],), -float("inf"))
    best_wrong = torch.zeros(x.shape[0], dtype=torch.bool)
    for i in range(steps + 1):
        delta.requires_grad_(True)
        logits = model(x + delta)
        true = logits.gather(1, y[:, None])[:, 0]
        others = logits.clone()
        others.scatter_(1, y[:, None], -float("inf"))
        untargeted_margin = others.max(dim=1).values - true
        t = torch.where(targeted, target, y)
        tz = logits.gather(1, t[:, None])[:, 0]
        rest = logits.clone()
        rest.scatter_(1, t[:, None], -float("inf"))
        margin = torch.where(targeted, tz - rest.max(dim=1).values, untargeted_margin)
        with torch.no_grad():  # keep the best iterate (the last one may overshoot)
            better = margin > best_margin
            best[better] = (x + delta)[better].detach()
            best_margin = torch.where(better, margin.detach(), best_margin)
            best_wrong = torch.where(better, untargeted_margin.detach() > 0, best_wrong)
        if i == steps:
            break
        grad, = torch.autograd.grad(margin.sum(), delta)
        with torch.no_grad():
            g = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]
            delta = delta.detach() + step * g
            norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
            delta = delta * torch.clamp(radius / norm, max=1.0)[:, None, None, None]
            delta = (x + delta).clamp(lo, hi) - x
    return best.numpy().astype(np.float32), best_wrong.numpy()
