"""The leaderboard as text (for people), JSON and CSV (for machines).

JSON and CSV carry numbers as numbers (RobustBench stores them as strings; we do not), at full
precision so they read back equal. Values that are not finite are written explicitly:
- JSON has no NaN or Infinity: NaN (a mean over an empty evaluation set) is `null`; an infinity
  raises ValueError, since every score is finite by construction (d is at most the worst case).
- CSV writes NaN as an empty cell and an infinity as `inf` / `-inf`, which float() reads back.

Section 7 of the rules: every mean is shown with its 95% bootstrap interval, and neighbours on a
board with the paired interval of their difference, the Holm-adjusted p-value and the verdict
(`separated_from_next`: true / false, or null / an empty cell where a row has no next).

Section 6 (v3): every format names the split (public: provisional ranking; private: official),
says whether the referee's attacks have covered every defense (until then the ranking is not
final), lists provisional defenses with their coverage, the number of unbroken samples beside
every mean, each attack entry's budget per sample, and the disqualified defenses and runs with
the organizer's reason (text: a section; JSON: `disqualified`; CSV: rows with status
"disqualified" and the reason).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from scoreboard.scoring import AttackScore, DefenseScore, Leaderboard, Uncertainty
from scoreboard.uncertainty import LEVEL, paired_difference

NOT_SEPARATED = "not separated at this sample size"
SEPARATED = "separated"

# ---------------------------------------------------------------- text


@dataclass(frozen=True)
class Table:
    """A table as display strings; `text_columns` are left-aligned, the others are numbers."""

    header: list[str]
    rows: list[list[str]]
    text_columns: frozenset[int]


def defense_table(board: Leaderboard) -> Table:
    """The defense table: ranked defenses in rank order, then the provisional ones ("-" as rank)."""
    header = ["rank", "defense", "team", "mean l2", _CI, "unbroken", "median l2", _clean(board)]
    header += [f"robust acc @{_eps(eps)}" for eps in board.radii]
    header += ["coverage", "attacks faced"]
    rows = []
    for s in board.defenses:
        row = [str(s.rank) if s.rank else "-", s.name, s.team, _l2(s.mean_l2), _ci(s.uncertainty), str(s.unbroken),
               _l2(s.median_l2), _pct(s.clean_accuracy)]
        row += [_pct(s.robust_accuracy_at(eps)) for eps in board.radii]
        row += [_coverage(s), faced_text(s)]
        rows.append(row)
    return Table(header, rows, frozenset({1, 2, len(header) - 1}))


def faced_text(s: DefenseScore) -> str:
    """The attacks a defense faced, each with its budget per sample (and its samples when partial)."""
    if s.faced:
        return ", ".join(f"{f.attack}@{f.budget}" + ("" if f.samples >= s.num_samples else f" ({f.samples})")
                         for f in s.faced)
    return ", ".join(s.attacks_faced) or "-"


def attack_table(board: Leaderboard) -> Table:
    """The attack table; entries rank within their budget per sample; an unranked one shows "-"."""
    header = ["rank", "attack", "budget", "mean l2", _CI, "defenses faced", "team", "queries", "own defenses"]
    rows = [
        [str(a.rank) if a.ranked else "-", a.key, str(a.budget) if a.budget else "-", _l2(a.mean_l2),
         _ci(a.uncertainty), f"{a.defenses_faced}/{a.defenses_listed or len(board.attack_defenses)}",
         _team(a), str(a.queries), ", ".join(a.own_defenses) or "-"]
        for a in board.attacks
    ]
    return Table(header, rows, frozenset({1, 6, 8}))


def comparison_table(board: Leaderboard, which: str = "defenses") -> Table:
    """Each pair of neighbours on a board ("defenses", or the ranked "attacks" of one budget): the
    mean of the per-sample difference (upper minus lower row), its paired 95% interval, the
    Holm-adjusted p-value over the board's pairs, and the verdict."""
    if which == "defenses":
        rows_in = [(f"{s.rank}. {s.name}", s.uncertainty) for s in board.defenses if s.rank]
    elif which == "attacks":
        rows_in = [(f"{a.rank}. {a.key}" + (f"@{a.budget}" if a.budget else ""), a.uncertainty)
                   for a in board.attacks if a.ranked]
    else:
        raise ValueError(f"unknown board {which!r}; choose defenses or attacks")
    rows = []
    for (name, u), (next_name, _) in zip(rows_in, rows_in[1:]):
        if not u.has_next:
            continue
        verdict = {True: SEPARATED, False: NOT_SEPARATED, None: "-"}[u.separated_from_next]
        rows.append([f"{name} - {next_name}", _signed(u.diff_next), _ci(u, diff=True), _p(u.diff_next_p), verdict])
    return Table(["neighbours", "difference", _CI, "Holm p", "verdict"], rows, frozenset({0, 4}))


