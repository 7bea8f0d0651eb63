"""`arena referee`: run the organizer's reference attacks against every accepted defense on both
splits that they have not evaluated yet (docs/rules.md section 4). Resumable: run it again after
an interruption, or after new defenses were accepted.

    arena referee --server HOST:PORT --token ORGANIZER_TOKEN --surrogate runs/surrogate/checkpoint.pt
                  --surrogate runs/robust-surrogate/checkpoint.pt
                  [--attacks livia,cgba] [--budget N] [--state-dir referee-state]
"""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    from arena.top.referee import DEFAULT_ATTACKS

    p = sub.add_parser("referee", help="run the organizer's reference attacks on every defense, both splits",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--server", required=True, metavar="HOST:PORT[,HOST:PORT...]", help="the arena")
    p.add_argument("--token", default=None, help="an organizer token (default: $ARENA_TOKEN)")
    p.add_argument("--attacks", default=",".join(DEFAULT_ATTACKS),
                   help=f"comma-separated reference attacks (default: {','.join(DEFAULT_ATTACKS)})")
    p.add_argument("--surrogate", type=Path, action="append", default=None, metavar="CKPT",
                   help="the organizer's surrogate checkpoints (repeatable; from `arena train`; one adversarially "
                        "trained, none a defender's): livia and prior-cgba take all, transfer-pgd the first")
    p.add_argument("--budget", type=int, default=None,
                   help="queries per sample for each attack (default and most: the arena's full budget; each "
                        "reference attack runs as its own organizer sub-team, ORG.ATTACK, with its own budget)")
    p.add_argument("--splits", default="public,private", help="splits to evaluate (default: public,private)")
    p.add_argument("--seed", type=int, default=None,
                   help="the attacks' seed, for reproducible research (default: a secret seed drawn on the first "
                        "run and kept in the state dir, so that defenders cannot replay the reference attacks)")
    p.add_argument("--state-dir", type=Path, default=Path("referee-state"),
                   help="resume files, one per evaluation (default: referee-state)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from arena.top.cli import CommandError
    from arena.ground.client import ArenaCallError, ArenaClient, token_from
    from arena.top.referee import SPLITS, Referee
    from attackers import ATTACKS

    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown or not attacks:
        raise CommandError(f"--attacks: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(ATTACKS)}")
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    if not splits or any(s not in SPLITS for s in splits):
        raise CommandError(f"--splits: choose from {', '.join(SPLITS)}")
    for path in args.surrogate or []:
        if not path.exists():
            raise CommandError(f"--surrogate {path}: no such checkpoint or run folder")
    referee = Referee(attacks=attacks, surrogate=args.surrogate, budget=args.budget, seed=args.seed,
                      state_dir=args.state_dir, splits=splits, log=lambda m: print(m, file=sys.stderr))
    try:
        with ArenaClient(args.server, token_from(args.token), timeout=120.0) as client:
            referee.run(client, progress=not args.no_progress)
    except PermissionError as error:
        raise CommandError(str(error)) from None
    except ArenaCallError as error:
        raise CommandError(f"{error} (run the same command again to resume)") from None
    print(f"referee: {len(referee.done)} evaluation(s) done")
    return 0
