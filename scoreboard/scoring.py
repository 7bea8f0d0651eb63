"""docs/rules.md sections 6 and 7 as pure functions: records in, ranked tables out.

Per defense and evaluation sample, the score d is (section 6)
- 0 when the defense misclassifies the clean image (known without an attack);
- else, if some finished run attacked the sample (spent queries on it or submitted for it), the
  smallest verified distance over those runs, or, where none found an adversarial, the fill:
  min(worst case, the largest distance verified on the split) (`fill_cap`);
- else (nobody attacked it) no d at all.
A defense with a d on every sample is covered and ranked by the mean of d (higher is more
robust); one without is provisional: shown with its coverage, its mean over the samples that have
a d, unranked and in no comparison. An attack is identified by its team and its name; its score
per defense is the same rule over its own runs, on defenses it covered; it is never scored on its
own team's defenses; it ranks by the mean over the attack board's defenses (all covered ones, or
the organizer's set) among entries of the same budget per sample (lower is stronger). Ties break
on the earlier submission (defenses) or first run (attacks), then on the name.

Section 7 (`scoreboard.uncertainty`): every mean carries a 95% bootstrap-t interval, and each
ranked row the paired comparison with the next row of its group, Holm-corrected over the board.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from arena.ground.contract import sample_scores
from scoreboard import uncertainty
from scoreboard.records import DefenseRecord, EvaluationSet, RunRecord

DEFAULT_RADII: tuple[float, ...] = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class Uncertainty:
    """Section 7 for one row: the interval of its mean and the paired comparison with the next row
    of its board (this row's mean minus the next's; NaN on the last row, or with no samples), with
    the Holm-adjusted p-value over the board's neighbour pairs and the verdict it gives."""

    mean_ci_low: float = math.nan
    mean_ci_high: float = math.nan
    diff_next: float = math.nan
    diff_next_ci_low: float = math.nan
    diff_next_ci_high: float = math.nan
    diff_next_p: float = math.nan        # Holm-adjusted p-value of "no difference"
    separated: bool | None = None        # the Holm verdict at 5%; None without a comparison

    @property
    def has_next(self) -> bool:
        return not math.isnan(self.diff_next)

    @property
    def separated_from_next(self) -> bool | None:
        """Whether the board's (Holm-corrected) verdict separates this row from the next; None
        without a comparison."""
        return self.separated if self.has_next else None


@dataclass(frozen=True)
class AttackFaced:
    """One attack entry's coverage of a defense: how many samples its finished runs attacked, at
    what budget per sample."""

    attack: str      # "team/attack"
    budget: int      # queries per sample its runs were allowed
    samples: int     # samples attacked


@dataclass(frozen=True)
class DefenseScore:
    """One row of the defense board (docs/rules.md section 6), with its interval (section 7)."""

    rank: int                                        # 1 = most robust; 0 = provisional (unranked)
    name: str
    team: str
    submitted_at: float
    mean_l2: float                                   # mean of d over the samples that have one
    median_l2: float
    clean_accuracy: float
    robust_accuracy: tuple[tuple[float, float], ...]  # (eps, fraction of samples with d > eps)
    attacks_faced: tuple[str, ...]                   # attacks with a finished run against it, sorted
    # Per-sample detail, indexed by evaluation sample. Empty when the score came over the wire
    # (GetLeaderboard carries the table only). NaN where the sample has no d (not attacked).
    distances: tuple[float, ...] = ()                # d per sample
    best_runs: tuple[str, ...] = ()                  # run that found d; "" where d is 0, a fill or none
    uncertainty: Uncertainty = Uncertainty()         # section 7
    covered_samples: int = 0                         # samples with a d (attacked, or clean misclassified)
    num_samples: int = 0                             # samples of the split
    unbroken: int = 0                                # attacked samples no attack broke (filled)
    faced: tuple[AttackFaced, ...] = ()              # per attack entry: budget and samples attacked
    referee_covered: bool = False                    # the referee's attacks alone covered it

    def robust_accuracy_at(self, eps: float) -> float:
        """The robust accuracy at radius eps, nan when it was not computed for that radius."""
        for radius, accuracy in self.robust_accuracy:
            if radius == eps:
                return accuracy
        return math.nan

    @property
    def provisional(self) -> bool:
        """Not every sample has a d yet: unranked, in no comparison (section 6)."""
        return self.covered_samples < self.num_samples


