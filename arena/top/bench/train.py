"""`arena bench train`: the project's TRADES step against the straightforward formulation.

Both run on the same model architecture, initial weights and batch, alternating in rounds so
that a busy machine slows both alike; the figure per formulation is the median over rounds.
The reference is TRADES as its authors' code writes it: f(x) recomputed in every inner step,
parameters requiring grad throughout, fp32. The project's step (defenses.methods.trades) reuses
the clean logits of the batch, freezes the parameters during the inner maximisation, and on
CUDA runs in channels_last with bf16 autocast.
"""

from __future__ import annotations

import copy
import statistics
import time

ARGS = {
    "--arch": (str, "resnet-small", "model architecture"),
    "--batch-size": (int, 128, "images per step"),
    "--steps": (int, 10, "inner maximisation steps"),
    "--rounds": (int, 5, "alternating measurement rounds"),
    "--iters": (int, 2, "training steps per formulation and round"),
    "--device": (str, "auto", "auto | cpu | cuda"),
}


def add_arguments(parser) -> None:
    for flag, (kind, default, text) in ARGS.items():
        parser.add_argument(flag, type=kind, default=default, help=f"{text} [{default}]")


def reference_trades_step(model, optimizer, x, y, threat, beta: float) -> None:
    """One TRADES step as written in the authors' code (TRADES/trades.py, l_inf)."""
    import torch
    import torch.nn.functional as F

    model.eval()
    x_adv = x.detach() + 0.001 * torch.randn_like(x)
    for _ in range(threat.steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss_kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1), reduction="sum")
        (grad,) = torch.autograd.grad(loss_kl, [x_adv])
        x_adv = x_adv.detach() + threat.step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - threat.eps), x + threat.eps).clamp(0.0, 1.0)
    model.train()
    optimizer.zero_grad()
    logits = model(x)
    loss_robust = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1), reduction="sum") / len(x)
    loss = F.cross_entropy(logits, y) + beta * loss_robust
    loss.backward()
    optimizer.step()


def _plain_step(model, optimizer, x, y, objective, settings) -> None:
    """The project's formulation without the memory-format and precision choices."""
    output = objective(model, x, y, settings)
    optimizer.zero_grad(set_to_none=True)
    output.loss.backward()
    optimizer.step()


def _images_per_s(step, batch: int, iters: int, sync) -> float:
    sync()
    started = time.perf_counter()
    for _ in range(iters):
        step()
    sync()
    return batch * iters / (time.perf_counter() - started)


def run(args) -> dict:
    import torch

    from defenses.device import prepare_batch, prepare_model, resolve_device
    from defenses.methods import MethodSettings, get_method
    from defenses.models import build_model
    from defenses.tensors import load_tensors
    from defenses.threat import ThreatModel
    from defenses.train import train_step

    device = resolve_device(args.device)
    torch.manual_seed(0)
    data = load_tensors("demo", "train", limit=args.batch_size)
    x, y = data.floats().to(device), data.labels.to(device)
    settings = MethodSettings(ThreatModel.make("linf", steps=args.steps), beta=6.0, bn_mode="eval")
    initial = build_model("resnet-small" if args.arch is None else args.arch, len(data.class_names))

    def optimizer_for(model):
        return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=2e-4)

    def contestant(model):
        return model, optimizer_for(model)

    fast_model, fast_opt = contestant(prepare_model(copy.deepcopy(initial), device))
    plain_model, plain_opt = contestant(copy.deepcopy(initial).to(device))
    ref_model, ref_opt = contestant(copy.deepcopy(initial).to(device))
    nat_model, nat_opt = contestant(prepare_model(copy.deepcopy(initial), device))
    fast_x = prepare_batch(x)
    trades, natural = get_method("trades"), get_method("natural")

    steps = {
        "project": lambda: train_step(fast_model, fast_opt, fast_x, y, trades, settings),
        "formulation": lambda: _plain_step(plain_model, plain_opt, x, y, trades, settings),
        "reference": lambda: reference_trades_step(ref_model, ref_opt, x, y, settings.threat, settings.beta),
        "natural": lambda: train_step(nat_model, nat_opt, fast_x, y, natural, settings),
    }
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for step in steps.values():  # warm-up: allocator, kernel selection
        step()
    samples = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            samples[name].append(_images_per_s(step, args.batch_size, args.iters, sync))
    speed = {name: statistics.median(values) for name, values in samples.items()}
    ratio = speed["project"] / speed["reference"]
    fast_path = "channels_last, bf16 autocast" if device.type == "cuda" else "channels_last, fp32"
    rows = [
        [f"project TRADES step ({fast_path})", speed["project"], ratio],
        ["  same formulation, NCHW fp32 (clean logits reused, frozen params)", speed["formulation"],
         speed["formulation"] / speed["reference"]],
        ["reference TRADES step (f(x) every inner step, params require grad, NCHW fp32)", speed["reference"], 1.0],
        ["natural step, for scale", speed["natural"], speed["natural"] / speed["reference"]],
    ]
    return {
        "title": f"TRADES training step, {args.arch}, batch {args.batch_size}, {args.steps} inner steps, "
        f"{device}, {torch.get_num_threads()} threads, median of {args.rounds} rounds",
        "columns": ["formulation", "images/s", "vs reference"],
        "rows": rows,
        "figures": {
            "ratio": ratio,
            "project_images_per_s": speed["project"],
            "reference_images_per_s": speed["reference"],
            "formulation_only_ratio": speed["formulation"] / speed["reference"],
            "natural_images_per_s": speed["natural"],
            "trades_cost_vs_natural": speed["natural"] / speed["project"],
            "arch": args.arch,
            "batch_size": args.batch_size,
            "inner_steps": args.steps,
            "device": str(device),
            "threads": torch.get_num_threads(),
        },
    }
