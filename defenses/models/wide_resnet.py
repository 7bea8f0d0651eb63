"""WideResNet-34-10 (Zagoruyko & Komodakis 2016), the model of the TRADES and MART papers.

Depth 34 = 6n + 4 with n = 5 blocks per group, widen factor 10; global average pooling makes it
take 64x64 inputs (the groups run at 64, 32 and 16 pixels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from defenses.models.preact_resnet import PreActBlock


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        layers, in_planes = [], widths[0]
        for group, planes in enumerate(widths[1:]):
            for j in range(n):
                stride = 2 if (group > 0 and j == 0) else 1
                layers.append(PreActBlock(in_planes, planes, stride, dropout))  # with dropout: the WRN block
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def wide_resnet34_10(num_classes: int) -> WideResNet:
    return WideResNet(34, 10, num_classes)
