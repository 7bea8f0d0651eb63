"""The leaderboard and report the arena serves: store -> records -> scoreboard -> HTML.

The proto conversion lives in `arena.leaderboard_wire` (the one module knowing both shapes).
"""

from __future__ import annotations

from arena.server.records import build_records, gallery_items
from arena.server.store import Store
from scoreboard.scoring import Leaderboard, leaderboard


def compute(store: Store) -> Leaderboard:
    defenses, runs, evaluation = build_records(store)
    return leaderboard(defenses, runs, evaluation)


def report_html(store: Store, title: str = "Robustness arena leaderboard") -> str:
    """The self-contained HTML report (tables, figures, gallery of kept adversarials)."""
    from scoreboard.report import render_html

    board = compute(store)
    return render_html(board, gallery=gallery_items(store, board), title=title)
