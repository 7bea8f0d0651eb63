"""What the board says is true (docs/rules.md sections 6 and 7, rules v3), through a real server and
the command line:

- coverage: a defense attacked on only some samples is provisional (shown with its coverage,
  unranked, in no comparison); a defense nobody attacked is never ranked; the board says whether
  the referee's attacks have covered every defense (until then the ranking is not final);
- an attack is never scored on its own team's defenses (the board marks them), and entries of
  different budgets per sample are never ranked against each other;
- every format (text, JSON, CSV, HTML) names the split and lists disqualified defenses and runs
  with the organizer's reason.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from arena.top.bench import toy_models
from arena.server.leaderboard_wire import from_proto
from tests.arena import test_rules_v2 as rules_v2

PUBLIC, PRIVATE, BUDGET = 20, 6, 40


class Competition(rules_v2.Competition):
    """rules v2's competition at this file's sizes, with a defense of team red as well."""

    def __init__(self, tmp_path) -> None:
        super().__init__(tmp_path, PUBLIC, PRIVATE, BUDGET, seed=11)
        with self.client("red") as red:
            red.submit_defense(toy_models.tiny_cnn(seed=3).SerializeToString(), "red-model")

    def cli(self, capsys, *args: str, who: str = "red") -> str:
        from arena.top.cli import main

        assert main([*args, "--server", self.server.address, "--token", self.tokens[who]]) == 0
        captured = capsys.readouterr()
        self.err = captured.err
        return captured.out


@pytest.fixture
def competition(tmp_path):
    c = Competition(tmp_path)
    yield c
    c.server.stop()


def _referee(competition, tmp_path, splits=("public",)):
    from arena.top.referee import Referee

    with competition.client("organizer") as organizer:
        Referee(attacks=("boundary",), budget=2, splits=splits, state_dir=tmp_path / "referee",
                log=lambda *_: None).run(organizer)


def test_a_partly_attacked_defense_is_provisional_and_one_nobody_attacked_is_never_ranked(
        competition, tmp_path, capsys):
    """A team attacking 8 of 20 samples of one defense leaves it provisional and unranked (before v3,
    the 12 unattacked samples scored the worst case and it ranked with a "separated" verdict); the
    defense nobody attacked is not ranked either."""
    out = competition.cli(capsys, "attack", "--defense", "honest", "--attack", "hsja", "--samples", "8",
                          "--budget", "10", "--no-progress", "--out", str(tmp_path / "hsja.json"))
    # the log says what the session really does (before v3: "20 samples, budget 40 per sample")
    assert "attacking 8 of 20 samples, budget 10 per sample (the arena allows 40)" in competition.err
    data = json.loads(competition.cli(capsys, "leaderboard", "--json"))
    assert data["split"] == "public" and data["board"] == "public split (provisional ranking)"
    assert data["final"] is False
    rows = {d["name"]: d for d in data["defenses"]}
    assert rows["honest"]["rank"] == 0 and rows["honest"]["provisional"] is True
    assert rows["honest"]["covered_samples"] == 8                # every clean image is correct (labels are its own)
    assert rows["honest"]["faced"] == [{"attack": "red/hsja", "budget": BUDGET, "samples": 8}]
    assert rows["red-model"]["rank"] == 0 and rows["red-model"]["attacks_faced"] == []
    assert rows["red-model"]["covered_samples"] < PUBLIC
    assert all(d["separated_from_next"] is None for d in data["defenses"])   # in no comparison
    assert [a["rank"] for a in data["attacks"]] == [0]           # nothing covered: nothing to rank attacks on
    text = competition.cli(capsys, "leaderboard")
    assert "Board: public split (provisional ranking)" in text and "0 ranked" in text
    assert "8/20" in text and "not separated" not in text and "separated" not in text.split("Attacks:")[0]
    assert "the referee's attacks have not covered" in text

    # The referee covers both defenses: both ranked, the ranking final on this split.
    _referee(competition, tmp_path)
    board = from_proto(competition.client("red").get_leaderboard())
    assert [d.rank for d in board.defenses] == [1, 2] and all(not d.provisional for d in board.defenses)
    assert board.referee_covered_all and board.defenses[0].uncertainty.separated_from_next is not None
    ranked = {a.key: a for a in board.attacks}
    assert ranked["organizer.boundary/boundary"].referee and not ranked["red/hsja"].referee
    assert ranked["red/hsja"].rank == 0                          # it covered neither defense


def test_an_attack_is_never_scored_on_its_own_teams_defenses(competition, tmp_path):
    """Red's attack against red's own defense (which could fire on a trigger only red knows) is not
    part of its score: the attack board ranks it over the others' covered defenses and marks its own."""
    _referee(competition, tmp_path)
    with competition.client("red") as red:
        for defense in ("honest", "red-model"):
            run = red.start_run(defense, "probe")
            x, y = red.samples(run.run_id)
            # a huge step towards 1: misclassified by now on every sample, a large distance
            far = np.clip(x + 0.9, 0, 1).astype(np.float32)
            red.predict(run.run_id, far, np.arange(PUBLIC))
            red.submit_adversarials(run.run_id, far, np.arange(PUBLIC))
            red.finish_run(run.run_id)
        board = from_proto(red.get_leaderboard())
    probe = next(a for a in board.attacks if a.key == "red/probe")
    assert probe.own_defenses == ("red-model",)
    assert probe.defenses_listed == 1 and probe.defenses_faced == 1
    assert board.attack_defenses and set(board.attack_defenses) == {"honest", "red-model"}
    referee = next(a for a in board.attacks if a.key == "organizer.boundary/boundary")
    assert referee.defenses_listed == 2 and referee.own_defenses == ()


