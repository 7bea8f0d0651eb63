"""`arena bench train` on a toy size: the table and figures it promises."""

from __future__ import annotations

import argparse

from arena.top.bench import train as bench


def test_bench_returns_table_and_figures():
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--batch-size", "8", "--steps", "2", "--rounds", "1", "--iters", "1", "--device", "cpu"])
    result = bench.run(args)
    assert set(result) == {"title", "columns", "rows", "figures"}
    assert len(result["rows"]) == 4 and all(len(r) == len(result["columns"]) for r in result["rows"])
    figures = result["figures"]
    assert figures["ratio"] > 0 and figures["project_images_per_s"] > 0 and figures["reference_images_per_s"] > 0
    assert figures["ratio"] == figures["project_images_per_s"] / figures["reference_images_per_s"]


def test_project_step_equals_the_reference_formulation_without_batchnorm():
    """Without BatchNorm, train and eval mode agree, so reusing the clean logits changes nothing:
    one project TRADES step and one reference step give the same weights."""
    import copy

    import torch

    from defenses.methods import MethodSettings, get_method
    from defenses.threat import ThreatModel
    from defenses.train import train_step

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, 2, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3)
    )
    x, y = torch.rand(5, 3, 16, 16), torch.tensor([0, 1, 2, 1, 0])
    settings = MethodSettings(ThreatModel.make(steps=3), beta=6.0)
    initial = copy.deepcopy(net)
    fast, ref = net, copy.deepcopy(net)
    opt_fast = torch.optim.SGD(fast.parameters(), lr=0.5)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.5)
    torch.manual_seed(1)
    train_step(fast, opt_fast, x, y, get_method("trades"), settings)
    torch.manual_seed(1)
    bench.reference_trades_step(ref, opt_ref, x, y, settings.threat, settings.beta)
    for a, b in zip(fast.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(next(fast.parameters()), next(initial.parameters()))  # the step did move
