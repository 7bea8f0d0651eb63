"""Scoring (docs/rules.md section 6) against tables computed by hand.

The hand board's largest verified distance on a correctly classified sample is 4.0 (r2 and r5 on
sample 3 of B, r2 on sample 1 of A), so every unbroken attacked sample scores min(worst, 4.0) = 4.0.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from scoreboard.records import DefenseRecord, EvaluationSet, RunRecord
from scoreboard.scoring import leaderboard

INF = math.inf
WORST = EvaluationSet(worst_case=np.array([10.0, 20.0, 30.0, 40.0]))


def defense(name, clean, submitted_at=0.0, team="blue"):
    return DefenseRecord(name=name, team=team, submitted_at=submitted_at, clean_correct=np.array(clean, dtype=bool))


def run(run_id, defense, attack, distances, started_at=0.0, finished=True, team="red", attacked=None, budget=0):
    return RunRecord(run_id=run_id, defense=defense, attack=attack, team=team, started_at=started_at,
                     finished=finished, distances=np.array(distances, dtype=np.float64),
                     attacked=None if attacked is None else np.array(attacked, dtype=bool), budget=budget)


@pytest.fixture
def hand_board():
    """Two defenses, three attacks; the expected values are worked out in each test."""
    defenses = [
        defense("A", [True, True, True, False], submitted_at=1.0),   # sample 3 misclassified -> 0
        defense("B", [True, True, True, True], submitted_at=2.0),
    ]
    runs = [
        run("r1", "A", "x", [1.0, INF, 3.0, 0.5], started_at=5.0),
        run("r2", "A", "y", [2.0, 4.0, INF, 0.1], started_at=6.0),
        run("r3", "A", "x", [0.01] * 4, started_at=0.5, finished=False),  # unfinished: ignored
        run("r4", "B", "x", [INF, 1.0, INF, 3.0], started_at=8.0),
        run("r5", "B", "x", [0.5, 2.0, INF, 4.0], started_at=9.0),        # x ran twice on B: min
        run("r6", "ghost", "y", [0.0] * 4, started_at=1.0),                # unknown defense: ignored
        run("r7", "B", "z", [1.0, 1.0, INF, INF], started_at=1.0, team="green"),
    ]
    return leaderboard(defenses, runs, WORST)


def test_defense_table_by_hand(hand_board):
    b, a = hand_board.defenses
    # B: d = [min(inf,.5,1), min(1,2,1), fill min(30, 4), min(3,4,inf)] = [.5, 1, 4, 3]
    assert (b.rank, b.name) == (1, "B")
    assert b.distances == (0.5, 1.0, 4.0, 3.0)
    assert b.mean_l2 == pytest.approx(2.125)
    assert b.unbroken == 1 and a.unbroken == 0
    assert hand_board.fill_cap == 4.0
    assert b.median_l2 == pytest.approx(2.0)          # even count: mean of 1 and 3
    assert b.clean_accuracy == 1.0
    assert b.attacks_faced == ("green/z", "red/x")     # attacks are keyed by team and name
    # A: d = [min(1,2), min(inf,4), min(3,inf), clean misclassified 0] = [1, 4, 3, 0]; r3 unfinished
    assert (a.rank, a.name) == (2, "A")
    assert a.distances == (1.0, 4.0, 3.0, 0.0)
    assert a.mean_l2 == pytest.approx(2.0)
    assert a.median_l2 == pytest.approx(2.0)          # sorted [0, 1, 3, 4]
    assert a.clean_accuracy == 0.75
    assert a.attacks_faced == ("red/x", "red/y")              # r3 is unfinished, r6 is against an unknown defense


def test_best_runs_name_the_run_that_found_d(hand_board):
    b, a = hand_board.defenses
    assert a.best_runs == ("r1", "r2", "r1", "")      # "" for the misclassified clean image
    assert b.best_runs == ("r5", "r4", "", "r4")      # an exact tie (1.0) goes to the earlier run in the list


def test_robust_accuracy_is_strictly_greater(hand_board):
    b, a = hand_board.defenses
    # A: d = [1, 4, 3, 0]: > 0.5 -> 3/4; > 1.0 -> 2/4 (d = 1.0 is not robust at 1.0); > 2.0 -> 2/4
    assert a.robust_accuracy == ((0.5, 0.75), (1.0, 0.5), (2.0, 0.5))
    # B: d = [.5, 1, 4, 3]: > 0.5 -> 3/4 (d = 0.5 is not robust at 0.5); > 1 -> 2/4; > 2 -> 2/4
    assert b.robust_accuracy == ((0.5, 0.75), (1.0, 0.5), (2.0, 0.5))
    assert a.robust_accuracy_at(1.0) == 0.5
    assert math.isnan(a.robust_accuracy_at(3.0))


def test_custom_radii(hand_board):
    board = leaderboard(
        [defense("A", [True, True, True, False])],
        [run("r1", "A", "x", [1.0, INF, 3.0, 0.5])],
        WORST,
        radii=(0.0, 3.0),
    )
    # d = [1, fill min(20, 3), 3, 0]: the largest verified distance is 3 (0.5 is on a misclassified sample)
    assert board.radii == (0.0, 3.0)
    assert board.defenses[0].robust_accuracy == ((0.0, 0.75), (3.0, 0.0))


def test_attack_table_by_hand(hand_board):
    x, z, y = hand_board.attacks
    # x vs A (r1 only): [1, fill 4, 3, 0] -> 2.0; x vs B (min of r4, r5): [.5, 1, fill 4, 3] -> 2.125
    assert (x.rank, x.attack) == (1, "x")
    assert x.per_defense == (("B", pytest.approx(2.125)), ("A", pytest.approx(2.0)))
    assert x.mean_l2 == pytest.approx(2.0625)
    assert x.defenses_faced == 2
    assert x.first_started_at == 5.0                  # r3 (0.5) is unfinished and does not count
    # y faced A only (its run on "ghost" is ignored): [2, 4, fill 4, 0] -> 2.5; unranked
    assert (y.rank, y.attack, y.defenses_faced) == (0, "y", 1)
    assert y.mean_l2 == pytest.approx(2.5)
    assert not y.ranked
    # z faced B only: [1, 1, fill 4, fill 4] -> 2.5; unranked, listed before y (same count and mean,
    # earlier first run)
    assert (z.rank, z.attack, z.defenses_faced, z.teams) == (0, "z", 1, ("green",))
    assert z.mean_l2 == pytest.approx(2.5)


def test_no_adversarial_found_scores_the_capped_fill():
    board = leaderboard([defense("A", [True, True, False, True])], [run("r", "A", "x", [INF, 2.0, INF, INF])], WORST)
    # the fill is min(worst case, the largest distance verified on the split: 2.0)
    assert board.defenses[0].distances == (2.0, 2.0, 0.0, 2.0)
    assert board.defenses[0].unbroken == 2
    assert board.attacks[0].mean_l2 == pytest.approx(1.5)


def test_with_nothing_verified_on_the_split_the_fill_is_the_worst_case():
    board = leaderboard([defense("A", [True, True, False, True])], [run("r", "A", "x", [INF] * 4)], WORST)
    assert board.defenses[0].distances == (10.0, 20.0, 0.0, 40.0) and math.isnan(board.fill_cap)


def test_an_unbroken_sample_weighs_no_more_than_the_largest_verified_distance():
    """Making attacks fail on one input gains no more than being robust there at the split's largest
    verified distance (docs/rules.md section 6)."""
    honest = run("h", "honest", "x", [1.0, 1.0, 1.0, 1.0])
    trick = run("t", "trick", "x", [1.0, 1.0, 1.0, INF])       # one input where the attack fails
    robust = run("r", "robust", "x", [1.0, 1.0, 1.0, 3.0])     # robust there at 3.0, the split's largest
    board = leaderboard([defense("honest", [True] * 4), defense("trick", [True] * 4), defense("robust", [True] * 4)],
                        [honest, trick, robust], WORST)
    scores = {s.name: s.mean_l2 for s in board.defenses}
    assert scores["trick"] == scores["robust"] == pytest.approx(1.5)   # not (1+1+1+40)/4 = 10.75


def test_clean_misclassified_scores_zero_even_if_an_attack_reports_a_distance():
    board = leaderboard([defense("A", [False] * 4)], [run("r", "A", "x", [5.0, 6.0, INF, 1.0])], WORST)
    score = board.defenses[0]
    assert score.distances == (0.0,) * 4
    assert (score.mean_l2, score.median_l2, score.clean_accuracy) == (0.0, 0.0, 0.0)
    assert score.robust_accuracy == ((0.5, 0.0), (1.0, 0.0), (2.0, 0.0))
    assert board.attacks[0].mean_l2 == 0.0


def test_a_defense_nobody_attacked_is_never_ranked():
    """No runs: no d but the misclassified clean images' 0; both defenses provisional, unranked."""
    board = leaderboard([defense("A", [True, True, True, False]), defense("B", [True] * 4)], [], WORST)
    a, b = board.defenses
    assert (a.rank, b.rank) == (0, 0) and a.provisional and b.provisional
    assert (a.covered_samples, b.covered_samples) == (1, 0)
    assert math.isnan(b.mean_l2) and a.mean_l2 == 0.0
    assert all(math.isnan(v) for v in b.distances) and a.distances[3] == 0.0
    assert b.attacks_faced == () and b.best_runs == ("",) * 4
    assert not b.uncertainty.has_next and board.attacks == ()


