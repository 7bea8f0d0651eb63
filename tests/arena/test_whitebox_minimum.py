"""The white-box minimum of the board's gap: exact on a linear model, checked through ONNX, and the
gap's arithmetic and order verdict."""

from __future__ import annotations

import numpy as np
import pytest

from arena.top.bench.whitebox_minimum import board_gap, format_gap, whitebox_minimum


def linear_model(seed: int = 0):
    """Two classes, logits (0, w . x - b): the minimal l2 adversarial of x is at |w . x - b| / |w|
    (inside the box for images near 0.5 and a small margin)."""
    import torch

    from defenses.export import to_onnx_bytes

    rng = np.random.default_rng(seed)
    w = rng.standard_normal(3 * 64 * 64).astype(np.float32)
    w /= np.linalg.norm(w)
    x = (0.5 + 0.05 * rng.standard_normal((4, 3, 64, 64))).astype(np.float32)
    margins = np.array([0.2, 0.35, 0.5, 0.8])
    b = float(x[0].reshape(-1) @ w) - 0.2   # sample 0 on the positive side by 0.2; the others set below
    x = np.stack([x[i] + ((margins[i] - (x[i].reshape(-1) @ w - b)) * w).reshape(3, 64, 64) for i in range(4)])
    x = x.astype(np.float32)
    layer = torch.nn.Linear(3 * 64 * 64, 2)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[1] = torch.from_numpy(w)
        layer.bias.zero_()
        layer.bias[1] = -b
    model = torch.nn.Sequential(torch.nn.Flatten(), layer).eval()
    exact = (x.reshape(4, -1).astype(np.float64) @ w - b) / np.linalg.norm(w.astype(np.float64))
    return model, to_onnx_bytes(model), x, np.ones(4, dtype=np.int64), exact


def test_whitebox_minimum_is_exact_on_a_linear_model_and_verified_through_onnx():
    model, onnx, x, y, exact = linear_model()
    np.testing.assert_allclose(exact, [0.2, 0.35, 0.5, 0.8], rtol=1e-4)
    best, by_method = whitebox_minimum(model, onnx, x, y, ddn_steps=50, targets=1, pgd_steps=10, pgd_rounds=6)
    assert set(by_method) == {"ddn", "ddn-targeted", "pgd-search"}
    # never below the exact minimum (every distance is of an image the ONNX model misclassifies),
    # within 1% above it (bisection of 12 halvings on the segment)
    assert (best >= exact * (1 - 1e-5)).all(), (best, exact)
    np.testing.assert_allclose(best, exact, rtol=1e-2)
    for d in by_method.values():
        assert (best <= d).all()


def test_whitebox_minimum_scores_clean_errors_zero():
    model, onnx, x, y, exact = linear_model()
    y = y.copy()
    y[2] = 0                      # the model says 1: a clean error counts 0
    best, _ = whitebox_minimum(model, onnx, x, y, ddn_steps=20, targets=0, pgd_rounds=0)
    assert best[2] == 0.0 and (best[[0, 1, 3]] > 0).all()


def test_board_gap_ratios_and_order():
    board = {"natural": np.array([1.0, 2.0, 3.0]), "trades": np.array([2.0, 2.0, 2.0]), "pgd-at": np.array([1.0, 1.0, 1.0])}
    white = {"natural": np.array([0.5, 1.0, 1.5]), "trades": np.array([1.2, 1.2, 1.2]), "pgd-at": np.array([1.2, 0.0, 1.2])}
    gap = board_gap(board, white)
    assert gap["defenses"]["natural"]["ratio"] == pytest.approx(2.0)
    assert gap["defenses"]["pgd-at"]["ratio"] == pytest.approx(1.25)
    assert gap["defenses"]["pgd-at"]["worst_sample_ratio"] == pytest.approx(1 / 1.2)  # white-box 0 left out
    assert gap["board_order"] == ["natural", "trades", "pgd-at"]
    assert gap["whitebox_order"] == ["trades", "natural", "pgd-at"]
    assert not gap["same_order"]
    assert "NOT the same" in format_gap(gap)
    # the one inverted pair (board natural > trades, white-box trades > natural) on 3 samples:
    # a sign-flip test cannot reach 5% with 3 samples (p >= 1/4), so white-box does not separate it
    (inv,) = gap["inversions"]
    assert (inv["board_above"], inv["whitebox_above"]) == ("natural", "trades") and not inv["whitebox_separated"]
    assert "does not separate them" in format_gap(gap)
    assert board_gap({"a": np.ones(2)}, {"a": np.ones(2)})["same_order"]
    with pytest.raises(ValueError, match="same samples"):
        board_gap({"a": np.ones(2)}, {"a": np.ones(3)})


def test_board_gap_says_when_white_box_separates_an_inverted_pair():
    """60 samples: white-box puts b clearly above a (every sample +0.3), the board the other way:
    an inversion white-box separates; c a hair above a white-box (+0.1 and -0.08 in turn): not separated."""
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 1.5, 60)
    white = {"a": a, "b": a + 0.3, "c": a + np.where(np.arange(60) % 2 == 0, 0.1, -0.08)}
    board = {"a": white["a"] * 2.0, "b": white["b"] * 1.2, "c": white["c"] * 1.5}
    gap = board_gap(board, white)
    by_pair = {(i["board_above"], i["whitebox_above"]): i for i in gap["inversions"]}
    assert by_pair[("a", "b")]["whitebox_separated"] and by_pair[("a", "b")]["holm_p"] < 0.05
    assert ("a", "c") in by_pair and not by_pair[("a", "c")]["whitebox_separated"]
    assert "SEPARATES them the other way" in format_gap(gap)
