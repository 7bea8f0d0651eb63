"""`arena demo`: a whole competition, end to end, on the embedded dataset (docs/rules.md).

Stages: generate the data; train small ResNets (natural, PGD-AT, TRADES) and the surrogates
(natural, and PGD-AT under another seed than the defenders', for the referee's surrogate attacks);
export the defenses to ONNX; start an arena on a fresh store with a public split (public data)
and a private one generated from a secret seed (`--private-from-public` deals it from public
data instead, and the boards say it is a demo); the operator makes the organizer's token, the
organizer the teams'; in the open phase the defenders submit; the referee (the organizer's
reference attacks) evaluates every defense on both splits; the organizer switches to the final
phase (a late submission is refused); the attackers' team attacks the private split; the
official (private) board and the provisional (public) one are printed and the report written.

Training and exports are cached under --out (a folder per configuration), so a second run goes
straight to the arena. The store is made afresh on every run: the leaderboard shows this run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

DEFENSES = ("natural", "pgd-at", "trades")
ATTACKS = ("boundary", "hsja", "cgba", "transfer-pgd", "prior-cgba", "livia")
TEAM_ATTACKS = ("hsja",)                     # the attackers' team, on the private split
SURROGATE = "surrogate"
# The organizer's adversarially trained surrogate: PGD-AT under another seed than the defenders'
# (a defender's own checkpoint would make the attack on that defense white-box).
ROBUST_SURROGATE = ("pgd-at", {"seed": 1})


def register(sub) -> None:
    from arena.top.referee import DEFAULT_ATTACKS as REFEREE_ATTACKS  # the organizer's reference attacks, both splits

    parser = sub.add_parser("demo", help="run the whole arena end to end on the embedded dataset")
    parser.add_argument("--out", type=Path, default=Path("demo-out"),
                        help="working folder: cached checkpoints and models, the store, the report (default demo-out)")
    # 112 on the official (private) board: with the rules-v2 referee and team, the paired interval of
    # TRADES minus natural contains 0 at 80 samples (+0.190 [-0.001, +0.375]) and excludes it at 112
    # (+0.168 [+0.010, +0.313]); the provisional (public) board needs fewer. A first run stays under 10
    # minutes on 2 cores; see docs/benchmarks.md.
    parser.add_argument("--samples", type=int, default=112,
                        help="samples of the private split, the official board's (default 112)")
    parser.add_argument("--public-samples", type=int, default=24,
                        help="samples of the public split, the open phase's provisional board (default 24)")
    parser.add_argument("--budget", type=int, default=1000,
                        help="queries per sample, team, defense and split (default 1000, the rules')")
    parser.add_argument("--defenses", default=",".join(DEFENSES),
                        help=f"comma-separated training methods to submit (default {','.join(DEFENSES)}; also: mart)")
    parser.add_argument("--attacks", default=",".join(TEAM_ATTACKS),
                        help=f"the attackers' team's attacks on the private split, in order; as the rules say, "
                             f"they share the team's budget (default {','.join(TEAM_ATTACKS)})")
    parser.add_argument("--referee-attacks", default=",".join(REFEREE_ATTACKS),
                        help="the organizer's reference attacks on both splits (default "
                             f"{','.join(REFEREE_ATTACKS)}, the strongest measured, with the organizer's natural and "
                             "robust surrogates)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the attacks, for a reproducible run (default: the referee's seed is secret)")
    parser.add_argument("--private-from-public", action="store_true",
                        help="deal the private split from the public validation data (rules v2's demo; every "
                             "board then says it is a demo); default: secret evaluation data")
    parser.add_argument("--device", default=None, help="training device (default: cuda if available, else cpu)")
    parser.add_argument("--epochs-scale", type=float, default=1.0,
                        help="multiply the preset's epochs (e.g. 0.2 for a quick smoke run; default 1)")
    parser.add_argument("--train-size", type=int, default=None,
                        help="train on the first N training images only (smoke runs; default all)")
    parser.set_defaults(func=_run)


class _Stages:
    """Numbered stage headers with elapsed time, so a user sees where the demo is."""

    def __init__(self, total: int) -> None:
        self.total, self.index, self.start = total, 0, time.perf_counter()

    def __call__(self, title: str) -> None:
        self.index += 1
        print(f"\n[{self.index}/{self.total}] {title}  (t = {time.perf_counter() - self.start:.0f} s)", flush=True)


def _names(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if not names or unknown:
        raise ValueError(f"--{what}: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(allowed)}")
    return names


def config_key(config) -> str:
    """A short digest of a training configuration: its cache folder's name."""
    text = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def train_role(preset, role: str, out: Path, device: str | None, epochs_scale: float, train_size: int | None,
               seed_offset: int = 0, **overrides) -> Path:
    """Trains (or finds cached) the preset's `role` (with `overrides` of its configuration, its seed plus
    `seed_offset`); returns its run folder."""
    from defenses.train import train

    base = preset.config(role, **overrides)
    epochs = max(1, round(base.epochs * epochs_scale))
    config = preset.config(role, epochs=epochs, train_size=train_size, **{**overrides, "seed": base.seed + seed_offset})
    folder = out / "checkpoints" / f"{role}-{config_key(config)}"
    started = time.perf_counter()
    train(config, folder, device=device, resume=(folder / "checkpoint.pt").exists(), progress=sys.stderr.isatty())
    print(f"  {role}: {folder} ({time.perf_counter() - started:.0f} s)", flush=True)
    return folder