def test_unattacked_samples_have_no_d_and_leave_the_defense_provisional():
    """A run that attacked 2 of 4 samples: the other two have no d (not the worst case); the defense
    is provisional, shown with its coverage and its mean over the attacked samples, and compared
    with nothing, even when a covered defense scores lower."""
    partial = run("p", "A", "x", [1.0, INF, INF, INF], attacked=[True, True, False, False])
    full = run("f", "B", "x", [0.5, 0.5, 0.5, 0.5])
    board = leaderboard([defense("A", [True] * 4), defense("B", [True] * 4)], [partial, full], WORST)
    b, a = board.defenses
    assert (b.rank, a.rank) == (1, 0) and a.provisional and not b.provisional
    assert a.covered_samples == 2 and a.unbroken == 1
    assert a.distances[:2] == (1.0, 1.0) and all(math.isnan(v) for v in a.distances[2:])
    assert a.mean_l2 == pytest.approx(1.0)
    assert not b.uncertainty.has_next and not a.uncertainty.has_next
    # the attack did not cover A: it is scored on B alone (and unranked: A is not on the attack board)
    assert board.attack_defenses == ("B",)


def test_only_unfinished_runs_count_as_no_runs():
    board = leaderboard([defense("A", [True] * 4)], [run("r", "A", "x", [0.1] * 4, finished=False)], WORST)
    assert board.defenses[0].rank == 0 and math.isnan(board.defenses[0].mean_l2)
    assert board.attacks == ()


