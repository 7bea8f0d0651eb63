"""`arena token create --team NAME {--store DIR | --database-url URL} [--organizer]`: a bearer token,
printed once.

Only the token's sha256 is stored; the token itself is printed to stdout and never again.
Clients send it as `authorization: Bearer <token>` (the CLI: --token or $ARENA_TOKEN). This
command writes the store directly, so it is how the operator makes the first organizer token;
later tokens can come from the organizer over gRPC (`arena admin token create`), recorded with
a reason.
"""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("token", help="manage team tokens")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a token for a team (printed once)")
    create.add_argument("--team", required=True, help="team name: 1-64 characters of [A-Za-z0-9_.-]")
    create.add_argument("--store", default=None, metavar="DIR", help="the arena's store folder (or --database-url)")
    create.add_argument("--organizer", action="store_true",
                        help="an organizer token (phases, budget, tokens, disqualification; `arena admin`)")
    create.add_argument("--database-url", default=None, metavar="URL",
                        help="database URL (default: sqlite:///<store>/arena.db)")
    create.set_defaults(func=_create)


def _create(args) -> int:
    from arena.server.auth import create_token
    from arena.top.cli import CommandError
    from arena.server.store import StoreError, open_store

    if args.store is None and args.database_url is None:
        raise CommandError("give --store DIR or --database-url URL")
    try:
        store = open_store(args.database_url or args.store)
        try:
            token = create_token(store, args.team, "organizer" if args.organizer else "team")
        finally:
            store.close()
    except StoreError as error:
        raise CommandError(str(error)) from None
    print(token)
    kind = "an organizer" if args.organizer else "a team"
    print(f"arena token: created {kind} token for {args.team!r}; it is shown only this once", file=sys.stderr)
    return 0
