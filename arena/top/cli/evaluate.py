"""`arena evaluate CKPT`: white-box robustness of a trained defense.

Clean accuracy, PGD-20 robust accuracy under l_inf and l2, and each sample's minimal l2
distance from DDN (the reference the black-box attacks are compared with), with their mean
scored as the arena scores (clean error 0, not found = worst case).
"""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    parser = sub.add_parser("evaluate", help="white-box evaluation: clean, PGD-20 (linf, l2), minimal l2 (DDN)")
    parser.add_argument("checkpoint", type=Path, help="a checkpoint.pt or its run folder")
    parser.add_argument("--data", default=None, help="'demo', a tiny-imagenet-200 folder or an .npz [the checkpoint's dataset]")
    parser.add_argument("--samples", type=int, default=500, help="evaluation samples, class-balanced [500]")
    parser.add_argument("--linf-eps", type=float, default=8 / 255, help="PGD l_inf radius [8/255]")
    parser.add_argument("--l2-eps", type=float, default=0.5, help="PGD l2 radius [0.5]")
    parser.add_argument("--pgd-steps", type=int, default=20, help="[20]")
    parser.add_argument("--ddn-steps", type=int, default=100, help="minimal-l2 attack iterations [100]")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda [auto]")
    parser.add_argument("--json", action="store_true", help="print one JSON object (with per-sample distances)")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    import torch

    from defenses.checkpoint import load_checkpoint
    from defenses.data import load_samples
    from defenses.device import prepare_model, resolve_device
    from defenses.whitebox import evaluate

    model, meta = load_checkpoint(args.checkpoint)
    source = args.data or meta.config.data
    x, y, names = load_samples(source, args.samples, num_classes=meta.config.classes)
    if int(y.max()) >= meta.num_classes:
        raise ValueError(f"{source} has labels up to {int(y.max())} but the model has {meta.num_classes} classes")
    model = prepare_model(model, resolve_device(args.device))
    report = evaluate(
        model,
        torch.from_numpy(x),
        torch.from_numpy(y),
        linf_eps=args.linf_eps,
        l2_eps=args.l2_eps,
        pgd_steps=args.pgd_steps,
        ddn_steps=args.ddn_steps,
    )
    report = {"checkpoint": str(meta.path), "method": meta.config.method, "data": source, **report}
    if args.json:
        print(json.dumps(report))
        return 0
    steps = args.pgd_steps
    print(f"{meta.path} ({meta.config.arch}, {meta.config.method}) on {report['samples']} samples of {source}")
    print(f"  clean accuracy          {report['clean_accuracy']:.4f}")
    print(f"  PGD-{steps} l_inf {args.linf_eps:.4g}   {report[f'pgd{steps}_linf_accuracy']:.4f}")
    print(f"  PGD-{steps} l2 {args.l2_eps:.4g}       {report[f'pgd{steps}_l2_accuracy']:.4f}")
    print(f"  minimal l2 (DDN)        mean {report['mean_l2']:.4f}, median {report['median_l2']:.4f}, not found {report['not_found']}")
    return 0