def test_no_defenses():
    board = leaderboard([], [run("r", "ghost", "x", [1.0] * 4)], WORST)
    assert board.defenses == () and board.attacks == ()
    assert board.num_samples == 4


def test_empty_evaluation_set_gives_undefined_scores():
    board = leaderboard([defense("A", []), defense("B", [], submitted_at=-1.0)],
                        [run("r", "A", "x", [])], EvaluationSet(worst_case=np.zeros(0)))
    assert board.num_samples == 0
    assert [s.name for s in board.defenses] == ["B", "A"]  # all NaN: earlier submission first
    assert all(math.isnan(s.mean_l2) and math.isnan(s.median_l2) for s in board.defenses)
    assert math.isnan(board.defenses[0].robust_accuracy_at(0.5))
    assert board.attacks[0].rank == 0  # x faced A only


def test_defense_ties_break_on_the_earlier_submission():
    # Same records apart from the name and submission time; alphabetical order would say the opposite.
    early = defense("zeta", [True] * 4, submitted_at=3.0)
    late = defense("alpha", [True] * 4, submitted_at=5.0)
    runs = [run("r1", "zeta", "x", [1.0, 2.0, 3.0, 4.0]), run("r2", "alpha", "x", [1.0, 2.0, 3.0, 4.0])]
    for order in ([early, late], [late, early]):
        board = leaderboard(order, runs, WORST)
        assert [(s.rank, s.name) for s in board.defenses] == [(1, "zeta"), (2, "alpha")]


