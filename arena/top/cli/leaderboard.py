"""`arena leaderboard`: the defense and attack tables of an arena (server or store), optionally its HTML report.

    arena leaderboard --server HOST:PORT --token T            # both tables, as text
    arena leaderboard --server HOST:PORT --json               # the tables as one JSON document
    arena leaderboard --server HOST:PORT --csv [attacks]      # one table as CSV (defenses by default)
    arena leaderboard --server HOST:PORT --html report.html   # also write the self-contained report
    arena leaderboard --store DIR [--json | --csv | --html F] # offline, straight from a store folder
    arena leaderboard --database-url URL [...]               # offline, straight from a database (PostgreSQL)

The token may come from the environment variable ARENA_TOKEN instead of --token (--store needs none).
"""

from __future__ import annotations

import sys
from pathlib import Path

from arena.top.cli import CommandError

def register(sub) -> None:
    parser = sub.add_parser(
        "leaderboard",
        help="print the leaderboard (defenses and attacks) of a running arena",
        description="Print the arena's defense and attack tables (docs/rules.md section 6); "
        "optionally write the HTML report.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--server", metavar="HOST:PORT", help="the arena's gRPC address")
    source.add_argument("--store", type=Path, metavar="DIR",
                        help="read an arena store folder directly (offline; safe beside a running server)")
    source.add_argument("--database-url", metavar="URL",
                        help="read an arena database directly, e.g. postgresql://... (offline; safe beside replicas)")
    parser.add_argument("--token", default=None, help="bearer token (default: $ARENA_TOKEN)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S", help="per-call deadline in seconds")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the tables as JSON")
    output.add_argument(
        "--csv", nargs="?", const="defenses", choices=("defenses", "attacks"), default=None,
        help="print one table as CSV: defenses (default) or attacks",
    )
    parser.add_argument("--html", type=Path, default=None, metavar="FILE", help="also write the HTML report to FILE")
    parser.add_argument("--split", choices=("public", "private"), default=None,
                        help="which board: public (provisional) or private (official); default: the current "
                             "phase's (a team sees the private board from the final phase on)")
    parser.add_argument("--attack-board-top-k", type=int, default=0, metavar="K",
                        help="offline (--store / --database-url): the attack board ranks over the top K of the public "
                             "board, as `arena serve --attack-board-top-k K` does (default 0: every covered defense)")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from scoreboard import tables

    offline = args.store is not None or args.database_url is not None
    # a demo's board carries its notice itself (arena.server.leaderboard.DEMO_NOTICE), in every format
    board, html = _from_store(args) if offline else _from_server(args)
    if args.json:
        sys.stdout.write(tables.render_json(board))
    elif args.csv:
        sys.stdout.write(tables.render_csv(board, args.csv))
    else:
        sys.stdout.write(tables.render_text(board))
    if html is not None:
        args.html.write_text(html, encoding="utf-8")
        print(f"wrote {args.html} ({len(html.encode('utf-8')) / 1024:.0f} KiB)", file=sys.stderr)
    return 0


def _from_server(args):
    """(leaderboard, report HTML or None) from the GetLeaderboard / GetReport calls."""
    from arena.ground.client import ArenaClient, token_from
    from arena.server.leaderboard_wire import from_proto

    with ArenaClient(args.server, token_from(args.token), timeout=args.timeout) as client:
        board = from_proto(client.get_leaderboard(args.split))
        html = client.get_report(args.split) if args.html is not None else None
    return board, html


def _from_store(args):
    """(leaderboard, report HTML or None) computed from the store, as the server would."""
    from arena.server.leaderboard import compute
    from arena.server.records import gallery_items
    from arena.server.store import DB_NAME, StoreError, open_store

    if args.database_url is None and not (args.store / DB_NAME).is_file():  # open_store would create one
        raise CommandError(f"{args.store}: no arena store here (no {DB_NAME})")
    try:
        store = open_store(args.database_url or args.store)
    except StoreError as error:
        raise CommandError(str(error)) from None
    try:
        if args.database_url is not None and store.evaluation() is None:
            raise CommandError(f"{args.database_url.split('@')[-1]}: no arena has been served from this database")
        split = args.split or ("public" if store.phase() == "open" else "private")
        if args.attack_board_top_k < 0:
            raise CommandError(f"--attack-board-top-k must be >= 0, got {args.attack_board_top_k}")
        board = compute(store, split, attack_board_top_k=args.attack_board_top_k)
        html = None
        if args.html is not None:
            from arena.server.leaderboard import TITLES
            from scoreboard.report import render_html

            html = render_html(board, gallery=gallery_items(store, board, split),
                               title=f"Robustness arena leaderboard: {TITLES[split]}")
    finally:
        store.close()
    return board, html