def pair_comparison(board: Leaderboard, upper: str, lower: str, *, seed: int = 0) -> str:
    """One line comparing any two defenses of a locally computed board (per-sample detail needed):
    the mean of upper's d minus lower's, its paired 95% interval, and the verdict (one comparison,
    so no multiplicity correction)."""
    scores = {s.name: s for s in board.defenses}
    missing = [n for n in (upper, lower) if n not in scores]
    if missing:
        raise ValueError(f"not on the board: {', '.join(missing)}")
    if not scores[upper].distances:
        raise ValueError("the board has no per-sample distances (it came over the wire)")
    if scores[upper].provisional or scores[lower].provisional:
        raise ValueError("a provisional defense is in no comparison (docs/rules.md section 6)")
    diff = paired_difference(scores[upper].distances, scores[lower].distances, resamples=board.resamples, seed=seed)
    verdict = SEPARATED if diff.excludes_zero else NOT_SEPARATED
    return (f"{upper} - {lower}: {_signed(diff.estimate)} [{_signed(diff.low)}, {_signed(diff.high)}] "
            f"over {board.num_samples} samples, {verdict}")


def status_lines(board: Leaderboard) -> list[str]:
    """What the board is: its split, whether its ranking is final, its notice, the fill it used."""
    lines = [f"Board: {board.title}"]
    if board.notice:
        lines.append(f"Notice: {board.notice}")
    if board.defenses:
        missing = [d.name for d in board.defenses if not d.referee_covered]
        lines.append("Ranking final: yes, the referee's attacks have covered every defense" if not missing else
                     f"Ranking final: no, the referee's attacks have not covered {', '.join(missing)} yet")
    if not math.isnan(board.fill_cap):
        lines.append(f"Unbroken samples (attacked, no adversarial found) score min(worst case, {board.fill_cap:.3f}), "
                     "the largest distance verified on this split")
    return lines


def disqualified_lines(board: Leaderboard) -> list[str]:
    if not board.disqualified:
        return []
    return ["", "Disqualified (left out of the boards, with the organizer's reason):",
            *(f"  {d.kind} {d.name} ({d.team}{', ' + d.detail if d.detail else ''}): {d.reason}"
              for d in board.disqualified)]


def render_text(board: Leaderboard) -> str:
    """Both tables with a heading each, and each one's neighbour comparisons, as printed by
    `arena leaderboard`."""
    defenses, attacks = defense_table(board), attack_table(board)
    provisional = sum(1 for d in board.defenses if not d.rank)
    out = [
        *status_lines(board),
        "",
        f"Defenses: {len(board.defenses) - provisional} ranked by mean l2 over {board.num_samples} samples "
        f"(higher is more robust), {provisional} provisional ('-': not every sample attacked yet, unranked); "
        f"{_CI}: bootstrap-t over the samples, {board.resamples} resamples",
        _text_table(defenses) if defenses.rows else "  (no accepted defenses yet)",
        *_comparisons_text(board, "defenses"),
        "",
        f"Attacks: ranked within their budget per sample by mean l2 over {attack_set_text(board)} "
        "(lower is stronger; never on the entry's own team's defenses); '-' = has not faced every one, unranked",
        _text_table(attacks) if attacks.rows else "  (no finished runs yet)",
        *_comparisons_text(board, "attacks"),
        *disqualified_lines(board),
    ]
    return "\n".join(out) + "\n"


