"""Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks":
min_theta E max_{x' in B(x)} CE(f(x'), y), the inner maximum by PGD from a uniform random start."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from defenses.methods.common import MethodSettings, StepOutput
from defenses.threat import maximize


def pgd_at_loss(adv_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(adv_logits.float(), y)


def objective(model, x, y, settings: MethodSettings, attack_model=None) -> StepOutput:
    attack_model = model if attack_model is None else attack_model
    threat = settings.threat
    x_adv = maximize(
        attack_model,
        lambda logits: F.cross_entropy(logits.float(), y, reduction="sum"),
        x,
        threat.random_start(x),
        threat,
        settings.bn_mode,
    )
    adv_logits = model(x_adv)
    return StepOutput(pgd_at_loss(adv_logits, y), adv_logits=adv_logits, x_adv=x_adv)
