"""`arena study` end to end at smoke scale: every stage runs, the page and the results come out,
and the models are cached per configuration (a second run trains nothing)."""

from __future__ import annotations

import json

from arena.cli import main


def test_study_end_to_end_and_cached(tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["study", "--out", str(out), "--epochs-scale", "0.01", "--train-size", "256", "--samples", "4",
            "--budget", "40", "--attacks", "hsja", "--betas", "1,6", "--whitebox-samples", "12", "--ddn-steps", "4",
            "--pgd-steps", "2", "--gradient-images", "4"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    for stage in ("[1/5] training", "[2/5] white-box", "[3/5] export", "[4/5] arena", "[5/5] the page"):
        assert stage in first
    results = json.loads((out / "study" / "results.json").read_text())
    names = [m["name"] for m in results["models"]]
    assert names == ["natural", "pgd-at", "mart", "trades-b1", "trades"]
    for m in results["models"]:
        assert len(m["arena_distances"]) == 4 and m["arena_ci"][0] <= m["arena_mean_l2"] <= m["arena_ci"][1]
        assert 0.0 <= m["clean_accuracy"] <= 1.0 and -1.0 <= m["edge_correlation"] <= 1.0
    page = (out / "study" / "report.html").read_text()
    assert page.count("data:image/png;base64") == 2 and "TRADES \u03b2=1" in page
    assert "At matched clean accuracy" in first and "TRADES beats PGD-AT" in first
    assert len(list((out / "checkpoints").iterdir())) == 5

    assert main(argv) == 0
    second = capsys.readouterr().out
    assert second.count("(cached)") == 5  # no export, and so no training, again


def test_study_rejects_bad_betas(capsys):
    assert main(["study", "--betas", "1,x"]) == 2
    assert "--betas" in capsys.readouterr().err
    assert main(["study", "--betas", "0,1"]) == 2
