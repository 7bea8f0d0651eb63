"""The attack base class and the per-sample result (the Foolbox 3 pattern, with a tracker).

An attack object holds only its hyper-parameters (validated at construction; errors name the
parameter; `repr` shows the constructor arguments). One configured attack runs against any
oracle through the single final entry point

    result = attack.run(oracle_or_tracker, images, labels, budget=1000, starting_points=None)

which checks the inputs, wraps the oracle in a `Tracker` (or uses the one given), queries each
clean image once (a sample the model already misclassifies is done at distance 0), runs the
subclass's search on the remaining samples and builds the `AttackResult` from the tracker.
Subclasses implement `_search` only; they query through the tracker, never count anything, build
what they query with `attackers.kernels` (which clips to the bounds), and stop for a sample when
its budget is spent.
"""

from __future__ import annotations

import abc
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, final

import numpy as np

from arena.contract import DEFAULT_BUDGET
from attackers.oracle import Oracle
from attackers.tracker import Tracker


@dataclass(frozen=True)
class AttackResult:
    """Per sample: the best adversarial paid for, its distance, success and queries used.

    Where no adversarial was found, success is False, distance is +inf, and `adversarials`
    holds the clean image only as a placeholder: use `adversarial(i)`, which returns None there."""

    adversarials: np.ndarray  # float32 [n, 3, 64, 64]
    distances: np.ndarray     # float64 [n], +inf where none was found
    success: np.ndarray       # bool [n]
    queries: np.ndarray       # int64 [n], images charged to each sample
    sample_ids: np.ndarray    # int64 [n], the oracle's id of each sample

    @classmethod
    def from_tracker(cls, tracker: Tracker) -> AttackResult:
        success = tracker.found.copy()
        return cls(
            adversarials=tracker.best.copy(),
            distances=np.where(success, tracker.best_distance, np.inf),
            success=success,
            queries=tracker.queries.copy(),
            sample_ids=tracker.sample_ids.copy(),
        )

    def __len__(self) -> int:
        return int(self.distances.shape[0])

    def adversarial(self, i: int) -> np.ndarray | None:
        return self.adversarials[i] if self.success[i] else None

    @property
    def success_rate(self) -> float:
        return float(self.success.mean()) if len(self) else 0.0

    @property
    def mean_distance(self) -> float:
        """Mean l2 over all samples (+inf if any failed: see `mean_found_distance`)."""
        return float(self.distances.mean()) if len(self) else math.nan

    @property
    def mean_found_distance(self) -> float:
        d = self.distances[self.success]
        return float(d.mean()) if d.size else math.nan

    def records(self) -> list[dict[str, Any]]:
        """JSON-ready per-sample records (distance None where not found)."""
        return [
            {
                "sample": int(s),
                "success": bool(ok),
                "distance": float(d) if ok else None,
                "queries": int(q),
            }
            for s, ok, d, q in zip(self.sample_ids, self.success, self.distances, self.queries)
        ]


# ---------------------------------------------------------------- parameter checks
def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
    return int(value)


