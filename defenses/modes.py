"""Temporary model states for the inner maximisation: parameters frozen, a chosen BatchNorm mode."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

BN_MODES = ("eval", "train")


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Parameters stop requiring grad inside the block, so the forward passes of an attack record
    nothing for weight gradients and no .grad is ever written; restored afterwards."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p in params:
            p.requires_grad_(True)


@contextmanager
def batchnorm_mode(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    """"eval": BatchNorm uses its running statistics (the TRADES and MART reference code); "train":
    batch statistics, running statistics updated (Madry et al.). The previous mode is restored."""
    if mode not in BN_MODES:
        raise ValueError(f"unknown BatchNorm mode {mode!r}; choose one of {', '.join(BN_MODES)}")
    was_training = model.training
    model.train(mode == "train")
    try:
        yield model
    finally:
        model.train(was_training)
