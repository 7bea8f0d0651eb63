"""Section 7: bootstrap intervals against hand-computed cases, the 1/sqrt(n) law, and the board."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scoreboard import uncertainty
from scoreboard.records import DefenseRecord, EvaluationSet, RunRecord
from scoreboard.scoring import leaderboard
from scoreboard.uncertainty import mean_interval, paired_difference, resample_counts


def test_counts_are_resamples_with_replacement():
    counts = resample_counts(7, resamples=2500, seed=3)
    assert counts.shape == (2500, 7)
    assert np.all(counts.sum(axis=1) == 7) and np.all(counts >= 0) and np.all(counts == np.round(counts))
    # Each sample is drawn 7 * 1/7 = 1 time per resample on average, Binomial(7, 1/7) in law.
    assert abs(counts.mean() - 1.0) < 0.02
    assert abs(counts.var() - 7 * (1 / 7) * (6 / 7)) < 0.05
    # Seeded: same seed, same resamples; another seed, others.
    assert np.array_equal(counts, resample_counts(7, resamples=2500, seed=3))
    assert not np.array_equal(counts, resample_counts(7, resamples=2500, seed=4))


def test_constant_sample_has_a_point_interval():
    got = mean_interval([0.7] * 12)
    assert (got.estimate, got.low, got.high) == pytest.approx((0.7, 0.7, 0.7))
    one = mean_interval([2.5])   # one sample: no spread to studentize with, no interval
    assert one.estimate == 2.5 and math.isnan(one.low) and math.isnan(one.high)


def test_the_interval_is_the_bootstrap_t_interval_by_hand():
    """Each resample's t = (mean* - mean) / se*; the interval is mean - q(97.5%) se .. mean - q(2.5%) se,
    and the p-value of "mean 0" is twice the smaller tail of t* beyond mean / se (section 7)."""
    values = np.array([0.3, 1.2, 0.0, 2.2, 0.9, 1.1, 0.4])
    n = values.size
    counts = resample_counts(n, resamples=500, seed=9)
    se = values.std(ddof=1) / math.sqrt(n)
    t = []
    for c in counts:
        sample = np.repeat(values, c.astype(int))
        t.append((sample.mean() - values.mean()) / (sample.std(ddof=1) / math.sqrt(n)))
    q_low, q_high = np.quantile(t, [0.025, 0.975])
    got = uncertainty.mean_intervals(values[None], uncertainty.Resamples(n, 500, 9))[0]
    assert got.low == pytest.approx(values.mean() - q_high * se, abs=1e-9)
    assert got.high == pytest.approx(values.mean() - q_low * se, abs=1e-9)
    t_obs = values.mean() / se
    p = 2 * min((np.sum(np.array(t) >= t_obs) + 1) / 501, (np.sum(np.array(t) <= t_obs) + 1) / 501)
    assert got.p_value == pytest.approx(min(p, 1.0))
    # the allowance widens the upper end only
    wide = uncertainty.mean_intervals(values[None], uncertainty.Resamples(n, 500, 9), upper_allowance=[0.25])[0]
    assert (wide.low, wide.high) == pytest.approx((got.low, got.high + 0.25))


def test_holm_rejects_step_down_and_controls_the_family():
    # m = 4: the smallest p against 0.05/4, the next against 0.05/3, ...; it stops at the first failure.
    assert uncertainty.holm([0.01, 0.04, 0.012, 0.3]) == [True, False, True, False]
    assert uncertainty.holm([0.013, 0.5, 0.5, 0.5]) == [False] * 4          # 0.013 > 0.05 / 4
    assert uncertainty.holm([0.02, math.nan]) == [True, False]              # NaN: not in the family
    assert uncertainty.holm_adjusted([0.01, 0.04, 0.012, 0.3]) == pytest.approx([0.04, 0.08, 0.04, 0.3])


def test_paired_difference_sees_what_two_separate_intervals_cannot():
    # b is a plus a constant 0.1 per sample: the two means' intervals overlap widely (the
    # samples vary by ~1), yet the paired difference is exactly -0.1 in every resample.
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 2, size=30)
    b = a + 0.1
    ia, ib = mean_interval(a), mean_interval(b)
    assert ia.high > ib.low  # overlapping
    diff = paired_difference(a, b)
    assert diff.estimate == pytest.approx(-0.1) and diff.low == pytest.approx(-0.1) and diff.high == pytest.approx(-0.1)
    assert diff.excludes_zero
    # Pure noise between the two: not separated.
    noisy = paired_difference(a, a + rng.normal(0, 0.5, size=30) - 0.0)
    assert noisy.low < 0 < noisy.high and not noisy.excludes_zero
    with pytest.raises(ValueError, match="same length"):
        paired_difference([1.0, 2.0], [1.0])


def test_interval_shrinks_like_one_over_sqrt_n():
    # Standard normal data: the 95% interval of the mean is about 2 * 1.96 / sqrt(n) wide.
    rng = np.random.default_rng(5)
    widths = {}
    for n in (400, 1600, 6400):
        got = mean_interval(rng.normal(0.0, 1.0, size=n), resamples=4000)
        widths[n] = got.high - got.low
        assert widths[n] == pytest.approx(2 * 1.959964 / math.sqrt(n), rel=0.1)
    assert widths[400] / widths[1600] == pytest.approx(2.0, rel=0.1)
    assert widths[1600] / widths[6400] == pytest.approx(2.0, rel=0.1)


def test_chunks_are_the_same_draws_whatever_their_size(monkeypatch):
    whole = resample_counts(50, resamples=300, seed=2)
    monkeypatch.setattr(uncertainty, "_CHUNK_VALUES", 50 * 7)  # chunks of 7 resamples
    assert np.array_equal(resample_counts(50, resamples=300, seed=2), whole)
    values = np.random.default_rng(0).uniform(size=(3, 50))
    assert np.allclose(uncertainty.Resamples(50, 300, 2).means(values), values @ whole.T / 50)


def test_empty_sample_gives_nan():
    got = mean_interval([])
    assert math.isnan(got.estimate) and math.isnan(got.low) and math.isnan(got.high) and not got.excludes_zero


def _board(n, defense_distances, resamples=2000, seed=0):
    evaluation = EvaluationSet(worst_case=np.full(n, 50.0))
    defenses = [DefenseRecord(name, "t", float(i), np.ones(n, dtype=bool)) for i, name in enumerate(defense_distances)]
    runs = [RunRecord(f"r-{name}", name, "hsja", "a", 0.0, True, np.asarray(d, dtype=np.float64))
            for name, d in defense_distances.items()]
    return leaderboard(defenses, runs, evaluation, resamples=resamples, seed=seed)


def test_board_rows_carry_their_intervals_and_neighbour_comparisons():
    rng = np.random.default_rng(2)
    base = rng.uniform(0.5, 1.5, size=60)
    board = _board(60, {"strong": base + 0.5, "close": base + 0.48 + rng.normal(0, 0.3, 60), "weak": base})
    names = [s.name for s in board.defenses]
    assert names[2] == "weak" and set(names[:2]) == {"strong", "close"}
    counts = uncertainty.Resamples(60, 2000, 0)
    cap = max(max(s.distances) for s in board.defenses)   # nothing unbroken: the largest verified distance
    for i, s in enumerate(board.defenses):
        d = np.asarray(s.distances)
        # the upper end allows for one more unbroken sample, at the fill's cap (section 7)
        expected = uncertainty.mean_intervals(d[None], counts, upper_allowance=[(cap - d.mean()) / 60])[0]
        assert (s.uncertainty.mean_ci_low, s.uncertainty.mean_ci_high) == pytest.approx((expected.low, expected.high))
        assert s.uncertainty.mean_ci_low <= s.mean_l2 <= s.uncertainty.mean_ci_high
        if i + 1 < len(board.defenses):
            nxt = np.asarray(board.defenses[i + 1].distances)
            diff = uncertainty.mean_intervals((d - nxt)[None], counts)[0]
            assert s.uncertainty.diff_next == pytest.approx(s.mean_l2 - board.defenses[i + 1].mean_l2)
            assert (s.uncertainty.diff_next_ci_low, s.uncertainty.diff_next_ci_high) == pytest.approx((diff.low, diff.high))
    top, middle, last = board.defenses
    assert top.uncertainty.separated_from_next is False     # 0.02 apart with noise 0.3: noise
    assert middle.uncertainty.separated_from_next is True   # ~0.48 apart
    assert last.uncertainty.separated_from_next is None and not last.uncertainty.has_next
    # The attack's per-sample value is its mean over the defenses; its mean interval brackets the score.
    (attack,) = board.attacks
    assert np.allclose(attack.distances, np.mean([s.distances for s in board.defenses], axis=0))
    assert attack.uncertainty.mean_ci_low < attack.mean_l2 < attack.uncertainty.mean_ci_high
    assert attack.uncertainty.separated_from_next is None


def test_board_is_reproducible_and_seed_dependent():
    rng = np.random.default_rng(7)
    distances = {"a": rng.uniform(0, 2, 25), "b": rng.uniform(0, 2, 25)}
    one, two = _board(25, distances), _board(25, distances)
    assert [s.uncertainty for s in one.defenses] == [s.uncertainty for s in two.defenses]
    other = _board(25, distances, seed=1)
    assert [s.uncertainty for s in one.defenses] != [s.uncertainty for s in other.defenses]


def test_attacks_are_compared_with_the_next_ranked_attack_only():
    n = 20
    evaluation = EvaluationSet(worst_case=np.full(n, 50.0))
    defenses = [DefenseRecord(name, "t", 0.0, np.ones(n, dtype=bool)) for name in ("d1", "d2")]
    d = np.linspace(0.5, 1.5, n)
    runs = [
        RunRecord("strong@d1", "d1", "strong", "a", 0.0, True, d),
        RunRecord("strong@d2", "d2", "strong", "a", 0.0, True, d + 0.2),
        RunRecord("weak@d1", "d1", "weak", "a", 1.0, True, d + 0.3),
        RunRecord("weak@d2", "d2", "weak", "a", 1.0, True, d + 0.5),
        RunRecord("partial@d1", "d1", "partial", "a", 2.0, True, d * 0.1),
    ]
    board = leaderboard(defenses, runs, evaluation, resamples=1000)
    strong, weak, partial = board.attacks
    assert (strong.attack, weak.attack, partial.attack) == ("strong", "weak", "partial")
    # strong - weak = -0.3 on every sample: a point interval that excludes 0.
    assert strong.uncertainty.diff_next == pytest.approx(-0.3)
    assert strong.uncertainty.diff_next_ci_low == pytest.approx(-0.3)
    assert strong.uncertainty.diff_next_ci_high == pytest.approx(-0.3)
    assert strong.uncertainty.separated_from_next is True
    assert weak.uncertainty.separated_from_next is None  # the last ranked attack
    assert partial.uncertainty.separated_from_next is None and partial.uncertainty.mean_ci_low > 0


def test_vectorised_board_intervals_equal_the_one_resample_at_a_time_loop():
    from arena.top.bench.bootstrap import ours, reference

    values = np.random.default_rng(4).lognormal(0.0, 0.5, size=(4, 37))
    # 2500 resamples: the vectorised draw goes in chunks of 1000 rows, the loop one row at a time.
    assert np.allclose(ours(values, 2500, 11), reference(values, 2500, 11), rtol=0, atol=1e-12)


def test_sign_flip_p_value_by_hand():
    # differences (1, 1, 1): a flipped mean is as far from 0 only when all three signs agree: p = 2/8
    (p,) = uncertainty.sign_flip_p_values(np.array([[1.0, 1.0, 1.0]]), count=20000, seed=0)
    assert p == pytest.approx(0.25, abs=0.01)
    # identical rows: every flip ties, p = 1; seeded: the same p again
    assert uncertainty.sign_flip_p_values(np.zeros((1, 5)), count=100) == [1.0]
    d = np.random.default_rng(1).normal(0.3, 1.0, size=(2, 40))
    assert uncertainty.sign_flip_p_values(d, 500, 3) == uncertainty.sign_flip_p_values(d, 500, 3)


def test_small_samples_with_many_zeros_still_get_a_finite_interval():
    """At n = 8 with 6 zeros many resamples have no spread at all; their t must not be infinite
    (the quantiles, and so the interval, would be NaN: the study's 8-sample smoke board was)."""
    got = mean_interval([0.0, 0.0, 0.0, 6.78, 0.0, 0.0, 1.2, 0.0], resamples=4000)
    assert math.isfinite(got.low) and math.isfinite(got.high) and got.low <= got.estimate <= got.high