def _comparisons_text(board: Leaderboard, which: str) -> list[str]:
    table = comparison_table(board, which)
    if not table.rows:
        return []
    return ["", "Neighbours: paired bootstrap of the per-sample difference (upper minus lower row); "
                "verdicts Holm-corrected over the table's pairs",
            _text_table(table)]


def _text_table(table: Table) -> str:
    widths = [max(len(r[i]) for r in [table.header, *table.rows]) for i in range(len(table.header))]

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(w) if i in table.text_columns else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(parts).rstrip()

    return "\n".join([line(table.header), line(["-" * w for w in widths]), *(line(r) for r in table.rows)])


_CI = f"{100 * LEVEL:.0f}% CI"


def _ci(u: Uncertainty, diff: bool = False) -> str:
    low, high = (u.diff_next_ci_low, u.diff_next_ci_high) if diff else (u.mean_ci_low, u.mean_ci_high)
    if math.isnan(low):
        return "-"
    fmt = _signed if diff else _l2
    return f"[{fmt(low)}, {fmt(high)}]"


def _clean(board: Leaderboard) -> str:
    return f"clean acc ({board.split})" if board.split else "clean acc"


def _coverage(s: DefenseScore) -> str:
    return f"{s.covered_samples}/{s.num_samples}" if s.num_samples else "-"


def _team(a: AttackScore) -> str:
    team = a.team or ", ".join(a.teams)
    return f"{team} (referee)" if a.referee else team


def attack_set_text(board: Leaderboard) -> str:
    rule = board.attack_set_rule or "every covered defense"
    return f"{rule} ({len(board.attack_defenses)})"


