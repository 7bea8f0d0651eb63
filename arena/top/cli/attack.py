"""`arena attack`: run a decision-based attack against a served defense, or offline on an ONNX file.

    arena attack --server HOST:PORT --token T --defense NAME --attack hsja [--budget 1000]
                 [--samples N] [--seed 0] [--out results.json] [--state PATH]
    arena attack --attack transfer-pgd --surrogate runs/mine/checkpoint.pt --server ... --defense ...
    arena attack --local model.onnx --data {demo | tiny-imagenet-200/ | samples.npz} --attack hsja
    arena attack --attack livia --surrogate runs/a/checkpoint.pt --surrogate runs/robust/checkpoint.pt ...
    arena attack --attack my_package.attacks:MyAttack --param steps=50 --param mode=fast ...

Remote: starts a run, attacks with a progress bar, submits each sample's adversarial as it
improves (the arena verifies every one), finishes the run and prints its summary. Interrupted
(Ctrl-C, a crash, a lost connection), the same command resumes the same run without paying
twice: see `attackers.session` (a state file next to --out, or --state, holds the run id and
the request counter; the attack is replayed under the same request ids, which the arena
answers free). `--attack` takes a built-in attack's name, a name an installed package registers
in the entry-point group `robustness_arena.attacks`, or `package.module:ClassName` (see
docs/write-an-attack.md); `--param NAME=VALUE` sets its constructor's parameters (VALUE read as
JSON, else as a string). `--out` writes per-sample results (distance, success, queries used; remote: the
arena's verified distance too) in both modes.
"""

from __future__ import annotations

import sys