def export_role(folder: Path, out: Path) -> Path:
    """Exports a run folder's checkpoint to ONNX once (cached next to its configuration's name)."""
    from defenses.export import export_checkpoint

    model = out / "models" / f"{folder.name}.onnx"
    if not model.exists():
        parity = export_checkpoint(folder, model)
        print(f"  {model}: parity max |logit diff| {parity.max_abs_diff:.2e}, labels equal {parity.labels_equal}", flush=True)
    else:
        print(f"  {model} (cached)", flush=True)
    return model


def _run(args) -> int:
    from defenses.presets import DEMO

    if args.samples < 1 or args.public_samples < 1 or args.budget < 1:
        raise ValueError("--samples, --public-samples and --budget must be >= 1")
    if args.epochs_scale <= 0:
        raise ValueError(f"--epochs-scale must be > 0, got {args.epochs_scale}")
    defenses = _names(args.defenses, ("natural", "pgd-at", "trades", "mart"), "defenses")
    attacks = _names(args.attacks, ATTACKS, "attacks")
    referee_attacks = _names(args.referee_attacks, ATTACKS, "referee-attacks")
    out: Path = args.out
    stage = _Stages(8)

    stage("data: the embedded dataset (generated once, then cached)")
    from defenses.data import load_split

    for split in ("train", "val"):
        data = load_split("demo", split)
        print(f"  {split}: {len(data)} images, {data.num_classes} classes", flush=True)

    from attackers.registry import surrogate_parameter

    needs_surrogate = any(surrogate_parameter(a) for a in attacks + referee_attacks)
    needs_robust = any(surrogate_parameter(a) == "surrogates" for a in referee_attacks)
    stage(f"training: {', '.join(defenses)}{' and the surrogates' if needs_surrogate else ''}"
          " (cached per configuration)")
    roles = defenses + ([SURROGATE] if needs_surrogate else [])
    folders = {role: train_role(DEMO, role, out, args.device, args.epochs_scale, args.train_size) for role in roles}
    surrogate = folders.get(SURROGATE)
    # the organizer's surrogates: the natural one and, for the attacks that take several, a robust one
    organizer_surrogates = [surrogate] if surrogate is not None else []
    if needs_robust:
        role, overrides = ROBUST_SURROGATE
        organizer_surrogates.append(train_role(DEMO, role, out, args.device, args.epochs_scale, args.train_size,
                                               **overrides))

    stage("export: ONNX with preprocessing inside, parity-checked against torch")
    models = {role: export_role(folders[role], out) for role in defenses}

    stage("open phase: a fresh arena, the organizer's and the teams' tokens, the defenses submitted")
    from arena.ground.client import ArenaClient
    from arena.server import ServerConfig, start_server
    from arena.server.auth import create_token
    from arena.server.core import ArenaConfig
    from arena.server.store import open_store

    store_dir = out / "store"
    # A fresh arena: its store and the clients' resume files start empty together.
    for folder in (store_dir, out / "attack-state", out / "referee-state"):
        shutil.rmtree(folder, ignore_errors=True)
    store = open_store(store_dir)
    try:   # the operator's bootstrap: the first organizer token comes from the store itself
        organizer_token = create_token(store, "organizer", "organizer")
    finally:
        store.close()
    server = start_server(ServerConfig(store=store_dir, data="demo", public_samples=args.public_samples,
                                       private_samples=args.samples, private_from_public=args.private_from_public,
                                       port=0, arena=ArenaConfig(budget=args.budget)))
    try:
        print(f"  serving on {server.address} (store {store_dir}); public split {args.public_samples} samples, "
              f"private {args.samples} ({_private_source(args)}); {args.budget} queries per sample, team, "
              "defense and split", flush=True)
        with ArenaClient(server.address, organizer_token) as organizer:
            defender_token = organizer.create_token("defenders", "the demo's defending team")
            attacker_token = organizer.create_token("attackers", "the demo's attacking team")
        with ArenaClient(server.address, defender_token) as client:
            for role, model in models.items():
                defense = client.submit_defense(model.read_bytes(), name=role, description=f"demo preset, {role}")
                print(f"  submitted {role}: clean accuracy {defense.clean_accuracy:.1%} on the public split", flush=True)
        server.call(server.arena.private.measured())   # the private clean accuracy, measured after acceptance

        stage(f"referee: the organizer's reference attacks ({', '.join(referee_attacks)}) on both splits")
        from arena.top.referee import Referee

        referee = Referee(attacks=referee_attacks, surrogate=organizer_surrogates or None, seed=args.seed,
                          state_dir=out / "referee-state", log=lambda m: print(f"  {m.removeprefix('referee: ')}",
                                                                                flush=True))
        with ArenaClient(server.address, organizer_token, timeout=120.0) as organizer:
            referee.run(organizer, progress=sys.stderr.isatty())

        stage("final phase: submissions close, runs attack the private split")
        with ArenaClient(server.address, organizer_token) as organizer:
            organizer.set_phase("final", "the demo's open phase is over")
        with ArenaClient(server.address, defender_token) as client:
            try:
                client.submit_defense(models[defenses[0]].read_bytes(), name="late-entry")
            except Exception as error:  # FAILED_PRECONDITION
                print(f"  a late submission is refused: {error}", flush=True)

        stage(f"attacks: the attackers' team runs {', '.join(attacks)} on the private split")
        _attack_all(server.address, attacker_token, defenses, attacks, args, surrogate)

        stage("boards: the official ranking (private split) and the provisional one (public split)")
        from arena.ground.client import split_name
        from arena.server.leaderboard_wire import from_proto
        from scoreboard.tables import render_text

        with ArenaClient(server.address, attacker_token) as client:
            official = client.get_leaderboard("private")
            public = client.get_leaderboard("public")
            (out / "report.html").write_text(client.get_report("private"))
            (out / "report-public.html").write_text(client.get_report("public"))
        if args.private_from_public:
            from arena.server.store.rows import DEMO_NOTICE

            print(DEMO_NOTICE)
        print("Official board: the private split\n")
        print(render_text(from_proto(official)))
        print("Provisional board: the public split (what the teams saw during the open phase)\n")
        print(render_text(from_proto(public)))
        with ArenaClient(server.address, attacker_token) as client:  # the official board's samples (final phase)
            private_run = next(r for r in client.list_runs() if split_name(r.split) == "private")
            private_x, private_y = client.samples(private_run.run_id)
    finally:
        server.stop()
    _print_pairs(store_dir, defenses)
    _print_gap(store_dir, defenses, folders, models, private_x, private_y)
    print(f"\nreport: {(out / 'report.html').resolve()} (public board: {(out / 'report-public.html').resolve()})")
    print(f"total: {time.perf_counter() - stage.start:.0f} s")
    return 0


