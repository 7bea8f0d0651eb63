"""docs/rules.md section 6 as pure functions: records in, ranked tables out.

Per defense and evaluation sample, the score d is
- 0 when the defense misclassifies the clean image;
- else the smallest verified distance over every *finished* run against that defense;
- else (no run found an adversarial) the worst case ||max(x, 1 - x)||_2.

Defenses rank by the mean of d (higher is more robust). An attack is identified by its team and
its name (two teams' attacks that share a name are two entries). Each attack gets the same
per-sample rule restricted to its own finished runs, a mean per defense, and ranks by the mean of those
over the defenses it faced (lower is stronger); only an attack that faced every listed defense
is ranked. Ties break on the earlier submission (defenses: `submitted_at`; attacks: the
earliest `started_at` of their counted runs), then on the name so the order is total.

Section 7 (`scoreboard.uncertainty`): every mean carries a 95% bootstrap interval, and each row
the paired interval of its difference with the next row of its board (ranked attacks only).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from arena.contract import sample_scores
from scoreboard import uncertainty
from scoreboard.records import DefenseRecord, EvaluationSet, RunRecord

DEFAULT_RADII: tuple[float, ...] = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class Uncertainty:
    """Section 7 for one row: the interval of its mean and the paired comparison with the next row
    of its board (this row's mean minus the next's; NaN on the last row, or with no samples)."""

    mean_ci_low: float = math.nan
    mean_ci_high: float = math.nan
    diff_next: float = math.nan
    diff_next_ci_low: float = math.nan
    diff_next_ci_high: float = math.nan

    @property
    def has_next(self) -> bool:
        return not math.isnan(self.diff_next)

    @property
    def separated_from_next(self) -> bool | None:
        """Whether the paired interval with the next row excludes 0; None without a comparison."""
        if not self.has_next or math.isnan(self.diff_next_ci_low):
            return None
        return self.diff_next_ci_low > 0 or self.diff_next_ci_high < 0


@dataclass(frozen=True)
class DefenseScore:
    """One row of the defense board (docs/rules.md section 6), with its interval (section 7)."""

    rank: int                                        # 1 = most robust
    name: str
    team: str
    submitted_at: float
    mean_l2: float                                   # the score; nan when the evaluation set is empty
    median_l2: float
    clean_accuracy: float
    robust_accuracy: tuple[tuple[float, float], ...]  # (eps, fraction of samples with d > eps)
    attacks_faced: tuple[str, ...]                   # attacks with a finished run against it, sorted
    # Per-sample detail, indexed by evaluation sample. Empty when the score came over the wire
    # (GetLeaderboard carries the table only).
    distances: tuple[float, ...] = ()                # d per sample
    best_runs: tuple[str, ...] = ()                  # run that found d; "" where d is 0 or the worst case
    uncertainty: Uncertainty = Uncertainty()         # section 7

    def robust_accuracy_at(self, eps: float) -> float:
        """The robust accuracy at radius eps, nan when it was not computed for that radius."""
        for radius, accuracy in self.robust_accuracy:
            if radius == eps:
                return accuracy
        return math.nan


@dataclass(frozen=True)
class AttackScore:
    """One row of the attack board: an attack of one team, its mean over the defenses, its interval."""

    rank: int                        # 1 = strongest; 0 = unranked (has not faced every listed defense)
    attack: str
    mean_l2: float                   # mean over the defenses it faced of its own mean distance
    defenses_faced: int
    teams: tuple[str, ...]           # teams that ran it, sorted
    # Detail the wire does not carry (empty / nan when the score came from GetLeaderboard).
    per_defense: tuple[tuple[str, float], ...] = ()   # (defense, mean distance), in defense rank order
    first_started_at: float = math.nan                # its tie-breaker
    # Per sample, the mean over the defenses it faced of its own distance: mean_l2 is their mean.
    distances: tuple[float, ...] = ()
    uncertainty: Uncertainty = Uncertainty()          # section 7; compared with the next ranked attack
    team: str = ""                                    # the entry's owner (attacks are keyed by team and name)
    queries: int = 0                                  # images its counted runs spent

    @property
    def key(self) -> str:
        """How the entry is named on boards: "team/attack"."""
        return f"{self.team}/{self.attack}" if self.team else self.attack

    @property
    def ranked(self) -> bool:
        return self.rank > 0


@dataclass(frozen=True)
class Leaderboard:
    """Both boards of one split, ranked, with the radii and resamples they were computed with."""

    defenses: tuple[DefenseScore, ...]   # in rank order
    attacks: tuple[AttackScore, ...]     # ranked ones in rank order, then the unranked ones
    num_samples: int
    radii: tuple[float, ...] = DEFAULT_RADII
    resamples: int = uncertainty.RESAMPLES   # bootstrap resamples behind the intervals (section 7)


def leaderboard(
    defenses: Iterable[DefenseRecord],
    runs: Iterable[RunRecord],
    evaluation: EvaluationSet,
    radii: Sequence[float] = DEFAULT_RADII,
    *,
    resamples: int = uncertainty.RESAMPLES,
    seed: int = uncertainty.SEED,
) -> Leaderboard:
    """Ranks the given (accepted) defenses and the attacks run against them, with the intervals of
    section 7 from `resamples` bootstrap resamples drawn with `seed`.

    Runs against a defense that is not listed are ignored, and so are unfinished runs.
    Raises ValueError, naming the record, on any array whose shape does not match the
    evaluation set, on NaN or negative distances, on duplicate names or run ids, and on
    radii that are not finite and non-negative.
    """
    defenses = tuple(defenses)
    runs = tuple(runs)
    radii = _check_radii(radii)
    worst_case = _check_evaluation(evaluation)
    n = worst_case.shape[0]
    clean_correct = {d.name: _check_clean(d, n) for d in defenses}
    if len(clean_correct) != len(defenses):
        raise ValueError(f"duplicate defense names: {_duplicates(d.name for d in defenses)}")
    if len({r.run_id for r in runs}) != len(runs):
        raise ValueError(f"duplicate run ids: {_duplicates(r.run_id for r in runs)}")
    distances = {r.run_id: _check_distances(r, n) for r in runs}

    counted = [r for r in runs if r.finished and r.defense in clean_correct]

    defense_scores = []
    for record in defenses:
        own = [r for r in counted if r.defense == record.name]
        d, best = _per_sample(clean_correct[record.name], worst_case, own, distances)
        defense_scores.append(
            DefenseScore(
                rank=0,
                name=record.name,
                team=record.team,
                submitted_at=float(record.submitted_at),
                mean_l2=_mean(d),
                median_l2=float(np.median(d)) if n else math.nan,
                clean_accuracy=record.clean_accuracy,
                robust_accuracy=tuple((eps, _mean(d > eps)) for eps in radii),
                attacks_faced=tuple(sorted({f"{r.team}/{r.attack}" for r in own})),
                distances=tuple(float(v) for v in d),
                best_runs=best,
            )
        )
    # Higher mean first; an undefined mean (empty evaluation set) sorts last.
    defense_scores.sort(key=lambda s: (-_finite_or(s.mean_l2, -math.inf), s.submitted_at, s.name))
    defense_scores = [replace(s, rank=i + 1) for i, s in enumerate(defense_scores)]
    defense_order = [s.name for s in defense_scores]

    attack_scores = []
    for team, attack in sorted({(r.team, r.attack) for r in counted}):
        own = [r for r in counted if r.attack == attack and r.team == team]
        per_defense, per_sample = [], []
        for name in defense_order:
            against = [r for r in own if r.defense == name]
            if against:
                d, _ = _per_sample(clean_correct[name], worst_case, against, distances)
                per_defense.append((name, _mean(d)))
                per_sample.append(d)
        # The mean of the per-defense means equals the mean over samples of this per-sample mean
        # (every defense is scored on the same samples): the quantity section 7 resamples.
        own_d = np.mean(per_sample, axis=0)
        attack_scores.append(
            AttackScore(
                rank=0,
                attack=attack,
                mean_l2=float(np.mean([m for _, m in per_defense])),
                defenses_faced=len(per_defense),
                teams=(team,),
                per_defense=tuple(per_defense),
                first_started_at=min(float(r.started_at) for r in own),
                team=team,
                queries=int(sum(r.queries for r in own)),
                distances=tuple(float(v) for v in own_d),
            )
        )
    complete = [a for a in attack_scores if a.defenses_faced == len(defenses)]
    partial = [a for a in attack_scores if a.defenses_faced != len(defenses)]
    complete.sort(key=lambda a: (_finite_or(a.mean_l2, math.inf), a.first_started_at, a.attack, a.team))
    # Unranked: those closest to complete first; their means cover different defenses, so
    # the mean only orders attacks that faced the same number of defenses.
    partial.sort(key=lambda a: (-a.defenses_faced, _finite_or(a.mean_l2, math.inf), a.first_started_at, a.attack,
                                a.team))
    complete = [replace(a, rank=i + 1) for i, a in enumerate(complete)]

    draws = uncertainty.Resamples(n, resamples, seed)
    return Leaderboard(
        defenses=_with_uncertainty(defense_scores, defense_scores, draws),
        attacks=_with_uncertainty(complete, complete, draws) + _with_uncertainty(partial, [], draws),
        num_samples=n,
        radii=radii,
        resamples=resamples,
    )


def _with_uncertainty(rows: Sequence, compared: Sequence, draws: uncertainty.Resamples) -> tuple:
    """Rows (DefenseScore or AttackScore, in board order) with their section 7 fields: every row
    the interval of its mean; each row of `compared` (a prefix of rows: the ones a rank orders)
    the paired interval with the next one."""
    if not rows:
        return ()
    values = np.array([r.distances for r in rows], dtype=np.float64).reshape(len(rows), draws.n)
    # One pass over the resamples for the means and the differences together.
    k = max(len(compared) - 1, 0)
    both = uncertainty.mean_intervals(np.concatenate([values, values[:k] - values[1 : k + 1]]), draws)
    means, diffs = both[: len(rows)], both[len(rows) :]
    out = []
    for i, (row, mean) in enumerate(zip(rows, means)):
        diff = diffs[i] if i < len(diffs) else uncertainty.Interval(math.nan, math.nan, math.nan)
        out.append(replace(row, uncertainty=Uncertainty(mean.low, mean.high, diff.estimate, diff.low, diff.high)))
    return tuple(out)


def _per_sample(
    clean_correct: np.ndarray,
    worst_case: np.ndarray,
    runs: Sequence[RunRecord],
    distances: dict[str, np.ndarray],
) -> tuple[np.ndarray, tuple[str, ...]]:
    """d per sample over the given runs, and the run that found it ("" for 0 / worst case)."""
    n = worst_case.shape[0]
    if runs:
        stacked = np.stack([distances[r.run_id] for r in runs])  # [runs, N]
        best_index = np.argmin(stacked, axis=0)                    # first run wins an exact tie
        best = stacked[best_index, np.arange(n)]
    else:
        best_index = np.zeros(n, dtype=np.int64)
        best = np.full(n, np.inf)
    found = np.isfinite(best) & clean_correct
    d = sample_scores(best, clean_correct, worst_case)
    best_runs = tuple(runs[i].run_id if ok else "" for i, ok in zip(best_index, found))
    return d, best_runs


def _check_radii(radii: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(r) for r in radii)
    if any(not math.isfinite(r) or r < 0 for r in out):
        raise ValueError(f"radii must be finite and non-negative, got {list(radii)}")
    return out


def _check_evaluation(evaluation: EvaluationSet) -> np.ndarray:
    worst = np.asarray(evaluation.worst_case, dtype=np.float64)
    if worst.ndim != 1:
        raise ValueError(f"evaluation set: worst_case must be 1-D [N], got shape {worst.shape}")
    if not np.all(np.isfinite(worst)) or np.any(worst < 0):
        raise ValueError("evaluation set: worst_case must be finite and non-negative")
    return worst


def _check_clean(record: DefenseRecord, n: int) -> np.ndarray:
    clean = np.asarray(record.clean_correct)
    if clean.shape != (n,):
        raise ValueError(
            f"defense {record.name!r}: clean_correct has shape {clean.shape}, "
            f"the evaluation set has {n} samples"
        )
    if clean.dtype != np.bool_:
        if not np.isin(clean, (0, 1)).all():
            raise ValueError(f"defense {record.name!r}: clean_correct must be bool (or 0/1), got {clean.dtype}")
        clean = clean.astype(np.bool_)
    return clean


def _check_distances(run: RunRecord, n: int) -> np.ndarray:
    distances = np.asarray(run.distances, dtype=np.float64)
    if distances.shape != (n,):
        raise ValueError(
            f"run {run.run_id!r} ({run.attack} against {run.defense}): distances has shape "
            f"{distances.shape}, the evaluation set has {n} samples"
        )
    if np.any(np.isnan(distances)) or np.any(distances < 0):
        raise ValueError(f"run {run.run_id!r}: distances must be non-negative (+inf where none), not NaN")
    return distances


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else math.nan


def _finite_or(value: float, default: float) -> float:
    return default if math.isnan(value) else value


def _duplicates(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    dup: list[str] = []
    for name in names:
        if name in seen and name not in dup:
            dup.append(name)
        seen.add(name)
    return dup
