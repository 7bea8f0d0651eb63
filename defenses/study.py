"""The white-box half of `arena study`: each trained model's clean accuracy, PGD accuracy and
minimal l2 (`defenses.whitebox.evaluate`), and its input-gradient maps with their edge
correlation (`defenses.saliency`), on the same evaluation images for every model.

The black-box half (an arena, the reference attacks) is in `arena.top.cli.study`; the page in
`scoreboard.study`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from defenses.checkpoint import load_checkpoint
from defenses.device import prepare_model, resolve_device
from defenses.saliency import edge_correlation, gradient_magnitude, input_gradients, sobel_edges
from defenses.whitebox import evaluate


@dataclass(frozen=True)
class WhiteBox:
    """One model's white-box figures on the study's evaluation images."""

    clean_accuracy: float
    pgd_linf_accuracy: float       # PGD-`steps` at the study's l_inf radius
    pgd_l2_accuracy: float         # PGD-`steps` at the study's l2 radius
    mean_l2: float                 # DDN minimal l2, scored as the arena scores (0 / worst case)
    edge_correlations: np.ndarray  # per gradient image: corr(|grad|, Sobel edges of the image)
    gradient_maps: np.ndarray      # float32 [m,H,W]: |grad| summed over channels, of the first m of them

    @property
    def edge_correlation(self) -> float:
        return float(np.mean(self.edge_correlations)) if len(self.edge_correlations) else float("nan")


def whitebox_study(
    folder: Path,
    x: np.ndarray,
    y: np.ndarray,
    *,
    gradient_images: int = 8,
    maps_kept: int = 8,
    pgd_steps: int = 20,
    ddn_steps: int = 100,
    linf_eps: float = 8 / 255,
    l2_eps: float = 0.5,
    device: str | None = None,
) -> WhiteBox:
    """Evaluates the checkpoint in `folder` on (x, y); the first `gradient_images` images are the
    ones whose input gradients are measured (the same for every model), and the maps of the first
    `maps_kept` of them are kept for the page."""
    model, _ = load_checkpoint(folder)
    model = prepare_model(model, resolve_device(device))
    report = evaluate(model, torch.from_numpy(x), torch.from_numpy(y), linf_eps=linf_eps, l2_eps=l2_eps,
                      pgd_steps=pgd_steps, ddn_steps=ddn_steps)
    k = min(gradient_images, len(x))
    maps = gradient_magnitude(input_gradients(model, x[:k], y[:k]))
    correlations = edge_correlation(maps, sobel_edges(x[:k]))
    return WhiteBox(
        clean_accuracy=report["clean_accuracy"],
        pgd_linf_accuracy=report[f"pgd{pgd_steps}_linf_accuracy"],
        pgd_l2_accuracy=report[f"pgd{pgd_steps}_l2_accuracy"],
        mean_l2=report["mean_l2"],
        edge_correlations=correlations,
        gradient_maps=maps[:maps_kept].astype(np.float32),
    )
