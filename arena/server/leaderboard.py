"""The leaderboard and report the arena serves: store -> records -> scoreboard -> HTML.

The proto conversion lives in `arena.leaderboard_wire` (the one module knowing both shapes).
"""

from __future__ import annotations

from arena.server.records import build_records, disqualified, gallery_items
from arena.server.store import PRIVATE, PUBLIC, Store
from arena.server.store.rows import DEMO_NOTICE
from scoreboard.scoring import Leaderboard, leaderboard

TITLES = {PUBLIC: "public split (provisional)", PRIVATE: "private split (official)"}


def compute(store: Store, split: str = PUBLIC, *, attack_board_top_k: int = 0, notice: str = "") -> Leaderboard:
    """One split's board (docs/rules.md section 6). The attack board ranks over every covered
    defense, or, with `attack_board_top_k` k > 0 (`arena serve --attack-board-top-k`), over the top k
    of the public board, as the 2018 challenge scored attacks against its top models."""
    defenses, runs, evaluation = build_records(store, split)
    meta = store.evaluation()
    if not notice and meta is not None and meta.demo:   # rules v3: every board of a demo says so
        notice = DEMO_NOTICE
    attack_defenses, rule = None, "every covered defense"
    if attack_board_top_k > 0:
        public = leaderboard(*build_records(store, PUBLIC)) if split != PUBLIC else None
        ranked = public or leaderboard(defenses, runs, evaluation)
        attack_defenses = [d.name for d in ranked.defenses if d.rank > 0][:attack_board_top_k]
        rule = f"the top {attack_board_top_k} of the public board"
    return leaderboard(defenses, runs, evaluation, split=split, referee_teams=store.organizer_teams(),
                       attack_defenses=attack_defenses, attack_set_rule=rule,
                       disqualified=disqualified(store, split), notice=notice)


def report_html(store: Store, split: str = PUBLIC, title: str = "Robustness arena leaderboard", *,
                attack_board_top_k: int = 0) -> str:
    """The self-contained HTML report of one split (tables, figures, gallery of kept adversarials)."""
    from scoreboard.report import render_html

    board = compute(store, split, attack_board_top_k=attack_board_top_k)
    return render_html(board, gallery=gallery_items(store, board, split), title=f"{title}: {TITLES[split]}")
