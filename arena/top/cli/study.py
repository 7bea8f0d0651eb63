"""`arena study`: natural, PGD-AT, MART and TRADES at several betas, trained on the embedded
dataset, evaluated white-box and black-box through a real arena, on one page.

Stages: train every model (cached per configuration in --out's checkpoints, shared with `arena
demo`); evaluate each white-box on the same validation images (clean, PGD-20, DDN minimal l2,
input-gradient maps; `defenses.study`); export and submit them to a fresh in-process arena, run
the reference attacks against each at the rules' budget; then the table, the comparison at
matched clean accuracy, the four findings checked and the page (`scoreboard.study`).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from arena.top.cli.demo import ATTACKS, SURROGATE, _attack_all, _names, _Stages, export_role, train_role


def register(sub) -> None:
    parser = sub.add_parser("study", help="train natural, PGD-AT, MART, TRADES at several betas; compare them on one page")
    parser.add_argument("--out", type=Path, default=Path("demo-out"),
                        help="working folder; checkpoints and models are cached there per configuration, shared with "
                             "`arena demo`; the study's store, results and page go in OUT/study (default demo-out)")
    parser.add_argument("--betas", default="0.5,1,3,6,10", help="TRADES betas (default 0.5,1,3,6,10)")
    parser.add_argument("--samples", type=int, default=80, help="evaluation samples the arena holds (default 80)")
    parser.add_argument("--budget", type=int, default=1000, help="queries per sample (default 1000, the rules')")
    parser.add_argument("--attacks", default=",".join(ATTACKS), help=f"comma-separated attacks (default {','.join(ATTACKS)})")
    parser.add_argument("--whitebox-samples", type=int, default=500,
                        help="validation images of the white-box evaluation (default 500)")
    parser.add_argument("--ddn-steps", type=int, default=100, help="DDN iterations of the minimal l2 (default 100)")
    parser.add_argument("--pgd-steps", type=int, default=20, help="PGD iterations (default 20)")
    parser.add_argument("--gradient-images", type=int, default=500,
                        help="white-box images whose input gradients are measured (default 500, i.e. all of them "
                             "at the default --whitebox-samples; the first 4 are drawn)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the attacks and the bootstrap (default 0)")
    parser.add_argument("--seeds", type=int, default=1, metavar="K",
                        help="training seeds per configuration (default 1): figures are their means with the seed "
                             "spread beside each, and a verdict needs a difference beyond it (issue 19)")
    parser.add_argument("--device", default=None, help="training and white-box device (default: cuda if available, else cpu)")
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="multiply the preset's epochs (default 1)")
    parser.add_argument("--train-size", type=int, default=None, help="train on the first N training images only (default all)")
    parser.set_defaults(func=_run)


def _betas(value: str) -> tuple[float, ...]:
    try:
        betas = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--betas: expected comma-separated numbers, got {value!r}") from None
    if not betas or any(not b > 0 for b in betas) or len(set(betas)) != len(betas):
        raise ValueError(f"--betas: expected distinct numbers > 0, got {value!r}")
    return betas


def _run(args) -> int:
    from defenses.presets import study_preset, trades_role

    betas = _betas(args.betas)
    attacks = _names(args.attacks, ATTACKS, "attacks")
    for name in ("samples", "budget", "whitebox_samples", "ddn_steps", "pgd_steps", "gradient_images"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.epochs_scale <= 0:
        raise ValueError(f"--epochs-scale must be > 0, got {args.epochs_scale}")
    preset = study_preset(betas)
    models = {"natural": ("natural", None), "pgd-at": ("pgd-at", None), "mart": ("mart", preset.roles["mart"]["beta"])}
    models.update({trades_role(b): ("trades", b) for b in sorted(betas)})
    out: Path = args.out
    study_dir = out / "study"
    stage = _Stages(5)

    stage(f"training: {', '.join(models)}" + (f", {args.seeds} seeds each" if args.seeds > 1 else "")
          + " (cached per configuration)")
    # a model per configuration and seed: "trades-b3" with one seed, "trades-b3-s0", "-s1", ... with several
    seeded = {_seeded(role, s, args.seeds): (role, s) for role in models for s in range(args.seeds)}
    folders = {name: train_role(preset, role, out, args.device, args.epochs_scale, args.train_size, seed_offset=s)
               for name, (role, s) in seeded.items()}
    if "transfer-pgd" in attacks:
        folders[SURROGATE] = train_role(preset, SURROGATE, out, args.device, args.epochs_scale, args.train_size)

    stage(f"white-box: clean, PGD-{args.pgd_steps}, DDN-{args.ddn_steps} on {args.whitebox_samples} validation images; "
          f"input gradients of {args.gradient_images}")
    from defenses.data import load_samples
    from defenses.study import whitebox_study

    x, y, _ = load_samples("demo", args.whitebox_samples)
    whitebox = {}
    for role in seeded:
        started = time.perf_counter()
        whitebox[role] = whitebox_study(folders[role], x, y, gradient_images=args.gradient_images,
                                        pgd_steps=args.pgd_steps, ddn_steps=args.ddn_steps, device=args.device)
        wb = whitebox[role]
        print(f"  {role:<10} clean {wb.clean_accuracy:.3f}, PGD linf {wb.pgd_linf_accuracy:.3f}, PGD l2 "
              f"{wb.pgd_l2_accuracy:.3f}, DDN mean l2 {wb.mean_l2:.3f}, edge corr {wb.edge_correlation:.3f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)

    stage("export: ONNX, parity-checked against torch")
    onnx = {name: export_role(folders[name], out) for name in seeded}

    stage(f"arena: a fresh store, every model submitted; {', '.join(attacks)} against each, {args.budget} queries "
          f"per sample on {args.samples} samples")
    board = _black_box(study_dir, onnx, attacks, args, folders.get(SURROGATE))

    stage("the page")
    from scoreboard.study import StudyModel, aggregate, render_html, render_text

    scores = {s.name: s for s in board.defenses}
    rows = []
    for role, (method, beta) in models.items():
        per_seed = []
        for name in (_seeded(role, s, args.seeds) for s in range(args.seeds)):
            wb, s = whitebox[name], scores[name]
            per_seed.append(StudyModel(
                name=name, method=method, beta=beta, clean_accuracy=wb.clean_accuracy,
                pgd_linf_accuracy=wb.pgd_linf_accuracy, pgd_l2_accuracy=wb.pgd_l2_accuracy,
                whitebox_mean_l2=wb.mean_l2, edge_correlations=wb.edge_correlations, gradient_maps=wb.gradient_maps,
                arena_mean_l2=s.mean_l2, arena_ci=(s.uncertainty.mean_ci_low, s.uncertainty.mean_ci_high),
                arena_clean_accuracy=s.clean_accuracy, arena_distances=np.asarray(s.distances),
                whitebox_samples=args.whitebox_samples,
            ))
        rows.append(aggregate(per_seed))
    settings = _settings(preset, models, args, attacks)
    print(render_text(rows, seed=args.seed))
    page = study_dir / "report.html"
    page.write_text(render_html(rows, x[: args.gradient_images], settings=settings, seed=args.seed))
    (study_dir / "results.json").write_text(json.dumps(_results(rows, settings), indent=2) + "\n")
    print(f"page: {page.resolve()}")
    print(f"total: {time.perf_counter() - stage.start:.0f} s")
    return 0


def _seeded(role: str, seed: int, seeds: int) -> str:
    return role if seeds == 1 else f"{role}-s{seed}"


def _black_box(study_dir: Path, onnx: dict[str, Path], attacks: list[str], args, surrogate: Path | None):
    """A fresh arena holding every model; the attacks against each; the board with per-sample detail.

    Each attack is its own team ("study-<attack>"): under the rules a team's budget is shared by
    all its runs on a defense, so attacks run by one team would split it (the first one spent it
    all); here each attack gets the full `--budget` per sample, as a reference evaluation should."""
    from arena.ground.client import ArenaClient
    from arena.server import ServerConfig, start_server
    from arena.server.auth import create_token
    from arena.server.core import ArenaConfig
    from arena.server.leaderboard import compute
    from arena.server.store import open_store

    store_dir = study_dir / "store"
    for folder in (store_dir, study_dir / "attack-state"):
        shutil.rmtree(folder, ignore_errors=True)
    store = open_store(store_dir)
    try:
        defender_token = create_token(store, "defenders")
        attacker_tokens = {name: create_token(store, f"study-{name}") for name in attacks}
    finally:
        store.close()
    # one split is enough for a study: its runs attack the public split of an open arena
    server = start_server(ServerConfig(store=store_dir, data="demo", public_samples=args.samples, private_samples=0,
                                       port=0, arena=ArenaConfig(budget=args.budget)))
    try:
        with ArenaClient(server.address, defender_token) as client:
            for role, model in onnx.items():
                defense = client.submit_defense(model.read_bytes(), name=role, description=f"study, {role}")
                print(f"  submitted {role}: clean accuracy {defense.clean_accuracy:.1%}", flush=True)
        run_args = SimpleNamespace(seed=args.seed, out=study_dir, budget=args.budget)
        for name in attacks:
            _attack_all(server.address, attacker_tokens[name], list(onnx), [name], run_args, surrogate)
    finally:
        server.stop()
    store = open_store(store_dir)
    try:
        return compute(store, "public")
    finally:
        store.close()


def _settings(preset, models, args, attacks) -> list[tuple[str, str]]:
    out = []
    for role in models:
        c = preset.config(role)
        epochs = max(1, round(c.epochs * args.epochs_scale))
        threat = "" if c.method == "natural" else f", {c.norm} eps {c.eps:.4g} ({c.steps} steps of {c.step_size:.4g})"
        beta = f", beta {c.beta:g}" if c.method in ("trades", "mart") else ""
        out.append((role, f"{c.arch}, {c.method}{beta}, {epochs} epochs, lr {c.lr:g} ({c.schedule}"
                          f"{f', warm-up {c.warmup_epochs:g} epochs' if c.warmup_epochs else ''}), batch {c.batch_size}"
                          f"{threat}" + (f", first {args.train_size} training images" if args.train_size else "")))
    out.append(("white-box", f"{args.whitebox_samples} validation images; PGD-{args.pgd_steps} at l_inf 8/255 and "
                             f"l2 0.5; DDN-{args.ddn_steps}; input gradients of the first {args.gradient_images}"))
    out.append(("seeds", f"{args.seeds} training seed(s) per configuration; figures are means over them, "
                         "\u00b1 their standard deviation"))
    out.append(("black-box", f"{args.samples} arena samples, {args.budget} queries each, attacks {', '.join(attacks)} "
                             f"(seed {args.seed})"))
    return out


def _results(rows, settings) -> dict:
    return {
        "settings": dict(settings),
        "models": [
            {"name": m.name, "method": m.method, "beta": m.beta, "clean_accuracy": m.clean_accuracy,
             "pgd_linf_accuracy": m.pgd_linf_accuracy, "pgd_l2_accuracy": m.pgd_l2_accuracy,
             "whitebox_mean_l2": m.whitebox_mean_l2, "arena_mean_l2": m.arena_mean_l2, "arena_ci": list(m.arena_ci),
             "arena_clean_accuracy": m.arena_clean_accuracy, "edge_correlation": m.edge_correlation,
             "arena_distances": [float(d) for d in m.arena_distances],
             "seeds": [{"name": s.name, "clean_accuracy": s.clean_accuracy, "arena_mean_l2": s.arena_mean_l2,
                        "whitebox_mean_l2": s.whitebox_mean_l2} for s in m.seeds]}
            for m in rows
        ],
    }

