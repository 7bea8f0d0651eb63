"""`arena demo` end to end at smoke scale: the competition's whole life cycle runs (open phase,
referee on both splits, final phase, the team's attacks on the private split), both boards and
the report come out, and a second run reuses the cached checkpoints and models."""

from __future__ import annotations

import re

from arena.top.cli import main


def test_demo_end_to_end_and_cached(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--epochs-scale", "0.01", "--train-size", "256", "--samples", "4",
            "--budget", "60", "--attacks", "hsja", "--referee-attacks", "hsja,transfer-pgd"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    for stage in ("[1/8] data", "[2/8] training", "[3/8] export", "[4/8] open phase", "[5/8] referee",
                  "[6/8] final phase", "[7/8] attacks", "[8/8] boards"):
        assert stage in first
    assert "a late submission is refused: FAILED_PRECONDITION" in first
    # rules v3: a competition on secret evaluation data, not a demo of public data
    assert "private 4 (secret evaluation data" in first and "DEMO, NOT A COMPETITION" not in first
    official = first[first.index("Official board"):first.index("Provisional board")]
    public = first[first.index("Provisional board"):first.index("Paired comparisons")]
    # Every defense is ranked on both boards; the referee's attacks faced all three on both, the
    # attackers' team only on the private split (attacks are keyed by team and name).
    for board in (official, public):
        assert {"natural", "pgd-at", "trades"} <= set(re.findall(r"^\s*\d\s+(\S+)", board, flags=re.M))
        # v3: each reference attack is its own organizer sub-team with the full budget, marked as the referee's
        assert re.search(r"organizer\.hsja/hsja\s+\d+\s+\S+\s+\[\S+ \S+\]\s+3/3\s+organizer\.hsja \(referee\)", board)
        assert re.search(r"organizer\.transfer-pgd/transfer-pgd\s+\d+\s+\S+\s+\[\S+ \S+\]\s+3/3\s+"
                         r"organizer\.transfer-pgd \(referee\)", board)
        assert "Board: " in board and "Ranking final: yes" in board
        assert "Neighbours: paired bootstrap" in board       # section 7 on both boards
    assert re.search(r"attackers/hsja\s+\d+\s+\S+\s+\[\S+ \S+\]\s+3/3\s+attackers", official)
    assert "attackers" not in public
    # the demo's own pairs, on the official board
    assert re.search(r"trades - natural: [+-]\d\.\d{3} \[\S+ \S+\] over 4 samples, (not )?separated", first)
    assert "trades - pgd-at:" in first
    report = (out / "report.html").read_text()
    assert "<table" in report and "trades" in report and "data:image/png;base64" in report
    assert "private split (official)" in report and "public split" in (out / "report-public.html").read_text()
    models = sorted(p.name for p in (out / "models").glob("*.onnx"))
    assert len(models) == 3

    assert main(argv) == 0
    second = capsys.readouterr().out
    assert second.count("(cached)") == 3  # no export again
    assert "[8/8] boards" in second
    assert sorted(p.name for p in (out / "models").glob("*.onnx")) == models
