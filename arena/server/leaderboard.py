"""The leaderboard and report the arena serves: store -> records -> scoreboard -> HTML.

The proto conversion lives in `arena.leaderboard_wire` (the one module knowing both shapes).
"""

from __future__ import annotations

from arena.server.records import build_records, gallery_items
from arena.server.store import PRIVATE, PUBLIC, Store
from scoreboard.scoring import Leaderboard, leaderboard

TITLES = {PUBLIC: "public split (provisional)", PRIVATE: "private split (official)"}


def compute(store: Store, split: str = PUBLIC) -> Leaderboard:
    defenses, runs, evaluation = build_records(store, split)
    return leaderboard(defenses, runs, evaluation)


def report_html(store: Store, split: str = PUBLIC, title: str = "Robustness arena leaderboard") -> str:
    """The self-contained HTML report of one split (tables, figures, gallery of kept adversarials)."""
    from scoreboard.report import render_html

    board = compute(store, split)
    return render_html(board, gallery=gallery_items(store, board, split), title=f"{title}: {TITLES[split]}")
