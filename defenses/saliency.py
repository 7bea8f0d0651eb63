"""Input-gradient maps and how object-like they are (Tsipras et al., ICLR 2019: the loss gradients
of robust models look like the object, a natural model's look like noise).

The measure: per image, the Pearson correlation between the gradient magnitude (summed over
colour channels) and the image's own edges (Sobel magnitude of its grey levels). A gradient that
follows the object's outline scores near the edges' own structure; noise scores near 0.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from defenses.modes import frozen
from defenses.tensors import model_device

_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def input_gradients(model: nn.Module, x, y) -> np.ndarray:
    """d CE(model(x), y) / d x per image, float32 [N,3,H,W] (model in eval mode, weights frozen)."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32).to(model_device(model))
    y = torch.as_tensor(np.asarray(y), dtype=torch.int64).to(x.device)
    model.eval()
    with frozen(model), torch.enable_grad():
        x = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x).float(), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad.detach().cpu().numpy()


def gradient_magnitude(grads: np.ndarray) -> np.ndarray:
    """|gradient| summed over the colour channels: [N,3,H,W] -> [N,H,W]."""
    return np.abs(np.asarray(grads, dtype=np.float64)).sum(axis=1)


def sobel_edges(images: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of the grey levels (channel mean) of [N,3,H,W] images: [N,H,W].

    Edge-replicated borders, so a flat image has no edges anywhere."""
    grey = np.asarray(images, dtype=np.float64).mean(axis=1)
    padded = np.pad(grey, ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = grey.shape[1:]
    gx = np.zeros_like(grey)
    gy = np.zeros_like(grey)
    for i in range(3):
        for j in range(3):
            window = padded[:, i : i + h, j : j + w]
            gx += _SOBEL_X[i, j] * window
            gy += _SOBEL_X.T[i, j] * window
    return np.hypot(gx, gy)


def edge_correlation(magnitudes: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per-image Pearson correlation of two [N,H,W] maps (0 where either map is constant)."""
    a = np.asarray(magnitudes, dtype=np.float64).reshape(len(magnitudes), -1)
    b = np.asarray(edges, dtype=np.float64).reshape(len(edges), -1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.where(denom > 0, (a * b).sum(axis=1) / np.where(denom > 0, denom, 1.0), 0.0)
