"""What every training objective takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from defenses.modes import BN_MODES
from defenses.threat import ThreatModel

# Magnitude of the Gaussian start of TRADES and MART: x + 0.001 * N(0, I) (TRADES Algorithm 1).
START_NOISE = 0.001


@dataclass(frozen=True)
class MethodSettings:
    """What every training method takes: threat model, beta (TRADES, MART), BatchNorm mode during the
    attack."""

    threat: ThreatModel = field(default_factory=ThreatModel)
    beta: float = 6.0          # TRADES: weight of the KL term (1/lambda); MART: lambda
    bn_mode: str = "eval"      # BatchNorm mode during the inner maximisation

    def __post_init__(self) -> None:
        if self.bn_mode not in BN_MODES:
            raise ValueError(f"unknown BatchNorm mode {self.bn_mode!r}; choose one of {', '.join(BN_MODES)}")


@dataclass
class StepOutput:
    """One training step's loss and, when computed, the clean and adversarial logits."""

    loss: torch.Tensor
    logits: torch.Tensor | None = None       # on the clean batch, when the method computes them
    adv_logits: torch.Tensor | None = None   # on the adversarial batch
    x_adv: torch.Tensor | None = None        # the adversarial batch (detached)


def gaussian_start(x: torch.Tensor) -> torch.Tensor:
    return x + START_NOISE * torch.randn_like(x)
