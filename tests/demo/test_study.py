"""`arena study` end to end at smoke scale: every stage runs, the page and the results come out,
every attack gets the whole budget on every model, and the models are cached per configuration
(a second run trains nothing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from arena.top.cli import main
from arena.server.store import open_store


def test_study_end_to_end_and_cached(tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["study", "--out", str(out), "--epochs-scale", "0.25", "--train-size", "1024", "--samples", "8",
            "--budget", "40", "--attacks", "boundary,hsja", "--betas", "1,6", "--whitebox-samples", "12", "--ddn-steps", "4",
            "--pgd-steps", "2", "--gradient-images", "4"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    for stage in ("[1/5] training", "[2/5] white-box", "[3/5] export", "[4/5] arena", "[5/5] the page"):
        assert stage in first
    results = json.loads((out / "study" / "results.json").read_text())
    names = [m["name"] for m in results["models"]]
    assert names == ["natural", "pgd-at", "mart", "trades-b1", "trades"]
    for m in results["models"]:
        assert len(m["arena_distances"]) == 8 and m["arena_ci"][0] <= m["arena_mean_l2"] <= m["arena_ci"][1]
        assert 0.0 <= m["clean_accuracy"] <= 1.0 and -1.0 <= m["edge_correlation"] <= 1.0
    page = (out / "study" / "report.html").read_text()
    assert page.count("data:image/png;base64") == 2 and "TRADES \u03b2=1" in page
    assert "At matched clean accuracy" in first and "TRADES beats PGD-AT" in first
    assert len(list((out / "checkpoints").iterdir())) == 5
    # Each attack ran with the whole budget: on every model it found an adversarial for every
    # sample (misclassified ones at 0), spending on each sample it attacked.
    store = open_store(out / "study" / "store")
    try:
        runs = store.list_runs()
        # one team per attack: a team's budget is shared by its runs on a defense (rules v2), so
        # attacks of one team at the arena's budget would leave the later ones nothing
        assert sorted((r.team, r.attack, r.defense) for r in runs) == sorted(
            (f"study-{a}", a, d) for a in ("boundary", "hsja") for d in names)
        best = {(r.attack, r.defense): store.best_distances(r.run_id, r.num_samples) for r in runs}
        spent = {(r.attack, r.defense): int(store.usage(r.run_id, r.num_samples).sum()) for r in runs}
    finally:
        store.close()
    assert all(np.isfinite(d).all() for d in best.values()), best
    assert any((d > 0).any() for d in best.values())          # some correct sample was attacked
    for key, distances in best.items():
        assert spent[key] > 40 * (distances > 0).sum() * 0.5, (key, spent[key])

    assert main(argv) == 0
    second = capsys.readouterr().out
    assert second.count("(cached)") == 5  # no export, and so no training, again


def test_study_rejects_bad_betas(capsys):
    assert main(["study", "--betas", "1,x"]) == 2
    assert "--betas" in capsys.readouterr().err
    assert main(["study", "--betas", "0,1"]) == 2


def test_study_with_seeds_reports_the_seed_spread_and_cautious_verdicts(tmp_path, capsys):
    """`arena study --seeds 2` at smoke scale: every configuration trained twice, each figure the
    mean with its seed spread, each seed a model on the arena, and a verdict that counts the seeds."""
    from scoreboard.study import StudyModel, aggregate, seed_separated

    out = tmp_path / "study"
    argv = ["study", "--out", str(out), "--seeds", "2", "--epochs-scale", "0.125", "--train-size", "256",
            "--samples", "4", "--budget", "10", "--attacks", "hsja", "--betas", "1,6", "--whitebox-samples", "8",
            "--ddn-steps", "2", "--pgd-steps", "1", "--gradient-images", "4"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "2 seeds each" in text and "\u00b1" in text
    results = json.loads((out / "study" / "results.json").read_text())
    assert [m["name"] for m in results["models"]] == ["natural", "pgd-at", "mart", "trades-b1", "trades"]
    for m in results["models"]:
        assert [s["name"] for s in m["seeds"]] == [f"{m['name']}-s0", f"{m['name']}-s1"]
        assert m["arena_mean_l2"] == pytest.approx(np.mean([s["arena_mean_l2"] for s in m["seeds"]]))
    assert len(list((out / "checkpoints").iterdir())) == 10
    assert "Over 2 and 2 seeds" in text or "not comparable" in text

    # the seed rule by hand: two seeds each, 0.1 apart with a spread of 0.2: within it, not shown
    def model(name, l2s):
        seeds = [StudyModel(f"{name}-s{i}", "trades", 1.0, 0.8, 0.1, 0.1, 1.0, np.zeros(1), np.zeros((1, 2, 2)), v,
                            (v, v), 0.8, np.full(3, v), 100) for i, v in enumerate(l2s)]
        return aggregate(seeds)
    a, b = model("a", [1.0, 1.2]), model("b", [0.9, 1.1])
    assert seed_separated(a, b) is False
    assert seed_separated(model("c", [2.0, 2.01]), model("d", [1.0, 1.01])) is True
    assert seed_separated(a.seeds[0], b.seeds[0]) is None            # one seed: not measured
