"""White-box evaluation: PGD and the minimal-l2 attack on the small trained model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from defenses.data import load_samples
from defenses.whitebox import evaluate, minimal_l2, minimal_l2_adversarials, pgd


@pytest.fixture(scope="module")
def samples():
    x, y, _ = load_samples("demo", 40)
    return torch.from_numpy(x), torch.from_numpy(y)


@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_pgd_stays_in_the_ball_and_lowers_accuracy(trained, samples, norm, eps):
    x, y = samples
    model = trained.model
    x_adv = pgd(model, x, y, norm=norm, eps=eps, steps=10)
    delta = (x_adv - x).flatten(1)
    size = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-5).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean()
        robust = (model(x_adv).argmax(1) == y).float().mean()
    assert robust < clean
    assert all(p.grad is None for p in model.parameters())


def test_minimal_l2_returns_verified_adversarials_at_the_reported_distance(trained, samples):
    x, y = samples
    model = trained.model
    distances, adversarials = map(torch.from_numpy, minimal_l2_adversarials(model, x, y, steps=30))
    with torch.no_grad():
        clean_wrong = model(x).argmax(1) != y
        adv_labels = model(adversarials).argmax(1)
    found = torch.isfinite(distances)
    assert found.float().mean() > 0.9
    assert (distances[clean_wrong] == 0).all()
    assert (adv_labels[found] != y[found]).all()
    torch.testing.assert_close((adversarials - x).flatten(1).norm(dim=1)[found], distances[found])
    assert adversarials.min() >= 0 and adversarials.max() <= 1
    # minimal_l2 is the distance part of the same attack, and takes numpy arrays too
    np.testing.assert_allclose(minimal_l2(model, x[:8].numpy(), y[:8].numpy(), steps=30), distances[:8].numpy())


def test_minimal_l2_is_not_beaten_by_pgd_at_a_smaller_radius(trained, samples):
    """Samples whose DDN distance is d must not fall to PGD-l2 at radius 0.8 d (a consistency check
    on the strength of the minimal-norm attack)."""
    x, y = samples
    model = trained.model
    distances = torch.from_numpy(minimal_l2(model, x, y, steps=100))
    keep = torch.isfinite(distances) & (distances > 0)
    radius = 0.8 * distances[keep]
    x_k, y_k = x[keep], y[keep]
    fooled = torch.zeros(len(y_k), dtype=torch.bool)
    for i in range(len(y_k)):
        x_adv = pgd(model, x_k[i : i + 1], y_k[i : i + 1], norm="l2", eps=float(radius[i]), steps=20)
        with torch.no_grad():
            fooled[i] = model(x_adv).argmax(1).item() != y_k[i].item()
    assert fooled.float().mean() <= 0.1


def test_evaluate_reports_the_arena_scoring(trained, samples):
    x, y = samples
    report = evaluate(trained.model, x[:16], y[:16], pgd_steps=5, ddn_steps=20)
    assert report["samples"] == 16 and len(report["distances"]) == 16
    assert 0 <= report["pgd5_linf_accuracy"] <= report["clean_accuracy"] <= 1
    assert report["mean_l2"] > 0


def test_cli_evaluate_json(trained_run, tmp_path, capsys):
    from arena.top.cli import main

    args = ["evaluate", str(trained_run.parent), "--samples", "8", "--pgd-steps", "2", "--ddn-steps", "10", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 8 and report["method"] == "natural" and len(report["distances"]) == 8
    assert {"clean_accuracy", "pgd2_linf_accuracy", "pgd2_l2_accuracy", "mean_l2", "median_l2"} <= set(report)
    assert main(["evaluate", str(tmp_path / "missing.pt")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
