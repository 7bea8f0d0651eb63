"""WideResNet-34-10 (Zagoruyko & Komodakis 2016), the model of the TRADES and MART papers.

Depth 34 = 6n + 4 with n = 5 blocks per group, widen factor 10; global average pooling makes it
take 64x64 inputs (the groups run at 64, 32 and 16 pixels).
"""

from __future__ import annotations

from defenses.models.preact_resnet import PreActResNet


class WideResNet(PreActResNet):
    """Three groups of n = (depth - 4) / 6 pre-activation blocks of widths 16k, 32k, 64k after a
    16-channel stem: a PreActResNet with these stages and dropout in the blocks."""

    def __init__(self, depth: int, widen: int, num_classes: int, dropout: float = 0.0) -> None:
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        super().__init__((n, n, n), (16 * widen, 32 * widen, 64 * widen), num_classes, stem_width=16, dropout=dropout)


def wide_resnet34_10(num_classes: int) -> WideResNet:
    return WideResNet(34, 10, num_classes)
