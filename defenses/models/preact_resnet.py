"""Pre-activation ResNet-18 (He et al. 2016, "Identity Mappings in Deep Residual Networks").

The CIFAR form used in adversarial training (a 3x3 stride-1 stem, no max-pool), made size-agnostic
by global average pooling, which is the usual adaptation to 64x64 Tiny ImageNet: the four stages
then run at 64, 32, 16 and 8 pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice, with a 1x1 projection shortcut where the shape changes; `dropout`
    between the convolutions is the WideResNet variant."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = F.relu(self.bn2(self.conv1(out)))
        if self.dropout:
            out = F.dropout(out, self.dropout, self.training)
        return self.conv2(out) + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet (He et al. 2016) for 64x64 inputs; with dropout and widening it is the
    WideResNet."""
    def __init__(
        self,
        blocks: tuple[int, ...],
        widths: tuple[int, ...],
        num_classes: int,
        *,
        strides: tuple[int, ...] | None = None,
        stem_width: int | None = None,
        stem_stride: int = 1,
        dropout: float = 0.0,
    ) -> None:
        """`blocks[i]` blocks of width `widths[i]` per stage, the first with stride `strides[i]`
        (default: 1, then 2); a 3x3 stem of `stem_width` channels (default widths[0]);
        `dropout` inside every block (the WideResNet variant)."""
        super().__init__()
        strides = strides or (1,) + (2,) * (len(widths) - 1)
        in_planes = stem_width or widths[0]
        self.conv1 = nn.Conv2d(3, in_planes, 3, stem_stride, 1, bias=False)
        layers = []
        for count, planes, stride in zip(blocks, widths, strides):
            for j in range(count):
                layers.append(PreActBlock(in_planes, planes, stride if j == 0 else 1, dropout))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def preact_resnet18(num_classes: int) -> PreActResNet:
    return PreActResNet((2, 2, 2, 2), (64, 128, 256, 512), num_classes)