def test_entries_of_different_budgets_are_never_ranked_against_each_other(competition, tmp_path):
    _referee(competition, tmp_path)                               # at B = 40
    with competition.client("organizer") as organizer:
        organizer.set_budget(25, "a smaller budget from now on")
    with competition.client("red") as red:
        for defense in ("honest", "red-model"):
            run = red.start_run(defense, "late")
            x, _ = red.samples(run.run_id)
            far = np.clip(x + 0.9, 0, 1).astype(np.float32)
            red.submit_adversarials(run.run_id, far, np.arange(PUBLIC))
            red.finish_run(run.run_id)
        board = from_proto(red.get_leaderboard())
    by_key = {a.key: a for a in board.attacks}
    assert (by_key["organizer.boundary/boundary"].budget, by_key["red/late"].budget) == (BUDGET, 25)
    assert by_key["organizer.boundary/boundary"].rank == 1 and by_key["red/late"].rank == 1   # each first of its budget
    assert not any(a.uncertainty.has_next for a in board.attacks)                    # no comparison across


def test_every_format_names_the_split_and_lists_disqualifications(competition, tmp_path, capsys):
    _referee(competition, tmp_path)
    with competition.client("red") as red:
        run = red.start_run("honest", "cheat")
        red.finish_run(run.run_id)
    with competition.client("organizer") as organizer:
        organizer.disqualify("a lookup table of the public split", defense="red-model")
        organizer.disqualify("ran on a leaked token", run_id=run.run_id)
    text = competition.cli(capsys, "leaderboard")
    assert "Board: public split (provisional ranking)" in text and "clean acc (public)" in text
    assert "defense red-model (red): a lookup table of the public split" in text
    assert f"run {run.run_id} (red, cheat against honest): ran on a leaked token" in text
    data = json.loads(competition.cli(capsys, "leaderboard", "--json"))
    assert data["split"] == "public"
    assert {(d["kind"], d["name"], d["reason"]) for d in data["disqualified"]} == {
        ("defense", "red-model", "a lookup table of the public split"), ("run", run.run_id, "ran on a leaked token")}
    defenses = list(csv.DictReader(io.StringIO(competition.cli(capsys, "leaderboard", "--csv"))))
    assert {r["split"] for r in defenses} == {"public"}
    assert [(r["name"], r["status"], r["reason"]) for r in defenses if r["status"] == "disqualified"] == [
        ("red-model", "disqualified", "a lookup table of the public split")]
    attacks = list(csv.DictReader(io.StringIO(competition.cli(capsys, "leaderboard", "--csv", "attacks"))))
    assert [r["reason"] for r in attacks if r["status"] == "disqualified"] == ["ran on a leaked token"]
    html_path = tmp_path / "board.html"
    competition.cli(capsys, "leaderboard", "--html", str(html_path))
    html = html_path.read_text()
    assert "public split (provisional ranking)" in html
    assert "a lookup table of the public split" in html and "ran on a leaked token" in html
