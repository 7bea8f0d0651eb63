"""The leaderboard as text (for people), JSON and CSV (for machines).

JSON and CSV carry numbers as numbers (RobustBench stores them as strings; we do not), at full
precision so they read back equal. Values that are not finite are written explicitly:
- JSON has no NaN or Infinity: NaN (a mean over an empty evaluation set) is `null`; an infinity
  raises ValueError, since every score is finite by construction (d is at most the worst case).
- CSV writes NaN as an empty cell and an infinity as `inf` / `-inf`, which float() reads back.

Section 7 of the rules: every mean is shown with its 95% bootstrap interval, and neighbours on a
board with the paired interval of their difference and whether it excludes 0 (`separated_from_next`:
true / false, or null / an empty cell on a board's last row, which has no next).
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
    """The defense table, one row per defense in rank order."""
    header = ["rank", "defense", "team", "mean l2", _CI, "median l2", "clean acc"]
    header += [f"robust acc @{_eps(eps)}" for eps in board.radii]
    header.append("attacks faced")
    rows = []
    for s in board.defenses:
        row = [str(s.rank), s.name, s.team, _l2(s.mean_l2), _ci(s.uncertainty), _l2(s.median_l2), _pct(s.clean_accuracy)]
        row += [_pct(s.robust_accuracy_at(eps)) for eps in board.radii]
        row.append(", ".join(s.attacks_faced) or "-")
        rows.append(row)
    return Table(header, rows, frozenset({1, 2, len(header) - 1}))


def attack_table(board: Leaderboard) -> Table:
    """The attack table; an unranked attack shows "-" as its rank."""
    header = ["rank", "attack", "mean l2", _CI, "defenses faced", "team", "queries"]
    total = len(board.defenses)
    rows = [
        [str(a.rank) if a.ranked else "-", a.attack, _l2(a.mean_l2), _ci(a.uncertainty), f"{a.defenses_faced}/{total}",
         a.team or ", ".join(a.teams), str(a.queries)]
        for a in board.attacks
    ]
    return Table(header, rows, frozenset({1, 5}))


def comparison_table(board: Leaderboard, which: str = "defenses") -> Table:
    """Each pair of neighbours on a board ("defenses", or the ranked "attacks"): the mean of the
    per-sample difference (upper minus lower row), its paired 95% interval, and the verdict."""
    if which == "defenses":
        rows_in = [(f"{s.rank}. {s.name}", s.uncertainty) for s in board.defenses]
    elif which == "attacks":
        rows_in = [(f"{a.rank}. {a.key}", a.uncertainty) for a in board.attacks if a.ranked]
    else:
        raise ValueError(f"unknown board {which!r}; choose defenses or attacks")
    rows = []
    for (name, u), (next_name, _) in zip(rows_in, rows_in[1:]):
        if not u.has_next:
            continue
        verdict = {True: SEPARATED, False: NOT_SEPARATED, None: "-"}[u.separated_from_next]
        rows.append([f"{name} - {next_name}", _signed(u.diff_next), _ci(u, diff=True), verdict])
    return Table(["neighbours", "difference", _CI, "verdict"], rows, frozenset({0, 3}))


def pair_comparison(board: Leaderboard, upper: str, lower: str, *, seed: int = 0) -> str:
    """One line comparing any two defenses of a locally computed board (per-sample detail needed):
    the mean of upper's d minus lower's, its paired 95% interval, and the verdict."""
    scores = {s.name: s for s in board.defenses}
    missing = [n for n in (upper, lower) if n not in scores]
    if missing:
        raise ValueError(f"not on the board: {', '.join(missing)}")
    if not scores[upper].distances:
        raise ValueError("the board has no per-sample distances (it came over the wire)")
    diff = paired_difference(scores[upper].distances, scores[lower].distances, resamples=board.resamples, seed=seed)
    verdict = SEPARATED if diff.excludes_zero else NOT_SEPARATED
    return (f"{upper} - {lower}: {_signed(diff.estimate)} [{_signed(diff.low)}, {_signed(diff.high)}] "
            f"over {board.num_samples} samples, {verdict}")


def render_text(board: Leaderboard) -> str:
    """Both tables with a heading each, and each one's neighbour comparisons, as printed by
    `arena leaderboard`."""
    defenses, attacks = defense_table(board), attack_table(board)
    out = [
        f"Defenses: {len(board.defenses)}, ranked by mean l2 over {board.num_samples} samples "
        f"(higher is more robust); {_CI}: bootstrap over the samples, {board.resamples} resamples",
        _text_table(defenses) if defenses.rows else "  (no accepted defenses yet)",
        *_comparisons_text(board, "defenses"),
        "",
        "Attacks: ranked by mean l2 over the defenses (lower is stronger); "
        "'-' = has not faced every defense, unranked",
        _text_table(attacks) if attacks.rows else "  (no finished runs yet)",
        *_comparisons_text(board, "attacks"),
    ]
    return "\n".join(out) + "\n"


def _comparisons_text(board: Leaderboard, which: str) -> list[str]:
    table = comparison_table(board, which)
    if not table.rows:
        return []
    return ["", "Neighbours: paired bootstrap of the per-sample difference (upper minus lower row)",
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
        "num_samples": board.num_samples,
        "radii": [_json_number(r) for r in board.radii],
        "confidence_level": LEVEL,
        "bootstrap_resamples": board.resamples,
        "defenses": [_defense_dict(s) for s in board.defenses],
        "attacks": [_attack_dict(a) for a in board.attacks],
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
        "median_l2": _json_number(s.median_l2),
        "clean_accuracy": _json_number(s.clean_accuracy),
        "robust_accuracy": [{"eps": _json_number(e), "accuracy": _json_number(a)} for e, a in s.robust_accuracy],
        "attacks_faced": list(s.attacks_faced),
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
    }


UNCERTAINTY_FIELDS = ("mean_ci_low", "mean_ci_high", "diff_next", "diff_next_ci_low", "diff_next_ci_high")


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
    """One table ("defenses" or "attacks") as CSV with a header row; lists joined by ';'."""
    if table == "defenses":
        header = ["rank", "name", "team", "mean_l2", *UNCERTAINTY_FIELDS, "separated_from_next", "median_l2",
                  "clean_accuracy"]
        header += [f"robust_accuracy_eps_{_eps(eps)}" for eps in board.radii]
        header += ["attacks_faced", "submitted_at"]
        rows = [
            [s.rank, s.name, s.team, s.mean_l2, *_uncertainty_values(s.uncertainty), s.median_l2, s.clean_accuracy]
            + [s.robust_accuracy_at(eps) for eps in board.radii]
            + [";".join(s.attacks_faced), s.submitted_at]
            for s in board.defenses
        ]
    elif table == "attacks":
        header = ["rank", "attack", "mean_l2", *UNCERTAINTY_FIELDS, "separated_from_next", "defenses_faced", "teams",
                  "team", "queries"]
        rows = [
            [a.rank, a.attack, a.mean_l2, *_uncertainty_values(a.uncertainty), a.defenses_faced, ";".join(a.teams),
             a.team, a.queries]
            for a in board.attacks
        ]
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