@dataclass(frozen=True)
class AttackScore:
    """One row of the attack board: an attack of one team, its mean over the defenses, its interval."""

    rank: int                        # 1 = strongest within its budget; 0 = unranked
    attack: str
    mean_l2: float                   # mean over the defenses it faced of its own mean distance
    defenses_faced: int              # of the attack board's defenses, its own team's left out
    teams: tuple[str, ...]           # teams that ran it, sorted
    # Detail the wire does not carry (empty / nan when the score came from GetLeaderboard).
    per_defense: tuple[tuple[str, float], ...] = ()   # (defense, mean distance), in defense rank order
    first_started_at: float = math.nan                # its tie-breaker
    # Per sample, the mean over the defenses it faced of its own distance: mean_l2 is their mean.
    distances: tuple[float, ...] = ()
    uncertainty: Uncertainty = Uncertainty()          # section 7; compared with the next ranked attack
    team: str = ""                                    # the entry's owner (attacks are keyed by team and name)
    queries: int = 0                                  # images its counted runs spent
    budget: int = 0                                   # queries per sample its runs were allowed
    referee: bool = False                             # one of the organizer's reference attacks
    defenses_listed: int = 0                          # the board's defenses it must face (own left out)
    own_defenses: tuple[str, ...] = ()                # its team's defenses: never scored (section 6)

    @property
    def key(self) -> str:
        """How the entry is named on boards: "team/attack"."""
        return f"{self.team}/{self.attack}" if self.team else self.attack

    @property
    def ranked(self) -> bool:
        return self.rank > 0


@dataclass(frozen=True)
class Disqualification:
    """A defense or run the organizer disqualified, listed beside the boards (section 6)."""

    kind: str        # "defense" or "run"
    name: str        # defense name or run id
    team: str
    reason: str
    detail: str = ""  # a run's attack and defense


@dataclass(frozen=True)
class Leaderboard:
    """Both boards of one split, ranked, with the radii and resamples they were computed with."""

    defenses: tuple[DefenseScore, ...]   # ranked ones in rank order, then the provisional ones
    attacks: tuple[AttackScore, ...]     # ranked ones by budget (largest first) and rank, then the unranked
    num_samples: int
    radii: tuple[float, ...] = DEFAULT_RADII
    resamples: int = uncertainty.RESAMPLES   # bootstrap resamples behind the intervals (section 7)
    split: str = ""                          # "public" (provisional ranking) or "private" (official)
    fill_cap: float = math.nan               # the largest distance verified on the split (the fill's cap)
    attack_defenses: tuple[str, ...] = ()    # the defenses the attack board ranks over
    attack_set_rule: str = ""                # how they were chosen (e.g. "every covered defense")
    disqualified: tuple[Disqualification, ...] = ()
    notice: str = ""                         # said on every board (e.g. a demo's private split)

    @property
    def referee_covered_all(self) -> bool:
        """Whether the referee's attacks have covered every listed defense: until then the ranking
        is not final (section 6)."""
        return all(d.referee_covered for d in self.defenses)

    @property
    def title(self) -> str:
        kind = {"public": "public split (provisional ranking)", "private": "private split (official ranking)"}
        return kind.get(self.split, self.split or "split not named")


