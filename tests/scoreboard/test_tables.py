"""Text, JSON and CSV tables: the columns are there and the numbers read back equal."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from scoreboard.scoring import AttackScore, DefenseScore, Leaderboard
from scoreboard.tables import render_csv, render_json, render_text, to_dict


def test_text_has_both_tables(board):
    text = render_text(board)
    status, defenses, defense_pairs, attacks, attack_pairs = text.split("\n\n")
    assert status.splitlines()[0] == "Board: public split (provisional ranking)"
    header = defenses.splitlines()[1]
    for column in ("rank", "defense", "mean l2", "95% CI", "unbroken", "median l2", "clean acc (public)",
                   "robust acc @0.5", "robust acc @1.0", "robust acc @2.0", "coverage", "attacks faced"):
        assert column in header
    first = defenses.splitlines()[3].split()
    top = board.defenses[0]
    u = top.uncertainty
    assert first[:8] == ["1", "trades", "defenders", f"{top.mean_l2:.3f}", f"[{u.mean_ci_low:.3f},",
                         f"{u.mean_ci_high:.3f}]", str(top.unbroken), f"{top.median_l2:.3f}"]
    assert f"{100 * top.clean_accuracy:.1f}%" in first and "40/40" in first
    rows = attacks.splitlines()
    assert rows[1].split() == ["rank", "attack", "budget", "mean", "l2", "95%", "CI", "defenses", "faced", "team",
                               "queries", "own", "defenses"]
    assert rows[-1].split()[:2] == ["-", "late/square"] and "1/3" in rows[-1]  # unranked
    # One comparison per pair of neighbours; the unranked attack is compared with nothing.
    pairs = defense_pairs.splitlines()[3:]
    assert [p.split()[:5] for p in pairs] == [["1.", "trades", "-", "2.", "pgd-at"], ["2.", "pgd-at", "-", "3.", "natural"]]
    assert pairs[0].endswith("not separated at this sample size") and pairs[1].endswith("  separated")
    assert f"{u.diff_next:+.3f}" in pairs[0] and f"[{u.diff_next_ci_low:+.3f}, {u.diff_next_ci_high:+.3f}]" in pairs[0]
    assert len(attack_pairs.strip().splitlines()) == 3 + 2 and "square" not in attack_pairs


def test_text_of_an_empty_board():
    text = render_text(Leaderboard(defenses=(), attacks=(), num_samples=0))
    assert "no accepted defenses yet" in text and "no finished runs yet" in text


def test_json_numbers_are_numbers_and_round_trip(board):
    data = json.loads(render_json(board))
    assert data["num_samples"] == board.num_samples
    assert data["radii"] == [0.5, 1.0, 2.0]
    for row, score in zip(data["defenses"], board.defenses, strict=True):
        assert type(row["rank"]) is int and row["rank"] == score.rank
        for key in ("mean_l2", "median_l2", "clean_accuracy", "submitted_at"):
            assert type(row[key]) is float and row[key] == getattr(score, key)
        assert [(r["eps"], r["accuracy"]) for r in row["robust_accuracy"]] == list(score.robust_accuracy)
        assert row["attacks_faced"] == list(score.attacks_faced)
        _assert_uncertainty_json(row, score.uncertainty)
    for row, attack in zip(data["attacks"], board.attacks, strict=True):
        assert (row["rank"], row["attack"], row["defenses_faced"], row["teams"]) == (
            attack.rank, attack.attack, attack.defenses_faced, list(attack.teams))
        assert type(row["mean_l2"]) is float and row["mean_l2"] == attack.mean_l2
        _assert_uncertainty_json(row, attack.uncertainty)
    assert data["confidence_level"] == 0.95 and data["bootstrap_resamples"] == board.resamples
    # The last defense and the unranked attack have no next row to be compared with.
    assert data["defenses"][-1]["diff_next"] is None and data["defenses"][-1]["separated_from_next"] is None
    assert [r["separated_from_next"] for r in data["defenses"]] == [False, True, None]


def _assert_uncertainty_json(row: dict, u) -> None:
    assert row["mean_ci_low"] == u.mean_ci_low and row["mean_ci_high"] == u.mean_ci_high
    assert row["separated_from_next"] == u.separated_from_next
    if u.has_next:
        assert (row["diff_next"], row["diff_next_ci_low"], row["diff_next_ci_high"]) == (
            u.diff_next, u.diff_next_ci_low, u.diff_next_ci_high)


def test_csv_round_trips_numbers(board):
    rows = list(csv.DictReader(io.StringIO(render_csv(board))))
    assert list(rows[0]) == ["split", "notice", "status", "rank", "name", "team", "mean_l2", "mean_ci_low", "mean_ci_high",
                             "diff_next", "diff_next_ci_low", "diff_next_ci_high", "diff_next_p",
                             "separated_from_next", "unbroken", "covered_samples", "num_samples", "median_l2",
                             "clean_accuracy_public", "robust_accuracy_eps_0.5", "robust_accuracy_eps_1.0",
                             "robust_accuracy_eps_2.0", "attacks_faced", "faced", "submitted_at", "reason"]
    for row, score in zip(rows, board.defenses, strict=True):
        assert (row["split"], row["status"]) == ("public", "ranked")
        assert int(row["rank"]) == score.rank and row["name"] == score.name
        assert float(row["mean_l2"]) == score.mean_l2 and float(row["median_l2"]) == score.median_l2
        assert float(row["clean_accuracy_public"]) == score.clean_accuracy
        assert float(row["robust_accuracy_eps_1.0"]) == score.robust_accuracy_at(1.0)
        assert int(row["unbroken"]) == score.unbroken
        assert row["attacks_faced"].split(";") == list(score.attacks_faced)
        assert float(row["mean_ci_low"]) == score.uncertainty.mean_ci_low
        assert float(row["mean_ci_high"]) == score.uncertainty.mean_ci_high
    assert [r["separated_from_next"] for r in rows] == ["false", "true", ""]
    assert [r["diff_next"] for r in rows][-1] == ""
    assert float(rows[0]["diff_next_ci_low"]) == board.defenses[0].uncertainty.diff_next_ci_low
    rows = list(csv.DictReader(io.StringIO(render_csv(board, "attacks"))))
    for row, attack in zip(rows, board.attacks, strict=True):
        assert (int(row["rank"]), row["attack"], float(row["mean_l2"]), int(row["defenses_faced"])) == (
            attack.rank, attack.attack, attack.mean_l2, attack.defenses_faced)
        assert float(row["mean_ci_high"]) == attack.uncertainty.mean_ci_high


def test_unknown_csv_table():
    with pytest.raises(ValueError, match="unknown table 'runs'"):
        render_csv(Leaderboard(defenses=(), attacks=(), num_samples=0), "runs")


def _board_with(mean_l2: float) -> Leaderboard:
    score = DefenseScore(rank=1, name="d", team="t", submitted_at=0.0, mean_l2=mean_l2, median_l2=math.nan,
                         clean_accuracy=0.5, robust_accuracy=((0.5, math.nan),), attacks_faced=())
    attack = AttackScore(rank=0, attack="a", mean_l2=math.nan, defenses_faced=0, teams=())
    return Leaderboard(defenses=(score,), attacks=(attack,), num_samples=0, radii=(0.5,))


def test_nan_is_null_in_json_and_empty_in_csv():
    board = _board_with(math.nan)
    data = json.loads(render_json(board))
    assert data["defenses"][0]["mean_l2"] is None and data["defenses"][0]["median_l2"] is None
    assert data["defenses"][0]["robust_accuracy"] == [{"eps": 0.5, "accuracy": None}]
    assert data["attacks"][0]["mean_l2"] is None
    row = next(csv.DictReader(io.StringIO(render_csv(board))))
    assert row["mean_l2"] == "" and row["robust_accuracy_eps_0.5"] == ""
    first = next(line for line in render_text(board).splitlines() if line.startswith("   1"))
    assert first.split()[3:9] == ["-", "-", "0", "-", "50.0%", "-"]


def test_infinity_is_explicit_in_csv_and_refused_by_json():
    board = _board_with(math.inf)
    assert next(csv.DictReader(io.StringIO(render_csv(board))))["mean_l2"] == "inf"
    with pytest.raises(ValueError, match="inf"):
        render_json(board)
    assert to_dict(_board_with(1.25))["defenses"][0]["mean_l2"] == 1.25


def test_a_board_notice_is_on_every_format(board):
    """Rules v3 section 4: a competition whose private split comes from public data says so on every
    board; the board carries the notice to text, JSON, CSV and HTML alike."""
    from dataclasses import replace

    from scoreboard.report import render_html

    notice = "demo: the private split is built from public data"
    noted = replace(board, notice=notice)
    assert f"Notice: {notice}" in render_text(noted)
    assert json.loads(render_json(noted))["notice"] == notice
    for table in ("defenses", "attacks"):
        assert {r["notice"] for r in csv.DictReader(io.StringIO(render_csv(noted, table)))} == {notice}
    assert notice in render_html(noted)
