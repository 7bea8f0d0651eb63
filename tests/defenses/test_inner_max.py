"""The inner maximisation: inside the threat model, input gradients only, model state restored;
and each method's gradients reach the parameters through the outer loss only."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from defenses.methods import METHODS, MethodSettings
from defenses.methods.mart import mart_loss
from defenses.methods.trades import kl_per_sample, trades_loss
from defenses.threat import ThreatModel, maximize


def batch(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g), torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_maximize_stays_in_the_ball_and_the_box_and_increases_the_loss(tiny_net, norm, eps):
    x, y = batch()
    threat = ThreatModel.make(norm, eps, steps=10)
    ce = lambda logits: F.cross_entropy(logits, y, reduction="sum")  # noqa: E731
    tiny_net.eval()
    x_adv = maximize(tiny_net, ce, x, x, threat)
    delta = (x_adv - x).flatten(1)
    size = delta.abs().max(dim=1).values if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-6).all() and (size > 0).any()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert ce(tiny_net(x_adv)) > ce(tiny_net(x))


def test_maximize_takes_input_gradients_only(tiny_net):
    x, y = batch()
    for p in tiny_net.parameters():
        p.grad = torch.full_like(p, 7.0)
    seen = []
    hook = tiny_net.register_forward_hook(
        lambda m, i, o: seen.append((any(p.requires_grad for p in m.parameters()), m.training))
    )
    tiny_net.train()
    x_adv = maximize(tiny_net, lambda z: F.cross_entropy(z, y, reduction="sum"), x, x, ThreatModel.make(steps=3), bn_mode="eval")
    hook.remove()
    assert seen == [(False, False)] * 3          # frozen parameters, BatchNorm in eval mode
    assert all((p.grad == 7.0).all() for p in tiny_net.parameters())  # no gradient written
    assert all(p.requires_grad for p in tiny_net.parameters()) and tiny_net.training  # restored
    assert not x_adv.requires_grad and x_adv.grad_fn is None
    assert not torch.equal(x_adv, x)             # the input gradient moved the point


def test_bn_mode_train_uses_batch_statistics(tiny_net):
    x, y = batch()
    modes = []
    hook = tiny_net.register_forward_hook(lambda m, i, o: modes.append(m.training))
    tiny_net.eval()
    maximize(tiny_net, lambda z: F.cross_entropy(z, y, reduction="sum"), x, x, ThreatModel.make(steps=2), bn_mode="train")
    hook.remove()
    assert modes == [True, True] and not tiny_net.training


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_gradients_reach_every_parameter_and_only_through_the_outer_loss(tiny_net, method):
    x, y = batch()
    tiny_net.train()
    torch.manual_seed(0)
    out = METHODS[method](tiny_net, x, y, MethodSettings(ThreatModel.make(steps=3)))
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in tiny_net.named_parameters()}
    assert all(g.abs().sum() > 0 for g in grads.values())
    if method == "natural":
        return
    # The same loss rebuilt from the returned x_adv as a constant gives the same gradients:
    # nothing of the inner maximisation leaked into the parameter gradients.
    tiny_net.zero_grad()
    settings_beta = 6.0
    if method == "pgd-at":
        loss = F.cross_entropy(tiny_net(out.x_adv), y)
    elif method == "trades":
        loss = trades_loss(tiny_net(x), tiny_net(out.x_adv), y, settings_beta)
    else:
        loss = mart_loss(tiny_net(x), tiny_net(out.x_adv), y, settings_beta)
    assert loss.item() == pytest.approx(out.loss.item(), rel=1e-5)
    loss.backward()
    for n, p in tiny_net.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6)


def test_trades_starts_from_small_gaussian_noise_and_maximises_the_kl(tiny_net):
    x, y = batch()
    tiny_net.eval()  # same BatchNorm mode for the target and the inner steps
    with torch.no_grad():
        target = tiny_net(x)
    zero_steps = MethodSettings(ThreatModel.make(steps=0))
    torch.manual_seed(0)
    start = METHODS["trades"](tiny_net, x, y, zero_steps).x_adv
    assert 0 < (start - x).abs().max() < 0.01    # x + 0.001 * N(0, I)
    torch.manual_seed(0)
    x_adv = METHODS["trades"](tiny_net, x, y, MethodSettings(ThreatModel.make(steps=10))).x_adv
    with torch.no_grad():
        assert kl_per_sample(target, tiny_net(x_adv)).sum() > 10 * kl_per_sample(target, tiny_net(start)).sum()
