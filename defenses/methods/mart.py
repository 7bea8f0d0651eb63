"""MART (Wang et al. 2020, "Improving Adversarial Robustness Requires Revisiting Misclassified
Examples"):

    BCE(p(x'), y) + lambda * KL(p(x) || p(x')) * (1 - p_y(x)),
    BCE(p(x'), y) = -log p_y(x') - log(1 - max_{k != y} p_k(x'))   (the boosted cross-entropy)

with x' maximising CE(f(x'), y) by projected gradient ascent from x + 0.001 * N(0, I), and the
stabilising constants of the authors' code (1.0001, 1e-12, 1.0000001).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from defenses.methods.common import MethodSettings, StepOutput, gaussian_start
from defenses.threat import maximize


def mart_loss(logits: torch.Tensor, adv_logits: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    adv_probs = F.softmax(adv_logits.float(), dim=1)
    top2 = adv_probs.topk(2, dim=1).indices
    runner_up = torch.where(top2[:, 0] == y, top2[:, 1], top2[:, 0])  # most likely wrong class
    boosted_ce = F.cross_entropy(adv_logits.float(), y) + F.nll_loss(torch.log(1.0001 - adv_probs + 1e-12), runner_up)
    nat_probs = F.softmax(logits.float(), dim=1)
    true_probs = nat_probs.gather(1, y.unsqueeze(1)).squeeze(1)
    kl = F.kl_div(torch.log(adv_probs + 1e-12), nat_probs, reduction="none").sum(dim=1)
    return boosted_ce + lam * (kl * (1.0000001 - true_probs)).mean()


def objective(model, x, y, settings: MethodSettings, attack_model=None) -> StepOutput:
    attack_model = model if attack_model is None else attack_model
    x_adv = maximize(
        attack_model,
        lambda logits: F.cross_entropy(logits.float(), y, reduction="sum"),
        x,
        gaussian_start(x),
        settings.threat,
        settings.bn_mode,
    )
    logits = model(x)
    adv_logits = model(x_adv)
    return StepOutput(mart_loss(logits, adv_logits, y, settings.beta), logits=logits, adv_logits=adv_logits, x_adv=x_adv)
