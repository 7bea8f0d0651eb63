"""Each training loss against its formula, computed by hand on a 2-sample, 3-class batch."""

from __future__ import annotations

import math

import pytest
import torch

from defenses.methods.mart import mart_loss
from defenses.methods.pgd_at import pgd_at_loss
from defenses.methods.trades import kl_per_sample, trades_loss

NAT = [[1.0, 2.0, 0.5], [0.2, -1.0, 3.0]]
ADV = [[0.5, 2.5, 0.0], [1.0, -1.0, 2.0]]
Y = [1, 2]


def softmax(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def log_softmax(row):
    log_sum = math.log(sum(math.exp(v) for v in row))
    return [v - log_sum for v in row]


def tensors():
    return torch.tensor(NAT), torch.tensor(ADV), torch.tensor(Y)


def test_kl_per_sample_is_kl_of_softmaxes():
    nat, adv, _ = tensors()
    for i in range(2):
        p, log_p, log_q = softmax(NAT[i]), log_softmax(NAT[i]), log_softmax(ADV[i])
        expected = sum(p[k] * (log_p[k] - log_q[k]) for k in range(3))
        assert kl_per_sample(nat, adv)[i].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("beta", [0.0, 1.0, 6.0])
def test_trades_loss_is_ce_plus_beta_kl(beta):
    expected = 0.0
    for i in range(2):
        ce = -log_softmax(NAT[i])[Y[i]]
        p, log_p, log_q = softmax(NAT[i]), log_softmax(NAT[i]), log_softmax(ADV[i])
        kl = sum(p[k] * (log_p[k] - log_q[k]) for k in range(3))
        expected += (ce + beta * kl) / 2
    assert trades_loss(*tensors(), beta).item() == pytest.approx(expected, rel=1e-5)


def test_trades_loss_of_identical_logits_is_cross_entropy():
    nat, _, y = tensors()
    expected = sum(-log_softmax(NAT[i])[Y[i]] for i in range(2)) / 2
    assert trades_loss(nat, nat.clone(), y, 6.0).item() == pytest.approx(expected, rel=1e-5)


def test_pgd_at_loss_is_adversarial_cross_entropy():
    _, adv, y = tensors()
    expected = sum(-log_softmax(ADV[i])[Y[i]] for i in range(2)) / 2
    assert pgd_at_loss(adv, y).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("lam", [0.0, 6.0])
def test_mart_loss_is_boosted_ce_plus_weighted_kl(lam):
    expected = 0.0
    for i in range(2):
        q, p = softmax(ADV[i]), softmax(NAT[i])
        y = Y[i]
        runner_up = max((k for k in range(3) if k != y), key=lambda k: q[k])
        bce = -math.log(q[y]) - math.log(1.0001 - q[runner_up] + 1e-12)
        kl = sum(p[k] * (math.log(p[k]) - math.log(q[k] + 1e-12)) for k in range(3))
        expected += (bce + lam * kl * (1.0000001 - p[y])) / 2
    assert mart_loss(*tensors(), lam).item() == pytest.approx(expected, rel=1e-5)


def test_mart_runner_up_is_the_top_class_when_misclassified():
    # Sample 0 of ADV predicts class 1; with label 0 the runner-up must be class 1 (the top class).
    nat, adv, _ = tensors()
    y = torch.tensor([0, 2])
    q = softmax(ADV[0])
    p = softmax(NAT[0])
    bce0 = -math.log(q[0]) - math.log(1.0001 - q[1] + 1e-12)
    kl0 = sum(p[k] * (math.log(p[k]) - math.log(q[k] + 1e-12)) for k in range(3))
    q1, p1 = softmax(ADV[1]), softmax(NAT[1])
    bce1 = -math.log(q1[2]) - math.log(1.0001 - q1[0] + 1e-12)
    kl1 = sum(p1[k] * (math.log(p1[k]) - math.log(q1[k] + 1e-12)) for k in range(3))
    expected = (bce0 + 6 * kl0 * (1.0000001 - p[0]) + bce1 + 6 * kl1 * (1.0000001 - p1[2])) / 2
    assert mart_loss(nat, adv, y, 6.0).item() == pytest.approx(expected, rel=1e-5)
