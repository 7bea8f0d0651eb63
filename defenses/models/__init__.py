"""Classifiers in the arena's input format: float [N,3,64,64] in [0,1] -> logits [N,C].

Every model normalises its input itself (mean/std buffers), so the normalisation is part of
the exported ONNX graph and a defense is a plain function of the arena's images.
"""

from __future__ import annotations

from torch import nn

from defenses.models.normalize import Normalized
from defenses.models.preact_resnet import preact_resnet18
from defenses.models.small_resnet import small_resnet
from defenses.models.wide_resnet import wide_resnet34_10

ARCHS = {
    "resnet-small": small_resnet,
    "preact-resnet18": preact_resnet18,
    "wrn-34-10": wide_resnet34_10,
}


def build_model(arch: str, num_classes: int) -> Normalized:
    """A fresh model of architecture `arch` (one of ARCHS) with `num_classes` logits."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return Normalized(ARCHS[arch](num_classes))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["ARCHS", "Normalized", "build_model", "count_parameters"]
