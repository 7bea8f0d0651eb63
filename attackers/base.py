"""The attack base class and the per-sample result (the Foolbox 3 pattern, with a tracker).

An attack object holds only its hyper-parameters (validated at construction; errors name the
parameter; `repr` shows the constructor arguments). One configured attack runs against any
oracle through the single final entry point

    result = attack.run(oracle_or_tracker, images, labels, budget=1000, starting_points=None)

which checks the inputs, wraps the oracle in a `Tracker` (or uses the one given), queries each
clean image once (a sample the model already misclassifies is done at distance 0), runs the
subclass's `search` on the remaining samples and builds the `AttackResult` from the tracker.

The extension point (public, documented in docs/write-an-attack.md): a subclass sets `name` and
implements

    def search(self, tracker, positions, starts, rng) -> None

querying only through `tracker.query(positions, images)` (the tracker counts, enforces the
budget and keeps each sample's best adversarial), drawing randomness only from `rng`, and
stopping for a sample when its budget is spent. The base class owns the seed and the generator:
`rng` is `np.random.default_rng(self.seed)`, and `seed` defaults to 0 on the class, so an attack
that never sets one is still deterministic (resuming a remote run replays its requests under the
same ids). `config()` is the attack's configuration (its constructor parameters) and
`config_digest()` the sha256 of its canonical JSON, which a run records beside the attack's name.
"""

from __future__ import annotations

import abc
import hashlib
import inspect
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, final

import numpy as np

from arena.ground.contract import DEFAULT_BUDGET
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
    sample_indices: np.ndarray    # int64 [n], the oracle's id of each sample

    @classmethod
    def from_tracker(cls, tracker: Tracker) -> AttackResult:
        success = tracker.found.copy()
        return cls(
            adversarials=tracker.best.copy(),
            distances=np.where(success, tracker.best_distance, np.inf),
            success=success,
            queries=tracker.queries.copy(),
            sample_indices=tracker.sample_indices.copy(),
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
            for s, ok, d, q in zip(self.sample_indices, self.success, self.distances, self.queries)
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
    """Base of every attack: hyper-parameters in, one `run` entry point, `search` to implement."""

    name: ClassVar[str]  # as registered for `arena attack --attack` and ranked on the scoreboard
    # The generator's seed (None: fresh entropy, not resumable). A class attribute, so that an
    # attack whose constructor never sets one is still deterministic.
    seed: int | None = 0

    def __repr__(self) -> str:
        args = [f"{p}={v!r}" for p, v in self._params().items()]
        return f"{type(self).__name__}({', '.join(args)})"

    def _params(self) -> dict[str, Any]:
        """The constructor's parameters as the attack holds them (stored under the same names)."""
        params = inspect.signature(type(self).__init__).parameters
        return {p: getattr(self, p) for p, kind in params.items()
                if p != "self" and kind.kind not in (kind.VAR_POSITIONAL, kind.VAR_KEYWORD) and hasattr(self, p)}

    def config(self) -> dict[str, Any]:
        """The attack's configuration: its class and constructor parameters, as JSON values
        (tuples as lists, paths as strings, other objects (e.g. a torch module) by type name)."""
        params = {**self._params(), "seed": self.seed}
        return {"attack": self.name, "class": f"{type(self).__module__}.{type(self).__qualname__}",
                "params": {k: _jsonable(v) for k, v in sorted(params.items())}}

    def config_digest(self) -> str:
        """sha256 (hex) of `config()` as canonical JSON (sorted keys, no spaces): two runs under
        one attack name with different configurations are told apart by it."""
        text = json.dumps(self.config(), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @final
    def run(
        self,
        oracle: Oracle | Tracker,
        images: np.ndarray,
        labels: np.ndarray,
        budget: int | None = None,
        *,
        starting_points: np.ndarray | None = None,
        sample_indices: np.ndarray | None = None,
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
            if sample_indices is not None or on_improve is not None:
                raise ValueError("sample_indices and on_improve belong to the tracker when a tracker is given")
        else:
            if budget is None:
                budget = DEFAULT_BUDGET
            check_int("budget", budget, minimum=0)
            images = np.asarray(images)
            if images.dtype != np.float32:
                if not np.issubdtype(images.dtype, np.floating):
                    raise ValueError(f"images must be floating point in {oracle.bounds}, got {images.dtype}")
                images = images.astype(np.float32)
            tracker = Tracker(oracle, images, labels, budget, sample_indices=sample_indices, on_improve=on_improve)
        starts = self._check_starting_points(starting_points, tracker)
        rng = np.random.default_rng(self.seed)

        # One query per clean image not yet asked about: already misclassified means distance 0.
        fresh = np.flatnonzero((tracker.queries == 0) & (tracker.remaining > 0))
        if fresh.size:
            tracker.query(fresh, tracker.originals[fresh])
        todo = np.flatnonzero(~tracker.found & (tracker.remaining > 0))
        if todo.size:
            self.search(tracker, todo, None if starts is None else starts[todo], rng)
        return AttackResult.from_tracker(tracker)

    @abc.abstractmethod
    def search(self, tracker: Tracker, positions: np.ndarray, starts: np.ndarray | None,
               rng: np.random.Generator) -> None:
        """Searches adversarials for the samples at `positions` (indices into the tracker's
        samples whose clean image is correctly classified and that have budget left).

        Query with `tracker.query(positions_of_images, images)` (float32 [m,3,64,64] within
        `tracker.bounds`; a sample may appear many times); its `Answer` says per image whether
        it was answered and adversarial. The tracker keeps each sample's best adversarial; the
        attack returns nothing. `tracker.originals`, `tracker.labels` and `tracker.remaining`
        (queries left per sample) are the state to read. `starts`: candidate starting points
        for those samples (rows of NaN: none), or None. `rng`: the only source of randomness."""

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



def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, Attack):
        return value.config()
    describe = getattr(value, "describe", None)  # e.g. attackers.surrogates.Surrogates
    if callable(describe):
        return _jsonable(describe())
    return f"<{type(value).__module__}.{type(value).__qualname__}>"