def test_attack_ties_break_on_the_earliest_run():
    defenses = [defense("A", [True] * 4), defense("B", [True] * 4)]
    runs = [
        run("a1", "A", "alpha", [1.0] * 4, started_at=50.0),
        run("a2", "B", "alpha", [2.0] * 4, started_at=10.0),  # alpha's earliest run: 10
        run("o1", "A", "omega", [2.0] * 4, started_at=5.0),   # omega's earliest run: 5
        run("o2", "B", "omega", [1.0] * 4, started_at=60.0),
    ]
    for order in (runs, runs[::-1]):
        board = leaderboard(defenses, order, WORST)
        assert [(a.rank, a.attack, a.mean_l2) for a in board.attacks] == [(1, "omega", 1.5), (2, "alpha", 1.5)]


def test_ranked_attacks_before_unranked_even_when_weaker():
    defenses = [defense("A", [True] * 4), defense("B", [True] * 4)]
    runs = [
        run("w1", "A", "weak", [9.0] * 4), run("w2", "B", "weak", [9.0] * 4),
        run("s1", "A", "strong-but-partial", [0.1] * 4),
    ]
    board = leaderboard(defenses, runs, WORST)
    assert [(a.rank, a.attack) for a in board.attacks] == [(1, "weak"), (0, "strong-but-partial")]


def test_mismatched_run_length_is_rejected_naming_the_run():
    with pytest.raises(ValueError, match="run 'short-run'.*3.*4 samples"):
        leaderboard([defense("A", [True] * 4)], [run("short-run", "A", "x", [1.0, 2.0, 3.0])], WORST)


def test_mismatched_clean_length_is_rejected_naming_the_defense():
    with pytest.raises(ValueError, match="defense 'A'"):
        leaderboard([defense("A", [True] * 5)], [], WORST)


@pytest.mark.parametrize(
    "defenses, runs, message",
    [
        ([defense("A", [True] * 4), defense("A", [True] * 4)], [], "duplicate defense names: \\['A'\\]"),
        ([defense("A", [True] * 4)], [run("r", "A", "x", [1.0] * 4), run("r", "A", "y", [1.0] * 4)], "duplicate run ids"),
        ([defense("A", [True] * 4)], [run("r", "A", "x", [1.0, math.nan, 1.0, 1.0])], "run 'r'.*NaN"),
        ([defense("A", [True] * 4)], [run("r", "A", "x", [1.0, -1.0, 1.0, 1.0])], "run 'r'.*non-negative"),
    ],
)
def test_bad_records_are_rejected(defenses, runs, message):
    with pytest.raises(ValueError, match=message):
        leaderboard(defenses, runs, WORST)


def test_bad_radii_are_rejected():
    with pytest.raises(ValueError, match="radii"):
        leaderboard([], [], WORST, radii=(0.5, math.inf))


def test_clean_correct_as_zero_one_integers_is_accepted():
    record = DefenseRecord(name="A", team="t", submitted_at=0.0, clean_correct=np.array([1, 1, 0, 1], dtype=np.uint8))
    runs = [run("r", "A", "x", [INF, 1.0, INF, INF])]
    assert leaderboard([record], runs, WORST).defenses[0].distances == (1.0, 1.0, 0.0, 1.0)


def test_synthetic_arena_ranks_trades_first(board):
    assert [s.name for s in board.defenses] == ["trades", "pgd-at", "natural"]
    assert [a.rank for a in board.attacks] == [1, 2, 3, 0]
    assert board.attacks[-1].attack == "square"


