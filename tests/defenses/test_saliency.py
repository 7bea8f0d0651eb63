"""Input gradients, Sobel edges and their correlation, against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from defenses.saliency import edge_correlation, gradient_magnitude, input_gradients, sobel_edges


def test_sobel_of_a_vertical_step():
    image = np.zeros((1, 3, 6, 6))
    image[..., 3:] = 1.0
    edges = sobel_edges(image)[0]
    # Columns 2 and 3 see the step in their 3x3 window: |(1 + 2 + 1) * 1| = 4; the rest see none.
    expected = np.zeros((6, 6))
    expected[:, 2:4] = 4.0
    assert np.allclose(edges, expected)
    assert np.allclose(sobel_edges(np.full((2, 3, 5, 5), 0.3)), 0.0)  # a flat image has no edges


def test_sobel_uses_the_grey_level_and_is_rotation_consistent():
    rng = np.random.default_rng(0)
    grey = rng.uniform(size=(1, 1, 8, 8))
    image = np.repeat(grey, 3, axis=1)
    edges = sobel_edges(image)
    rotated = sobel_edges(np.ascontiguousarray(np.swapaxes(image, 2, 3)))
    assert np.allclose(edges, np.swapaxes(rotated, 1, 2))  # transposing the image transposes its edges


def test_edge_correlation_is_pearson_per_image():
    rng = np.random.default_rng(1)
    a = rng.uniform(size=(3, 4, 4))
    b = np.stack([a[0], 2 - 3 * a[1], np.full((4, 4), 0.5)])
    got = edge_correlation(a, b)
    assert got[0] == pytest.approx(1.0) and got[1] == pytest.approx(-1.0) and got[2] == 0.0
    c = rng.uniform(size=(1, 4, 4))
    assert edge_correlation(a[:1], c)[0] == pytest.approx(np.corrcoef(a[0].ravel(), c[0].ravel())[0, 1])


def test_input_gradient_of_a_linear_model_is_the_formula():
    # CE(Wx, y) has gradient W^T (softmax(Wx) - onehot(y)) with respect to x.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3, bias=False))
    x = np.random.default_rng(2).uniform(size=(2, 3, 2, 2)).astype(np.float32)
    y = np.array([0, 2])
    w = model[1].weight.detach().numpy().astype(np.float64)
    logits = x.reshape(2, -1) @ w.T
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = (p - np.eye(3)[y]) @ w
    got = input_gradients(model, x, y)
    assert got.shape == x.shape and np.allclose(got.reshape(2, -1), expected, atol=1e-6)
    assert np.allclose(gradient_magnitude(got), np.abs(expected.reshape(2, 3, 2, 2)).sum(axis=1), atol=1e-6)
    assert all(p.requires_grad for p in model.parameters()) and model[1].weight.grad is None
