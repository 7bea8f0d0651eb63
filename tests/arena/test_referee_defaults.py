"""The referee's default attacks and how the organizer's surrogates reach them."""

from __future__ import annotations


from arena.top.referee import DEFAULT_ATTACKS, FALLBACK_ATTACKS, Referee
from attackers.registry import surrogate_parameter


def test_defaults_are_the_strongest_measured_with_surrogates(tmp_path):
    # docs/benchmarks.md, "The referee's attacks": LIVIA with the whole budget; CGBA without surrogates
    assert DEFAULT_ATTACKS == ("livia",) and FALLBACK_ATTACKS == ("cgba",)
    assert surrogate_parameter("livia") == "surrogates" and surrogate_parameter("cgba") is None
    assert Referee(surrogate=tmp_path / "s.pt", log=lambda m: None).names == ["livia"]
    notes: list[str] = []
    assert Referee(log=notes.append).names == ["cgba"] and "instead" in notes[-1]


def test_surrogates_go_to_the_attacks_that_take_them(tmp_path):
    natural, robust = tmp_path / "natural.pt", tmp_path / "robust.pt"
    referee = Referee(attacks=("livia", "transfer-pgd", "cgba"), surrogate=[natural, robust], log=lambda m: None)
    assert referee.names == ["livia", "transfer-pgd", "cgba"]
    assert referee._surrogates_for("livia") == [natural, robust]      # all of them
    assert referee._surrogates_for("transfer-pgd") == natural          # one: the first
    assert referee._surrogates_for("cgba") is None
    assert Referee(surrogate=natural, log=lambda m: None)._surrogates_for("livia") == [natural]


def test_without_surrogates_the_attacks_that_need_them_are_left_out_with_a_note():
    notes: list[str] = []
    referee = Referee(attacks=("livia", "hsja", "transfer-pgd"), log=notes.append)
    assert referee.names == ["hsja"]
    assert len(notes) == 2 and all("left out" in n for n in notes)
