"""`arena admin`: the organizer's calls (docs/rules.md section 8), over gRPC with an organizer token.

    arena admin status                                   # phase, budget, split sizes (any token)
    arena admin phase final --reason "submissions closed on 2026-12-01"
    arena admin budget 1000 --reason "..."
    arena admin token create --team red [--organizer] --reason "..."   # prints the token once
    arena admin token revoke --team red --reason "..."
    arena admin disqualify --defense NAME --reason "lookup table of the public split"
    arena admin disqualify --run RUN_ID --reason "..."
    arena admin actions                                  # every organizer action, with time and reason
    arena admin runs                                     # every run (the organizer sees all)

Every command takes --server HOST:PORT (several, comma-separated, for replicas) and --token (or
$ARENA_TOKEN). Every change needs --reason: it is recorded with the time and the organizer. The
first organizer token comes from the store: `arena token create --team NAME --organizer --store DIR`.
"""

from __future__ import annotations

import datetime
import sys


def register(sub) -> None:
    parser = sub.add_parser("admin", help="organizer actions: phase, budget, tokens, disqualification",
                            description=__doc__.split("\n\n")[0])
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def add(name: str, help_text: str, reason: bool = True):
        p = actions.add_parser(name, help=help_text)
        p.add_argument("--server", required=True, metavar="HOST:PORT[,HOST:PORT...]", help="the arena")
        p.add_argument("--token", default=None, help="an organizer token (default: $ARENA_TOKEN)")
        if reason:
            p.add_argument("--reason", required=True, help="why (recorded with the action)")
        return p

    add("status", "the competition's phase, budget and split sizes", reason=False).set_defaults(func=_status)
    phase = add("phase", "set the phase: open (submissions; public split) or final (private split)")
    phase.add_argument("phase", choices=("open", "final"))
    phase.set_defaults(func=_phase)
    budget = add("budget", "set the budget: queries per sample, team, defense and split")
    budget.add_argument("budget", type=int)
    budget.set_defaults(func=_budget)
    token = actions.add_parser("token", help="create or revoke team tokens")
    token_actions = token.add_subparsers(dest="token_action", required=True, metavar="ACTION")
    for name, func, help_text in (("create", _token_create, "a new token for a team (printed once)"),
                                  ("revoke", _token_revoke, "revoke every token of a team")):
        p = token_actions.add_parser(name, help=help_text)
        p.add_argument("--server", required=True, metavar="HOST:PORT[,HOST:PORT...]", help="the arena")
        p.add_argument("--token", default=None, help="an organizer token (default: $ARENA_TOKEN)")
        p.add_argument("--team", required=True, help="team name: 1-64 characters of [A-Za-z0-9_.-]")
        p.add_argument("--reason", required=True, help="why (recorded with the action)")
        if name == "create":
            p.add_argument("--organizer", action="store_true", help="an organizer token instead of a team token")
        p.set_defaults(func=func)
    disqualify = add("disqualify", "hide a defense or a run from the boards, keeping it and the reason")
    target = disqualify.add_mutually_exclusive_group(required=True)
    target.add_argument("--defense", help="the defense's name")
    target.add_argument("--run", help="the run's id")
    disqualify.set_defaults(func=_disqualify)
    add("actions", "every organizer action, with its time and reason", reason=False).set_defaults(func=_actions)
    add("runs", "every run on the arena", reason=False).set_defaults(func=_runs)


def _client(args):
    from arena.ground.client import ArenaClient, token_from

    return ArenaClient(args.server, token_from(args.token), timeout=60.0)


def _print_competition(competition) -> None:
    from arena.server.store.rows import DEMO_NOTICE
    from protos import arena_v1_pb2 as pb

    print(f"phase {pb.Phase.Name(competition.phase).removeprefix('PHASE_').lower()}, "
          f"budget {competition.budget_per_sample} queries per sample, team and defense; "
          f"public split {competition.public_samples} samples, private split {competition.private_samples}; "
          f"you are {competition.team!r} ({pb.Role.Name(competition.role).removeprefix('ROLE_').lower()})")
    print(DEMO_NOTICE if competition.demo else f"private split: {competition.private_split_source or 'unknown'} images")


def _status(args) -> int:
    with _client(args) as client:
        _print_competition(client.get_competition())
    return 0


def _phase(args) -> int:
    with _client(args) as client:
        _print_competition(client.set_phase(args.phase, args.reason))
    return 0


def _budget(args) -> int:
    if args.budget < 1:
        raise ValueError("the budget must be >= 1")
    with _client(args) as client:
        _print_competition(client.set_budget(args.budget, args.reason))
    return 0


def _token_create(args) -> int:
    with _client(args) as client:
        token = client.create_token(args.team, args.reason, organizer=args.organizer)
    print(token)
    print(f"arena admin: created a {'organizer' if args.organizer else 'team'} token for {args.team!r}; "
          "it is shown only this once", file=sys.stderr)
    return 0


def _token_revoke(args) -> int:
    with _client(args) as client:
        count = client.revoke_tokens(args.team, args.reason)
    print(f"revoked {count} token(s) of team {args.team!r}")
    return 0


def _disqualify(args) -> int:
    with _client(args) as client:
        client.disqualify(args.reason, defense=args.defense, run_id=args.run)
    print(f"disqualified {'defense ' + args.defense if args.defense else 'run ' + args.run}: {args.reason}")
    return 0


def _actions(args) -> int:
    with _client(args) as client:
        actions = client.list_actions()
    for a in actions:
        when = datetime.datetime.fromtimestamp(a.at, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        print(f"{when}  {a.organizer:<16} {a.action:<20} {a.target:<24} {a.reason}")
    if not actions:
        print("no organizer action yet")
    return 0


def _runs(args) -> int:
    from arena.ground.client import split_name

    with _client(args) as client:
        runs = client.list_runs()
    for r in runs:
        state = "finished" if r.finished else "open"
        flag = f"  DISQUALIFIED: {r.disqualified_reason}" if r.disqualified_reason else ""
        print(f"{r.run_id}  {r.team:<16} {r.attack:<16} vs {r.defense:<16} {split_name(r.split):<8} {state}{flag}")
    return 0