def register(sub) -> None:
    from attackers import ATTACKS  # no torch, no grpc: cheap
    from attackers.registry import ENTRY_POINT_GROUP

    parser = sub.add_parser(
        "attack",
        help="attack a served defense (or a local ONNX file) with a decision-based attack",
        description=__doc__.split("\n\n")[0],
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", metavar="HOST:PORT", help="the arena to attack through (label-only Predict)")
    where.add_argument("--local", metavar="MODEL.onnx", help="attack this ONNX file offline instead")
    parser.add_argument("--token", help="bearer token of your team (default: $ARENA_TOKEN)")
    parser.add_argument("--defense", help="name of the defense to attack (with --server)")
    parser.add_argument("--attack", required=True, metavar="NAME | package.module:Class",
                        help=f"the attack: {', '.join(ATTACKS)}, one registered in the entry-point group "
                             f"{ENTRY_POINT_GROUP}, or package.module:ClassName")
    parser.add_argument("--param", action="append", metavar="NAME=VALUE",
                        help="a constructor parameter of the attack (repeatable; VALUE as JSON, else a string)")
    parser.add_argument("--surrogate", metavar="CKPT", action="append",
                        help="surrogate checkpoint from `arena train` (transfer-pgd: one; prior-cgba, livia: "
                             "repeat for several)")
    parser.add_argument("--budget", type=int, default=None,
                        help="queries per sample (default: the run's budget; locally 1000); can only lower the arena's")
    parser.add_argument("--samples", type=int, default=None, help="attack only the first N samples")
    parser.add_argument("--seed", type=int, default=0, help="the attack's random seed (default 0)")
    parser.add_argument("--data", default="demo",
                        help="with --local: 'demo', a tiny-imagenet-200 folder, or an .npz with x and y (default demo)")
    parser.add_argument("--out", metavar="RESULTS.json", help="write per-sample results here")
    parser.add_argument("--state", metavar="PATH", help="resume state file (default: RESULTS.json.state, or ./arena-attack.state.json)")
    parser.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                        help="give up on an unreachable server after S seconds (default 10)")
    parser.add_argument("--threads", type=int, default=0, help="with --local: ONNX Runtime threads (0: all cores)")
    parser.add_argument("--serving-mode", choices=("batched", "per_image"), default="batched",
                        help="with --local: run the model as the arena serves it (`arena defenses` shows each "
                             "accepted defense's mode; docs/rules.md section 3) (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from arena.top.cli import CommandError

    if args.budget is not None and args.budget < 1:
        raise CommandError(f"--budget must be >= 1, got {args.budget}")
    if args.samples is not None and args.samples < 1:
        raise CommandError(f"--samples must be >= 1, got {args.samples}")
    if args.seed < 0:
        raise CommandError(f"--seed must be >= 0, got {args.seed}")
    from attackers import SurrogateError
    from attackers.registry import make_attack, parse_params

    try:
        attack = make_attack(args.attack, seed=args.seed, surrogate=args.surrogate, **parse_params(args.param))
    except ValueError as error:
        raise CommandError(str(error)) from None
    try:
        if args.local:
            return _local(args, attack)
        return _remote(args, attack)
    except SurrogateError as error:
        raise CommandError(str(error)) from None


def _local(args, attack) -> int:
    from arena.top.cli import CommandError
    from attackers import LocalOracle, OracleError
    from attackers.session import attack_local
    from arena.ground.contract import DEFAULT_BUDGET
    from defenses.data import DataError, load_samples

    if args.defense or args.token:
        raise CommandError("--defense and --token go with --server, not --local")
    try:
        x, y, _ = load_samples(args.data, args.samples)
    except DataError as error:
        raise CommandError(str(error)) from None
    budget = DEFAULT_BUDGET if args.budget is None else args.budget
    try:
        oracle = LocalOracle(args.local, budget=budget, num_samples=x.shape[0], threads=args.threads,
                             serving_mode=args.serving_mode)
    except OracleError as error:
        raise CommandError(str(error)) from None
    if y.size and int(y.max()) >= oracle.num_classes:
        raise CommandError(f"the data has label {int(y.max())} but the model has only {oracle.num_classes} classes")
    if hasattr(attack, "check_surrogate"):
        attack.check_surrogate(oracle.num_classes, oracle.image_shape)
    outcome = attack_local(oracle, attack, x, y, budget, progress=not args.no_progress)
    header = {"mode": "local", "model": args.local, "data": args.data, "attack": attack.name,
              "config": repr(attack), "config_digest": attack.config_digest(), "budget": budget, "seed": args.seed}
    _report(outcome, header, args.out)
    return 0


def _remote(args, attack) -> int:
    from pathlib import Path

    from arena.top.cli import CommandError
    from arena.ground.client import ArenaCallError, ArenaClient
    from attackers.session import SessionError, attack_remote, check_defense, default_state_path

    if not args.defense:
        raise CommandError("--defense NAME is required with --server")
    from arena.ground.client import token_from
    from arena.ground.contract import IMAGE_SHAPE

    token = token_from(args.token)
    state_path = Path(args.state) if args.state else default_state_path(args.out)
    try:
        client = ArenaClient(args.server, token, timeout=120.0, connect_timeout=args.connect_timeout)
    except ArenaCallError as error:
        raise CommandError(str(error)) from None
    try:
        if hasattr(attack, "check_surrogate"):  # before a run exists, so a wrong surrogate costs nothing
            record = check_defense(client, args.defense)
            attack.check_surrogate(int(record.num_classes), IMAGE_SHAPE)
        outcome = attack_remote(client, defense=args.defense, attack=attack, budget=args.budget,
                                samples=args.samples, state_path=state_path, progress=not args.no_progress,
                                log=lambda m: print(m, file=sys.stderr))
    except KeyboardInterrupt:
        print(f"arena attack: interrupted; the adversarials found so far are submitted. Run the same command "
              f"again to resume (state: {state_path})", file=sys.stderr)
        return 130
    except (SessionError, ArenaCallError) as error:
        kept = " (adversarials verified so far are kept on the arena; run the same command to resume)"
        raise CommandError(f"{error}{kept if state_path.exists() else ''}") from None
    finally:
        client.close()
    header = {"mode": "remote", "server": args.server, "defense": args.defense, "attack": attack.name,
              "config": repr(attack), "config_digest": attack.config_digest(), "budget": int(outcome.run.budget_per_sample) if args.budget is None else args.budget,
              "seed": args.seed, "run_id": outcome.run.run_id}
    _report(outcome, header, args.out)
    state_path.unlink(missing_ok=True)  # the run is finished: nothing left to resume
    return 0


def _report(outcome, header: dict, out: str | None) -> None:
    s = outcome.summary()
    verified = "verified by the arena" if outcome.verified is not None else "local"
    mean = "-" if s["mean_l2"] is None else f"{s['mean_l2']:.4f}"
    median = "-" if s["median_l2"] is None else f"{s['median_l2']:.4f}"
    lines = [
        f"attack {header['attack']} ({header['mode']}): {header['config']}",
        f"  samples {s['samples']}, success {s['success_rate']:.1%} ({verified})",
        f"  mean l2 {mean}, median l2 {median} (over successes)",
        f"  queries {s['queries']} in all, at most {s['max_queries_per_sample']} per sample (budget {header['budget']})",
    ]
    if outcome.verified is not None:
        lines.append(f"  run {s['run_id']}: {s['submitted']} adversarials submitted, {s['rejected_by_arena']} rejected, "
                     f"{s['replayed_requests']} requests replayed free")
    if out:
        outcome.write_json(out, header)
        lines.append(f"  per-sample results: {out}")
    print("\n".join(lines))
