"""Learning-rate schedules as multipliers of the base rate, stepped once per iteration."""

from __future__ import annotations

import math

import torch

SCHEDULES = ("piecewise", "cosine", "constant")


def lr_factor(schedule: str, progress: float, warmup: float = 0.0) -> float:
    """The multiplier at `progress` in [0, 1] of training; `warmup` (a fraction) ramps up linearly.

    piecewise: 1, then 0.1 from 75% and 0.01 from 90% (TRADES' 75/90 of 100 epochs);
    cosine: half a cosine from 1 to 0; constant: 1."""
    if warmup > 0 and progress < warmup:
        return (progress + 1e-9) / warmup
    if schedule == "piecewise":
        return 1.0 if progress < 0.75 else 0.1 if progress < 0.9 else 0.01
    if schedule == "cosine":
        rest = (progress - warmup) / max(1.0 - warmup, 1e-9)
        return 0.5 * (1.0 + math.cos(math.pi * min(max(rest, 0.0), 1.0)))
    if schedule == "constant":
        return 1.0
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


def make_scheduler(optimizer, schedule: str, total_steps: int, warmup_steps: int = 0):
    total = max(total_steps, 1)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(schedule, step / total, warmup_steps / total)
    )