def test_an_attack_is_not_scored_on_its_own_teams_defenses():
    """Red's attack breaks red's own defense at 0.01 (a trigger only red knows): that cell is not
    part of its score, and the entry is ranked over the other defenses alone (docs/rules.md section 6)."""
    defenses = [defense("honest", [True] * 4, team="blue"), defense("trigger", [True] * 4, team="red")]
    runs = [run("r1", "honest", "hsja", [2.0] * 4, team="red"), run("r2", "trigger", "hsja", [0.01] * 4, team="red"),
            run("g1", "honest", "hsja", [1.5] * 4, team="green"), run("g2", "trigger", "hsja", [1.5] * 4, team="green")]
    board = leaderboard(defenses, runs, WORST)
    red, green = (next(a for a in board.attacks if a.team == t) for t in ("red", "green"))
    assert red.own_defenses == ("trigger",) and red.per_defense == (("honest", 2.0),) and red.mean_l2 == 2.0
    assert (red.defenses_faced, red.defenses_listed) == (1, 1)
    assert green.rank == 1 and red.rank == 2       # before v3 red ranked first at (2.0 + 0.01) / 2


def test_entries_rank_within_their_budget_and_the_referee_is_marked():
    defenses = [defense("A", [True] * 4)]
    runs = [run("a", "A", "hsja", [1.0] * 4, team="org", budget=500), run("b", "A", "hsja", [2.0] * 4, budget=1000),
            run("c", "A", "boundary", [3.0] * 4, budget=1000, team="green")]
    board = leaderboard(defenses, runs, WORST, referee_teams={"org"})
    assert [(a.key, a.budget, a.rank, a.referee) for a in board.attacks] == [
        ("red/hsja", 1000, 1, False), ("green/boundary", 1000, 2, False), ("org/hsja", 500, 1, True)]
    # compared within the 1000 group only
    assert board.attacks[0].uncertainty.has_next and not board.attacks[1].uncertainty.has_next
    assert not board.attacks[2].uncertainty.has_next
    assert board.defenses[0].faced[0].budget in (500, 1000)


def test_the_organizer_chooses_the_attack_boards_defenses():
    defenses = [defense("A", [True] * 4), defense("B", [True] * 4, submitted_at=1.0)]
    runs = [run("a", "A", "x", [3.0] * 4), run("b", "B", "y", [1.0] * 4, team="blue")]
    every = leaderboard(defenses, runs, WORST)
    assert every.attack_defenses == ("A", "B") and all(a.rank == 0 for a in every.attacks)
    top = leaderboard(defenses, runs, WORST, attack_defenses=["A"], attack_set_rule="the top 1 of the public board")
    assert top.attack_defenses == ("A",) and top.attack_set_rule == "the top 1 of the public board"
    assert [(a.key, a.rank) for a in top.attacks] == [("red/x", 1), ("blue/y", 0)]


def test_neighbour_verdicts_are_holm_corrected():
    """A board's verdicts come from Holm-adjusted p-values: a pair whose own interval excludes 0 can
    still be "not separated" once the board's other comparisons are counted (section 7)."""
    rng = np.random.default_rng(3)
    n = 60
    base = rng.lognormal(0.0, 0.5, n)
    names = [f"d{i}" for i in range(8)]
    defenses = [defense(name, [True] * n, submitted_at=float(i)) for i, name in enumerate(names)]
    # neighbours differ by ~0.06 with noise: some raw intervals exclude 0, fewer Holm verdicts separate
    runs = [run(f"r{i}", name, "x", base * (1 + 0.06 * i) + rng.normal(0, 0.05, n)) for i, name in enumerate(names)]
    board = leaderboard(defenses, runs, EvaluationSet(worst_case=np.full(n, 50.0)), resamples=2000)
    rows = [s.uncertainty for s in board.defenses if s.uncertainty.has_next]
    raw = [u.diff_next_ci_low > 0 or u.diff_next_ci_high < 0 for u in rows]
    assert all(u.diff_next_p >= 0 for u in rows)
    assert sum(u.separated for u in rows) <= sum(raw)
    from scoreboard.uncertainty import holm
    # "separated" needs the Holm-adjusted sign-flip p at 5% and the pair's own interval excluding 0
    for u, excludes in zip(rows, raw):
        assert u.separated == (u.diff_next_p <= 0.05 and excludes)
    assert holm([0.01, 0.04, 0.012, 0.3]) == [True, False, True, False]
