"""The study page's arithmetic: matched clean accuracy, the findings' verdicts, the page itself."""

from __future__ import annotations

import numpy as np
import pytest

from scoreboard.study import StudyModel, _spearman, findings, matched_comparisons, render_html, render_text

N = 200  # arena samples
K = 12   # gradient images


def _model(name, method, beta, clean, l2, edge, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(99).uniform(0.2, 2.0, N)  # shared per-sample difficulty (paired)
    d = base * l2 / base.mean() + rng.normal(0, noise, N)
    edges = np.full(K, edge) + np.random.default_rng(seed + 1).normal(0, 0.02, K)
    return StudyModel(
        name=name, method=method, beta=beta, clean_accuracy=clean, pgd_linf_accuracy=0.3, pgd_l2_accuracy=0.6,
        whitebox_mean_l2=l2 * 0.8, edge_correlations=edges, gradient_maps=np.random.default_rng(seed).uniform(size=(K, 8, 8)),
        arena_mean_l2=float(d.mean()), arena_ci=(float(d.mean()) - 0.05, float(d.mean()) + 0.05),
        arena_clean_accuracy=clean, arena_distances=d,
    )


def _paper_like(pgd_l2=0.80, mart_l2=1.10):
    return [
        _model("natural", "natural", None, 0.97, 0.55, 0.10, seed=1),
        _model("pgd-at", "pgd-at", None, 0.84, pgd_l2, 0.40, seed=2),
        _model("mart", "mart", 6.0, 0.83, mart_l2, 0.45, seed=3),
        _model("trades-b1", "trades", 1.0, 0.90, 0.80, 0.35, seed=4),
        _model("trades", "trades", 6.0, 0.80, 1.00, 0.42, seed=5),
        _model("trades-b10", "trades", 10.0, 0.75, 1.05, 0.44, seed=6),
    ]


def test_matched_comparison_interpolates_the_trades_curve():
    models = _paper_like()
    comparisons = {c.model.name: c for c in matched_comparisons(models)}
    assert set(comparisons) == {"pgd-at", "mart"}
    c = comparisons["pgd-at"]
    t1, t6 = models[3], models[4]
    # PGD-AT at 0.84 sits 40% of the way from TRADES beta 6 (0.80) to beta 1 (0.90).
    assert c.trades_interpolated == pytest.approx(t6.arena_mean_l2 + 0.4 * (t1.arena_mean_l2 - t6.arena_mean_l2))
    assert c.nearest.name == "trades"  # beta 6, 0.04 away
    assert c.difference.estimate == pytest.approx(t6.arena_mean_l2 - models[1].arena_mean_l2)
    assert comparisons["mart"].nearest.name == "trades"


def test_paper_like_numbers_reproduce_every_finding():
    verdicts = [f.verdict for f in findings(_paper_like())]
    assert verdicts == ["reproduced"] * 4


def test_a_pgd_at_above_the_curve_is_reported_as_not_reproduced():
    got = findings(_paper_like(pgd_l2=1.3, mart_l2=0.7))
    assert got[0].claim.startswith("TRADES beats PGD-AT") and got[0].verdict == "not reproduced"
    assert got[2].claim.startswith("MART") and got[2].verdict == "not reproduced"
    assert got[1].verdict == "reproduced" and got[3].verdict == "reproduced"


def test_spearman_against_hand_values():
    assert _spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert _spearman([0.5, 1, 3, 6, 10], [1, 2, 3, 5, 4]) == pytest.approx(0.9)  # 1 - 6*2/(5*24)
    assert _spearman([1, 2, 3], [1, 1, 1]) == 0.0


def test_text_and_page():
    models = _paper_like()
    text = render_text(models)
    assert "TRADES \u03b2=10" in text and "At matched clean accuracy" in text and text.count("[reproduced]") == 4
    html = render_html(models, np.random.default_rng(0).uniform(size=(K, 3, 8, 8)), settings=[("natural", "x")])
    assert html.startswith("<!DOCTYPE html>") and html.count("data:image/png;base64") == 2
    assert "matched-table" in html and "reproduced" in html


def test_outside_the_trades_range_only_dominance_counts():
    # PGD-AT less accurate than every TRADES model: more robust than the nearest proves nothing,
    # less robust means TRADES dominates it.
    def verdict(pgd_clean, pgd_l2, mart_clean, mart_l2):
        models = _paper_like()
        models[1] = _model("pgd-at", "pgd-at", None, pgd_clean, pgd_l2, 0.40, seed=2)
        models[2] = _model("mart", "mart", 6.0, mart_clean, mart_l2, 0.45, seed=3)
        got = {f.claim.split()[0]: f.verdict for f in findings(models)}
        return got["TRADES"], got["MART"]

    dominated = verdict(0.70, 0.80, 0.70, 0.80)   # both below TRADES beta 10 (0.75, 1.05) in both
    assert dominated == ("reproduced", "not reproduced")
    other_side = verdict(0.70, 1.30, 0.70, 1.30)  # more robust, less accurate: the trade-off
    assert other_side == ("not comparable: outside the TRADES curve, on the other side of the trade-off",) * 2
    # More accurate than every TRADES model and more robust than the nearest: MART dominates.
    assert verdict(0.70, 0.80, 0.95, 1.10)[1] == "reproduced"
