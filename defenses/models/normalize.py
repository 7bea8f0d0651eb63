"""Input normalisation inside the model, so it travels with the weights and into ONNX."""

from __future__ import annotations

import torch
from torch import nn

# Per-channel statistics of natural images (ImageNet); Tiny ImageNet is a subset of it.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class Normalized(nn.Module):
    """`net((x - mean) / std)` for x in [0, 1]."""

    def __init__(self, net: nn.Module, mean=MEAN, std=STD) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)