def _private_source(args) -> str:
    if args.private_from_public:
        from arena.server.store.rows import DEMO_NOTICE

        return DEMO_NOTICE
    return "secret evaluation data: generated from a seed drawn for this store and never kept"


def _print_pairs(store_dir: Path, defenses: list[str]) -> None:
    """The paired comparisons the demo is about (each robust method against natural training,
    TRADES against PGD-AT), from the store's per-sample distances."""
    from arena.server.leaderboard import compute
    from arena.server.store import open_store
    from scoreboard.tables import pair_comparison

    pairs = [(m, "natural") for m in ("trades", "pgd-at", "mart") if m in defenses and "natural" in defenses]
    pairs += [("trades", "pgd-at")] if {"trades", "pgd-at"} <= set(defenses) else []
    if not pairs:
        return
    store = open_store(store_dir)
    try:
        board = compute(store, "private")
    finally:
        store.close()
    print("\nPaired comparisons on the official board (bootstrap of the per-sample difference, 95%):")
    for upper, lower in pairs:
        print(f"  {pair_comparison(board, upper, lower)}")


def _print_gap(store_dir: Path, defenses: list[str], folders: dict[str, Path], models: dict[str, Path], x, y) -> None:
    """The official board's gap to white-box (the organizer holds the defenders' checkpoints):
    per defense, board mean d / the white-box minimum on the same samples, and whether the board
    ranks the defenses in the white-box order (`arena.top.bench.whitebox_minimum`)."""
    import numpy as np

    from arena.server.leaderboard import compute
    from arena.server.store import open_store
    from arena.top.bench.whitebox_minimum import defense_gaps, format_gap

    store = open_store(store_dir)
    try:
        board = compute(store, "private")
    finally:
        store.close()
    distances = {s.name: np.asarray(s.distances) for s in board.defenses if s.name in defenses and s.distances}
    started = time.perf_counter()
    gap = defense_gaps(distances, folders, models, x, y)
    print(f"\nThe official board against white-box (minimum of DDN, targeted DDN and a PGD search on each "
          f"defender's checkpoint, checked through its ONNX model; {time.perf_counter() - started:.0f} s):")
    print(format_gap(gap))


def _attack_all(address: str, token: str, defenses: list[str], attacks: list[str], args, surrogate: Path | None) -> None:
    from arena.ground.client import ArenaClient
    from attackers import make_attack
    from attackers.registry import surrogate_parameter
    from attackers.session import attack_remote

    state_dir = args.out / "attack-state"
    with ArenaClient(address, token, timeout=120.0) as client:
        for defense in defenses:
            for name in attacks:
                # another seed than the referee's: the team's run is its own, not the referee's replayed
                attack = make_attack(name, seed=0 if args.seed is None else args.seed + 1,
                                     surrogate=surrogate if surrogate_parameter(name) else None)
                started = time.perf_counter()
                outcome = attack_remote(client, defense=defense, attack=attack, budget=args.budget, samples=None,
                                        state_path=state_dir / f"{defense}-{name}.json",
                                        progress=sys.stderr.isatty(), log=lambda *_: None)
                summary = outcome.summary()
                mean = summary["mean_l2"]
                print(f"  {name:>12} vs {defense:<8} adversarials for {summary['success_rate']:.0%} of samples, "
                      f"mean verified l2 {mean if mean is None else round(mean, 4)}, {summary['queries']} queries "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
