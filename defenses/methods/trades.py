"""TRADES (Zhang et al. 2019, "Theoretically Principled Trade-off between Robustness and Accuracy"):

    CE(f(x), y) + beta * KL(f(x) || f(x')),   x' = argmax_{x' in B(x)} KL(f(x) || f(x'))

with the inner maximum by projected gradient ascent from x + 0.001 * N(0, I) (Algorithm 1).

Fast by construction: the clean logits are computed once per batch, with grad, and serve both
the outer loss and (detached) the KL target of every inner step, where the reference code
recomputes f(x) in each of them; the inner steps take input gradients only (threat.maximize).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from defenses.methods.common import MethodSettings, StepOutput, gaussian_start
from defenses.threat import maximize


def kl_per_sample(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits_p) || softmax(logits_q)) for each row."""
    log_p = F.log_softmax(logits_p.float(), dim=1)
    log_q = F.log_softmax(logits_q.float(), dim=1)
    return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(dim=1)


def trades_loss(logits: torch.Tensor, adv_logits: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """Batch mean of CE(f(x), y) + beta * KL(f(x) || f(x'))."""
    return F.cross_entropy(logits.float(), y) + beta * kl_per_sample(logits, adv_logits).mean()


def objective(model, x, y, settings: MethodSettings, attack_model=None) -> StepOutput:
    attack_model = model if attack_model is None else attack_model
    logits = model(x)
    target = logits.detach()
    x_adv = maximize(
        attack_model,
        lambda adv: kl_per_sample(target, adv).sum(),
        x,
        gaussian_start(x),
        settings.threat,
        settings.bn_mode,
    )
    adv_logits = model(x_adv)
    return StepOutput(trades_loss(logits, adv_logits, y, settings.beta), logits=logits, adv_logits=adv_logits, x_adv=x_adv)