def _p(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def _signed(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.3f}"


def _l2(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}%"


def _eps(eps: float) -> str:
    return repr(float(eps))  # 0.5, 1.0, 2.0


# ---------------------------------------------------------------- JSON


def to_dict(board: Leaderboard) -> dict:
    """The leaderboard as plain JSON-ready data (the fields GetLeaderboard carries)."""
    return {
        "split": board.split,
        "board": board.title,
        "notice": board.notice,
        "final": bool(board.defenses) and board.referee_covered_all,
        "num_samples": board.num_samples,
        "fill_cap": _json_number(board.fill_cap),
        "attack_defenses": list(board.attack_defenses),
        "attack_set_rule": board.attack_set_rule,
        "radii": [_json_number(r) for r in board.radii],
        "confidence_level": LEVEL,
        "bootstrap_resamples": board.resamples,
        "defenses": [_defense_dict(s) for s in board.defenses],
        "attacks": [_attack_dict(a) for a in board.attacks],
        "disqualified": [{"kind": d.kind, "name": d.name, "team": d.team, "detail": d.detail, "reason": d.reason}
                         for d in board.disqualified],
    }


def render_json(board: Leaderboard, *, indent: int | None = 2) -> str:
    # allow_nan=False: a NaN or infinity that slipped past _json_number fails loudly.
    return json.dumps(to_dict(board), indent=indent, allow_nan=False) + "\n"


def _defense_dict(s: DefenseScore) -> dict:
    return {
        "rank": s.rank,
        "name": s.name,
        "team": s.team,
        "mean_l2": _json_number(s.mean_l2),
        **_uncertainty_dict(s.uncertainty),
        "unbroken": s.unbroken,
        "median_l2": _json_number(s.median_l2),
        "clean_accuracy": _json_number(s.clean_accuracy),
        "robust_accuracy": [{"eps": _json_number(e), "accuracy": _json_number(a)} for e, a in s.robust_accuracy],
        "attacks_faced": list(s.attacks_faced),
        "faced": [{"attack": f.attack, "budget": f.budget, "samples": f.samples} for f in s.faced],
        "provisional": s.provisional,
        "covered_samples": s.covered_samples,
        "referee_covered": s.referee_covered,
        "submitted_at": _json_number(s.submitted_at),
    }


def _attack_dict(a: AttackScore) -> dict:
    return {
        "rank": a.rank,
        "attack": a.attack,
        "mean_l2": _json_number(a.mean_l2),
        **_uncertainty_dict(a.uncertainty),
        "defenses_faced": a.defenses_faced,
        "teams": list(a.teams),
        "team": a.team,
        "queries": a.queries,
        "budget": a.budget,
        "referee": a.referee,
        "defenses_listed": a.defenses_listed,
        "own_defenses": list(a.own_defenses),
    }


UNCERTAINTY_FIELDS = ("mean_ci_low", "mean_ci_high", "diff_next", "diff_next_ci_low", "diff_next_ci_high",
                      "diff_next_p")


def _uncertainty_values(u: Uncertainty) -> list:
    return [getattr(u, f) for f in UNCERTAINTY_FIELDS] + [u.separated_from_next]


def _uncertainty_dict(u: Uncertainty) -> dict:
    out = {f: _json_number(getattr(u, f)) for f in UNCERTAINTY_FIELDS}
    out["separated_from_next"] = u.separated_from_next
    return out


def _json_number(value: float) -> float | None:
    value = float(value)
    if math.isnan(value):
        return None
    if math.isinf(value):
        raise ValueError(f"cannot write {value} as a JSON number")
    return value


# ---------------------------------------------------------------- CSV

CSV_TABLES = ("defenses", "attacks")


def render_csv(board: Leaderboard, table: str = "defenses") -> str:
    """One table ("defenses" or "attacks") as CSV with a header row; lists joined by ';'. Every row
    names the board's split (and its notice, if any); the table's disqualified defenses (or runs) follow as rows with status
    "disqualified" and the organizer's reason."""
    split = board.split
    if table == "defenses":
        header = ["split", "notice", "status", "rank", "name", "team", "mean_l2", *UNCERTAINTY_FIELDS, "separated_from_next",
                  "unbroken", "covered_samples", "num_samples", "median_l2", f"clean_accuracy_{split or 'split'}"]
        header += [f"robust_accuracy_eps_{_eps(eps)}" for eps in board.radii]
        header += ["attacks_faced", "faced", "submitted_at", "reason"]
        rows = [
            [split, board.notice, "ranked" if s.rank else "provisional", s.rank, s.name, s.team, s.mean_l2,
             *_uncertainty_values(s.uncertainty), s.unbroken, s.covered_samples, s.num_samples, s.median_l2,
             s.clean_accuracy]
            + [s.robust_accuracy_at(eps) for eps in board.radii]
            + [";".join(s.attacks_faced), ";".join(f"{f.attack}@{f.budget}:{f.samples}" for f in s.faced),
               s.submitted_at, ""]
            for s in board.defenses
        ]
        gone = [d for d in board.disqualified if d.kind == "defense"]
        rows += [[split, board.notice, "disqualified", 0, d.name, d.team] + [None] * (len(header) - 7) + [d.reason]
                 for d in gone]
    elif table == "attacks":
        header = ["split", "notice", "status", "rank", "attack", "budget", "referee", "mean_l2", *UNCERTAINTY_FIELDS,
                  "separated_from_next", "defenses_faced", "defenses_listed", "own_defenses", "teams", "team",
                  "queries", "reason"]
        rows = [
            [split, board.notice, "ranked" if a.ranked else "unranked", a.rank, a.attack, a.budget, a.referee, a.mean_l2,
             *_uncertainty_values(a.uncertainty), a.defenses_faced, a.defenses_listed, ";".join(a.own_defenses),
             ";".join(a.teams), a.team, a.queries, ""]
            for a in board.attacks
        ]
        gone = [d for d in board.disqualified if d.kind == "run"]
        rows += [[split, board.notice, "disqualified", 0, f"run {d.name}" + (f" ({d.detail})" if d.detail else "")]
                 + [None] * (len(header) - 8) + [d.team, None, d.reason] for d in gone]
    else:
        raise ValueError(f"unknown table {table!r}; choose one of {', '.join(CSV_TABLES)}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_csv_cell(v) for v in row] for row in rows])
    return buffer.getvalue()


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(value)  # shortest text that reads back to the same float; 'inf' for infinity
    return value
