"""`arena demo` end to end at smoke scale: every stage runs, the leaderboard and report come out,
and a second run reuses the cached checkpoints and models."""

from __future__ import annotations

import re

from arena.cli import main


def test_demo_end_to_end_and_cached(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--epochs-scale", "0.01", "--train-size", "256", "--samples", "4",
            "--budget", "60", "--attacks", "hsja,transfer-pgd"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    for stage in ("[1/6] data", "[2/6] training", "[3/6] export", "[4/6] arena", "[5/6] attacks", "[6/6] leaderboard"):
        assert stage in first
    # Every defense is ranked, and both attacks faced all three.
    table = first[first.index("Defenses:"):]
    assert {"natural", "pgd-at", "trades"} <= set(re.findall(r"^\s+\d\s+(\S+)", table, flags=re.M))
    assert re.search(r"hsja\s+\S+\s+\[\S+ \S+\]\s+3/3", table) and re.search(r"transfer-pgd\s+\S+\s+\[\S+ \S+\]\s+3/3", table)
    # Section 7: the neighbours on the board and the demo's own pairs are compared.
    assert "Neighbours: paired bootstrap" in first
    assert re.search(r"trades - natural: [+-]\d\.\d{3} \[\S+ \S+\] over 4 samples, (not )?separated", first)
    assert "trades - pgd-at:" in first
    report = (out / "report.html").read_text()
    assert "<table" in report and "trades" in report and "data:image/png;base64" in report
    models = sorted(p.name for p in (out / "models").glob("*.onnx"))
    assert len(models) == 3

    assert main(argv) == 0
    second = capsys.readouterr().out
    assert second.count("(cached)") == 3  # no export again
    assert "[6/6] leaderboard" in second
    assert sorted(p.name for p in (out / "models").glob("*.onnx")) == models
