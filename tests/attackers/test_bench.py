"""`arena bench attack` on the fixture model, scaled down: structure and honesty of the figures."""

from __future__ import annotations

import json

import numpy as np

from arena.top.bench.attack import measure


def test_bench_measures_every_attack_against_the_whitebox_reference(models, samples):
    result = measure(models.target, models.onnx_path.read_bytes(), models.surrogate, samples.x[:3], samples.y[:3],
                     budgets=(30, 80), attacks=("hsja", "cgba", "transfer-pgd", "livia", "art-hsja"), whitebox_kwargs={"ddn_steps": 20, "targets": 1, "pgd_rounds": 2},
                     repeats=2)  # the repeats must agree (deterministic attacks), or measure raises
    figures = result["figures"]
    # the white-box minimum, then each of its methods alone, then the attacks
    assert len(result["rows"]) == 1 + 3 + 5 * 2 and len(result["columns"]) == len(result["rows"][0])
    white = figures["whitebox_mean_l2"]
    assert all(white <= m + 1e-12 for m in figures["whitebox_methods"].values())
    for name in ("hsja", "cgba", "transfer-pgd", "livia", "art-hsja"):
        for budget in (30, 80):
            cell = figures[f"{name}@{budget}"]
            assert cell["max_queries"] <= budget           # ART is held to the budget too
            assert cell["mean_l2"] >= cell["median_l2"] * 0 and cell["ratio_to_whitebox"] > 0
            assert cell["median_ratio_to_whitebox"] == cell["median_l2"] / figures["whitebox_median_l2"]
            assert cell["overhead"] >= 0
    assert figures["best_attack"] in ("hsja", "cgba", "transfer-pgd", "livia")
    assert figures["ratio"] == figures[f"{figures['best_attack']}@80"]["mean_l2"] / figures["whitebox_mean_l2"]
    # both goals are reported, met or not, with the attack that decides each
    best, free = figures["goal_best"], figures["goal_surrogate_free"]
    assert best["ratio"] == figures["ratio"] and best["met"] == (best["ratio"] <= 1.3)
    assert free["attack"] == "cgba"      # surrogate-free, other than hsja, which it is measured against
    assert free["ratio"] == figures["cgba@80"]["mean_l2"] / figures["hsja@80"]["mean_l2"]
    assert free["met"] == (free["ratio"] <= 0.8)
    assert [n.split(":")[0] for n in result["notes"]] == ["goal", "goal"]
    assert "hsja_vs_art" in figures
    json.dumps(figures)  # the last line of `arena bench attack` is this object
    assert np.isfinite(figures["whitebox_mean_l2"])