def check_float(name: str, value: Any, low: float | None = None, high: float | None = None,
                low_open: bool = True, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    v = float(value)
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {value!r}")
    return v


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_seed(value: Any) -> int | None:
    if value is None:
        return None
    return check_int("seed", value, minimum=0)


# ---------------------------------------------------------------- the base class
class Attack(abc.ABC):
    """Base of every attack: hyper-parameters in, one `run` entry point, `_search` to implement."""

    name: ClassVar[str]  # as registered for `arena attack --attack` and ranked on the scoreboard

    def __repr__(self) -> str:
        params = inspect.signature(type(self).__init__).parameters
        args = [f"{p}={getattr(self, p)!r}" for p in params if p != "self" and hasattr(self, p)]
        return f"{type(self).__name__}({', '.join(args)})"

    @final
    def run(
        self,
        oracle: Oracle | Tracker,
        images: np.ndarray,
        labels: np.ndarray,
        budget: int | None = None,
        *,
        starting_points: np.ndarray | None = None,
        sample_ids: np.ndarray | None = None,
        on_improve: Callable[[Tracker, np.ndarray], None] | None = None,
    ) -> AttackResult:
        """Attacks images (float32 [n,3,64,64] in the oracle's bounds) with true labels (int [n])
        under `budget` queries per sample (default 1000, the arena's). Given a Tracker instead of
        an oracle, the attack goes on with it (images and labels must be the tracker's; a budget
        can only lower the tracker's, None keeps it).
        `starting_points`: optional adversarial candidates [n,3,64,64] (rows of NaN: none),
        verified with one query each before use."""
        if isinstance(oracle, Tracker):
            tracker = oracle
            if np.shape(images) != tracker.originals.shape or not np.array_equal(images, tracker.originals):
                raise ValueError("images must be the tracker's images when a tracker is given")
            if not np.array_equal(np.asarray(labels), tracker.labels):
                raise ValueError("labels must be the tracker's labels when a tracker is given")
            if budget is not None:  # can only lower the tracker's budget
                check_int("budget", budget, minimum=0)
                tracker.budget[:] = np.minimum(tracker.budget, np.maximum(tracker.queries, budget))
            if sample_ids is not None or on_improve is not None:
                raise ValueError("sample_ids and on_improve belong to the tracker when a tracker is given")
        else:
            if budget is None:
                budget = DEFAULT_BUDGET
            check_int("budget", budget, minimum=0)
            images = np.asarray(images)
            if images.dtype != np.float32:
                if not np.issubdtype(images.dtype, np.floating):
                    raise ValueError(f"images must be floating point in {oracle.bounds}, got {images.dtype}")
                images = images.astype(np.float32)
            tracker = Tracker(oracle, images, labels, budget, sample_ids=sample_ids, on_improve=on_improve)
        starts = self._check_starting_points(starting_points, tracker)
        rng = np.random.default_rng(getattr(self, "seed", None))

        # One query per clean image not yet asked about: already misclassified means distance 0.
        fresh = np.flatnonzero((tracker.queries == 0) & (tracker.remaining > 0))
        if fresh.size:
            tracker.query(fresh, tracker.originals[fresh])
        todo = np.flatnonzero(~tracker.found & (tracker.remaining > 0))
        if todo.size:
            self._search(tracker, todo, None if starts is None else starts[todo], rng)
        return AttackResult.from_tracker(tracker)

    @abc.abstractmethod
    def _search(self, tracker: Tracker, positions: np.ndarray, starts: np.ndarray | None,
                rng: np.random.Generator) -> None:
        """Searches adversarials for the samples at `positions` (clean image correctly
        classified, budget left), querying only through `tracker`. `starts`: candidate
        starting points for those samples (rows of NaN: none), or None."""

    @staticmethod
    def _check_starting_points(starts: np.ndarray | None, tracker: Tracker) -> np.ndarray | None:
        if starts is None:
            return None
        starts = np.asarray(starts)
        if starts.shape != tracker.originals.shape:
            raise ValueError(f"starting_points must have shape {list(tracker.originals.shape)}, got {list(starts.shape)}")
        if not np.issubdtype(starts.dtype, np.floating):
            raise ValueError(f"starting_points must be floating point, got {starts.dtype}")
        starts = starts.astype(np.float32)
        rows = starts.reshape(starts.shape[0], -1)
        bad = ~np.isfinite(rows).all(axis=1) & ~np.isnan(rows).all(axis=1)
        if bad.any():
            raise ValueError(f"starting point {int(np.flatnonzero(bad)[0])} mixes finite and non-finite values")
        lo, hi = tracker.bounds
        given = ~np.isnan(rows).all(axis=1)
        if given.any() and (rows[given].min() < lo or rows[given].max() > hi):
            raise ValueError(f"starting points must lie within [{lo:g}, {hi:g}]")
        return starts

