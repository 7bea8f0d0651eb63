"""`arena bench attack` on the fixture model, scaled down: structure and honesty of the figures."""

from __future__ import annotations

import json

import numpy as np

from attackers.bench import measure


def test_bench_measures_every_attack_against_the_whitebox_reference(models, samples):
    result = measure(models.target, models.onnx_path.read_bytes(), models.surrogate, samples.x[:3], samples.y[:3],
                     budgets=(30, 80), attacks=("hsja", "cgba", "transfer-pgd", "livia", "art-hsja"), whitebox_kwargs={"steps": 20},
                     repeats=2)  # the repeats must agree (deterministic attacks), or measure raises
    figures = result["figures"]
    assert len(result["rows"]) == 1 + 5 * 2 and len(result["columns"]) == len(result["rows"][0])
    for name in ("hsja", "cgba", "transfer-pgd", "livia", "art-hsja"):
        for budget in (30, 80):
            cell = figures[f"{name}@{budget}"]
            assert cell["max_queries"] <= budget           # ART is held to the budget too
            assert cell["mean_l2"] >= cell["median_l2"] * 0 and cell["ratio_to_whitebox"] > 0
            assert cell["overhead"] >= 0
    assert figures["best_attack"] in ("hsja", "cgba", "transfer-pgd", "livia")
    assert figures["ratio"] == figures[f"{figures['best_attack']}@80"]["mean_l2"] / figures["whitebox_mean_l2"]
    # both goals are reported, met or not, with the attack that decides each
    best, free = figures["goal_best"], figures["goal_surrogate_free"]
    assert best["ratio"] == figures["ratio"] and best["met"] == (best["ratio"] <= 1.3)
    assert free["attack"] in ("hsja", "cgba")
    assert free["ratio"] == min(figures[f"{n}@80"]["mean_l2"] for n in ("hsja", "cgba")) / figures["whitebox_mean_l2"]
    assert free["met"] == (free["ratio"] <= 2.0)
    assert [n.split(":")[0] for n in result["notes"]] == ["goal", "goal"]
    assert "hsja_vs_art" in figures
    json.dumps(figures)  # the last line of `arena bench attack` is this object
    assert np.isfinite(figures["whitebox_mean_l2"])
