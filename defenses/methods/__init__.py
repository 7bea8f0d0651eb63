"""Training objectives: natural, Madry PGD-AT, TRADES and MART.

Each method module has the loss formula as a pure function of logits (tested against its
definition) and `objective(model, x, y, settings, attack_model)`, one training step's loss with
its inner maximisation. `attack_model` is the module the inner maximisation runs through (the
unwrapped model under DDP, so attack passes never touch gradient synchronisation).
"""

from __future__ import annotations

from collections.abc import Callable

from defenses.methods import mart, natural, pgd_at, trades
from defenses.methods.common import MethodSettings, StepOutput

METHODS: dict[str, Callable[..., StepOutput]] = {
    "natural": natural.objective,
    "pgd-at": pgd_at.objective,
    "trades": trades.objective,
    "mart": mart.objective,
}


def get_method(name: str) -> Callable[..., StepOutput]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


__all__ = ["METHODS", "MethodSettings", "StepOutput", "get_method"]