def leaderboard(
    defenses: Iterable[DefenseRecord],
    runs: Iterable[RunRecord],
    evaluation: EvaluationSet,
    radii: Sequence[float] = DEFAULT_RADII,
    *,
    resamples: int = uncertainty.RESAMPLES,
    seed: int = uncertainty.SEED,
    split: str = "",
    referee_teams: Iterable[str] = (),
    attack_defenses: Sequence[str] | None = None,
    attack_set_rule: str = "",
    disqualified: Iterable[Disqualification] = (),
    notice: str = "",
) -> Leaderboard:
    """Ranks the given (accepted) defenses and the attacks run against them, with the intervals of
    section 7 from `resamples` bootstrap resamples drawn with `seed`.

    `referee_teams`: the organizer's teams (their entries are the referee's). `attack_defenses`:
    the organizer's set of defenses the attack board ranks over (None: every covered defense);
    only covered ones of it count. Runs against a defense that is not listed are ignored, and so
    are unfinished runs. Raises ValueError, naming the record, on any array whose shape does not
    match the evaluation set, on NaN or negative distances, on duplicate names or run ids, and on
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
    attacked = {r.run_id: _check_attacked(r, n) for r in runs}
    referee_teams = frozenset(referee_teams)
    team_of = {d.name: d.team for d in defenses}

    counted = [r for r in runs if r.finished and r.defense in clean_correct]
    # The fill's cap (section 6): the largest distance verified on the split, on a correctly
    # classified sample of a listed defense; with nothing verified yet, the worst case stands.
    verified = [distances[r.run_id][clean_correct[r.defense] & np.isfinite(distances[r.run_id])] for r in counted]
    found = np.concatenate(verified) if verified else np.zeros(0)
    cap = float(found.max()) if found.size else math.inf
    fill = np.minimum(worst_case, cap)

    defense_scores = []
    for record in defenses:
        own = [r for r in counted if r.defense == record.name]
        correct = clean_correct[record.name]
        d, best = _per_sample(correct, fill, own, distances, attacked)
        has_d = ~np.isnan(d)
        referee = [r for r in own if r.team in referee_teams]
        referee_has = ~correct | np.any([attacked[r.run_id] for r in referee], axis=0) if referee else ~correct
        values = d[has_d]
        defense_scores.append(
            DefenseScore(
                rank=0,
                name=record.name,
                team=record.team,
                submitted_at=float(record.submitted_at),
                mean_l2=_mean(values),
                median_l2=float(np.median(values)) if values.size else math.nan,
                clean_accuracy=record.clean_accuracy,
                robust_accuracy=tuple((eps, _mean(values > eps)) for eps in radii),
                attacks_faced=tuple(sorted({f"{r.team}/{r.attack}" for r in own})),
                distances=tuple(float(v) for v in d),
                best_runs=best,
                covered_samples=int(has_d.sum()),
                num_samples=n,
                unbroken=int(np.sum(has_d & correct & (np.asarray(best) == ""))),
                faced=_faced(own, attacked),
                referee_covered=bool(np.all(referee_has)),
            )
        )
    ranked = [s for s in defense_scores if not s.provisional and not math.isnan(s.mean_l2)]
    provisional = [s for s in defense_scores if s.provisional or math.isnan(s.mean_l2)]
    ranked.sort(key=lambda s: (-s.mean_l2, s.submitted_at, s.name))
    provisional.sort(key=lambda s: (-s.covered_samples, s.submitted_at, s.name))
    ranked = [replace(s, rank=i + 1) for i, s in enumerate(ranked)]
    defense_order = [s.name for s in ranked] + [s.name for s in provisional]

    covered = {s.name for s in ranked}
    if attack_defenses is None:
        board_set = [name for name in defense_order if name in covered]
        attack_set_rule = attack_set_rule or "every covered defense"
    else:
        wanted = set(attack_defenses)
        board_set = [name for name in defense_order if name in wanted and name in covered]
    attack_scores = []
    for team, attack in sorted({(r.team, r.attack) for r in counted}):
        own = [r for r in counted if r.attack == attack and r.team == team]
        own_defenses = tuple(name for name in board_set if team_of[name] == team)
        listed = [name for name in board_set if team_of[name] != team]
        per_defense, per_sample = [], []
        for name in listed:
            against = [r for r in own if r.defense == name]
            if not against:
                continue
            d, _ = _per_sample(clean_correct[name], fill, against, distances, attacked)
            if np.isnan(d).any():   # it did not attack every sample: no score on this defense
                continue
            per_defense.append((name, _mean(d)))
            per_sample.append(d)
        # The mean of the per-defense means equals the mean over samples of this per-sample mean
        # (every defense is scored on the same samples): the quantity section 7 resamples.
        own_d = np.mean(per_sample, axis=0) if per_sample else np.full(n, math.nan)
        attack_scores.append(
            AttackScore(
                rank=0,
                attack=attack,
                mean_l2=float(np.mean([m for _, m in per_defense])) if per_defense else math.nan,
                defenses_faced=len(per_defense),
                teams=(team,),
                per_defense=tuple(per_defense),
                first_started_at=min(float(r.started_at) for r in own),
                team=team,
                queries=int(sum(r.queries for r in own)),
                distances=tuple(float(v) for v in own_d),
                budget=max(int(r.budget) for r in own),
                referee=team in referee_teams,
                defenses_listed=len(listed),
                own_defenses=own_defenses,
            )
        )
    complete = [a for a in attack_scores if a.defenses_listed > 0 and a.defenses_faced == a.defenses_listed]
    partial = [a for a in attack_scores if not (a.defenses_listed > 0 and a.defenses_faced == a.defenses_listed)]
    # Like with like: entries rank within their budget per sample, the largest budget first.
    complete.sort(key=lambda a: (-a.budget, _finite_or(a.mean_l2, math.inf), a.first_started_at, a.attack, a.team))
    groups: dict[int, list[AttackScore]] = {}
    for a in complete:
        groups.setdefault(a.budget, []).append(a)
    complete = [replace(a, rank=i + 1) for group in groups.values() for i, a in enumerate(group)]
    # Unranked: those closest to complete first; their means cover different defenses, so
    # the mean only orders attacks that faced the same number of defenses.
    partial.sort(key=lambda a: (-a.defenses_faced, _finite_or(a.mean_l2, math.inf), a.first_started_at, a.attack,
                                a.team))

    draws = uncertainty.Resamples(n, resamples, seed)
    fill_max = float(np.max(fill, initial=0.0))   # the most one unbroken sample can weigh
    return Leaderboard(
        defenses=_with_uncertainty(ranked, [ranked], draws, fill_max) + _provisional(provisional, resamples, seed),
        attacks=_with_uncertainty(complete, _groups(complete), draws, fill_max)
        + _with_uncertainty(partial, [], draws, fill_max),
        num_samples=n,
        radii=radii,
        resamples=resamples,
        split=split,
        fill_cap=cap if math.isfinite(cap) else math.nan,
        attack_defenses=tuple(board_set),
        attack_set_rule=attack_set_rule,
        disqualified=tuple(disqualified),
        notice=notice,
    )


def _groups(rows: Sequence[AttackScore]) -> list[list[AttackScore]]:
    out: list[list[AttackScore]] = []
    for row in rows:
        if out and out[-1][0].budget == row.budget:
            out[-1].append(row)
        else:
            out.append([row])
    return out


def _faced(runs: Sequence[RunRecord], attacked: dict[str, np.ndarray]) -> tuple[AttackFaced, ...]:
    entries: dict[str, tuple[int, np.ndarray]] = {}
    for r in runs:
        key = f"{r.team}/{r.attack}"
        budget, samples = entries.get(key, (0, np.zeros_like(attacked[r.run_id])))
        entries[key] = (max(budget, int(r.budget)), samples | attacked[r.run_id])
    return tuple(AttackFaced(k, b, int(s.sum())) for k, (b, s) in sorted(entries.items()))


def _with_uncertainty(rows: Sequence, families: Sequence[Sequence], draws: uncertainty.Resamples,
                      cap: float) -> tuple:
    """Rows (DefenseScore or AttackScore, in board order, every one with a d on every sample) with
    their section 7 fields: every row the interval of its mean (its upper end allowing for one more
    unbroken sample at the fill's `cap`); within each family (consecutive rows a rank orders) each
    row the paired comparison with the next, the verdicts Holm-corrected over all families."""
    if not rows:
        return ()
    values = np.array([r.distances for r in rows], dtype=np.float64).reshape(len(rows), draws.n)
    index = {id(r): i for i, r in enumerate(rows)}
    pairs = [(index[id(a)], index[id(b)]) for family in families for a, b in zip(family, family[1:])]
    diffs_in = np.array([values[i] - values[j] for i, j in pairs]).reshape(len(pairs), draws.n)
    # One pass over the resamples for the means and the differences together.
    allowance = np.concatenate([np.maximum(cap - values.mean(axis=1), 0.0) / max(draws.n, 1),
                                np.zeros(len(pairs))])
    both = uncertainty.mean_intervals(np.concatenate([values, diffs_in]), draws, upper_allowance=allowance)
    means, diffs = both[: len(rows)], both[len(rows):]
    # The verdict: a paired sign-flip test, Holm-corrected over the board's pairs, and the pair's own
    # interval excluding 0 (so "separated" never stands beside an interval that contains 0).
    p_values = uncertainty.sign_flip_p_values(diffs_in, draws.count, draws.seed)
    adjusted = uncertainty.holm_adjusted(p_values)
    verdicts = [rejected and d.excludes_zero for rejected, d in zip(uncertainty.holm(p_values), diffs)]
    nxt = {i: (diffs[k], adjusted[k], verdicts[k]) for k, (i, _) in enumerate(pairs)}
    out = []
    for i, (row, mean) in enumerate(zip(rows, means)):
        u = Uncertainty(mean.low, mean.high)
        if i in nxt:
            diff, p, separated = nxt[i]
            u = replace(u, diff_next=diff.estimate, diff_next_ci_low=diff.low, diff_next_ci_high=diff.high,
                        diff_next_p=p, separated=bool(separated))
        out.append(replace(row, uncertainty=u))
    return tuple(out)


def _provisional(rows: Sequence[DefenseScore], resamples: int, seed: int) -> tuple:
    """Provisional defenses: the interval of the mean over the samples that have a d; no comparison."""
    out = []
    for row in rows:
        values = np.asarray(row.distances, dtype=np.float64)
        values = values[~np.isnan(values)]
        mean = uncertainty.mean_intervals(values[None], uncertainty.Resamples(values.size, resamples, seed))[0]
        out.append(replace(row, uncertainty=Uncertainty(mean.low, mean.high)))
    return tuple(out)


def _per_sample(
    clean_correct: np.ndarray,
    fill: np.ndarray,
    runs: Sequence[RunRecord],
    distances: dict[str, np.ndarray],
    attacked: dict[str, np.ndarray],
) -> tuple[np.ndarray, tuple[str, ...]]:
    """d per sample over the given runs (NaN where no run attacked a correctly classified
    sample), and the run that found it ("" for 0, a fill or none)."""
    n = fill.shape[0]
    if runs:
        stacked = np.stack([distances[r.run_id] for r in runs])  # [runs, N]
        best_index = np.argmin(stacked, axis=0)                    # first run wins an exact tie
        best = stacked[best_index, np.arange(n)]
        hit = np.any([attacked[r.run_id] for r in runs], axis=0)
    else:
        best_index = np.zeros(n, dtype=np.int64)
        best = np.full(n, np.inf)
        hit = np.zeros(n, dtype=bool)
    found = np.isfinite(best) & clean_correct
    d = sample_scores(best, clean_correct, fill)
    d = np.where(clean_correct & ~hit & ~found, math.nan, d)
    best_runs = tuple(runs[i].run_id if ok else "" for i, ok in zip(best_index, found))
    return d, best_runs


def _check_attacked(run: RunRecord, n: int) -> np.ndarray:
    if run.attacked is None:
        return np.ones(n, dtype=bool)
    attacked = np.asarray(run.attacked, dtype=np.bool_)
    if attacked.shape != (n,):
        raise ValueError(f"run {run.run_id!r}: attacked has shape {attacked.shape}, the evaluation set has {n} samples")
    # a verified adversarial means the run submitted for the sample
    return attacked | np.isfinite(np.asarray(run.distances, dtype=np.float64))


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
