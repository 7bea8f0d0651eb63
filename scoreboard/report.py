"""The self-contained HTML report: both tables, the figures of `scoreboard.plots`, a gallery.

`render_html(board, gallery=...)` returns one HTML document with every image embedded as a
PNG data URI (no network, no files beside it). The template is `templates/report.html.j2`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from scoreboard import plots
from scoreboard.scoring import DefenseScore, Leaderboard
from scoreboard.tables import attack_set_text, attack_table, comparison_table, defense_table, status_lines

GALLERY_SCALE = 2  # 64x64 images are drawn at 128x128, nearest neighbour (two samples per row)

_TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True, eq=False)
class GalleryItem:
    """One evaluation sample of one defense, as shown in the report's gallery."""

    defense: str
    sample_index: int
    clean: np.ndarray                  # float32 [3,H,W] (64x64 in the arena), values in [0, 1]
    adversarial: np.ndarray | None     # same shape; None when no adversarial was found
    true_label: str                    # the true label's name
    adversarial_label: str | None      # the defense's label for the adversarial; None with no adversarial
    distance: float                    # l2 of (adversarial - clean); inf with no adversarial
    attack: str = ""                   # the attack that found it, when known

    def __post_init__(self) -> None:
        clean = np.asarray(self.clean)
        if clean.ndim != 3 or clean.shape[0] != 3:
            raise ValueError(f"gallery item {self.defense}/{self.sample_index}: clean must be [3,H,W], got {clean.shape}")
        if self.adversarial is not None and np.shape(self.adversarial) != clean.shape:
            raise ValueError(
                f"gallery item {self.defense}/{self.sample_index}: adversarial has shape "
                f"{np.shape(self.adversarial)}, clean has {clean.shape}"
            )


def pick_gallery_samples(score: DefenseScore, k: int = 4) -> tuple[int, ...]:
    """Up to k sample indices worth showing for a defense.

    Samples whose adversarial an attack found, spread from the smallest distance to the
    largest (evenly over their ranks); if fewer than k were found, samples no attack broke
    fill the rest. Misclassified clean images (d = 0) are never picked. Needs the per-sample
    detail of a locally computed leaderboard.
    """
    found = sorted((d, i) for i, (d, run) in enumerate(zip(score.distances, score.best_runs)) if run)
    if len(found) > k:
        found = [found[round(j * (len(found) - 1) / max(k - 1, 1))] for j in range(k)]
    picked = [i for _, i in found]
    unbroken = [i for i, (d, run) in enumerate(zip(score.distances, score.best_runs)) if not run and d > 0]
    return tuple(picked + unbroken[: k - len(picked)])


def render_html(
    board: Leaderboard,
    *,
    gallery: Sequence[GalleryItem] = (),
    title: str = "Robustness arena leaderboard",
) -> str:
    """The report as one self-contained HTML document."""
    attacks = attack_table(board)
    defenses = defense_table(board)
    # The list of attacks faced (with budgets) lives in the attack table's matrix: here only how many,
    # so that a row stays one line in a 1400 px window.
    for row, s in zip(defenses.rows, board.defenses):
        row[-1] = str(len(s.faced) or len(s.attacks_faced))
    # The attack x defense matrix, when the per-defense detail is there.
    if any(a.per_defense for a in board.attacks):
        names = [s.name for s in board.defenses]
        attacks.header.extend(f"vs {n}" for n in names)
        for row, a in zip(attacks.rows, board.attacks):
            means = dict(a.per_defense)
            row.extend(f"{means[n]:.3f}" if n in means else "-" for n in names)
    return _template().render(
        title=title,
        board=board,
        defense_table=defenses,
        status=status_lines(board),
        attack_set=attack_set_text(board),
        defense_pairs=comparison_table(board, "defenses"),
        attack_table=attacks,
        attack_pairs=comparison_table(board, "attacks"),
        colours=[plots.defense_colour(i) for i in range(len(board.defenses))],
        figures=[
            ("Robust accuracy against eps", plots.robust_accuracy_curves(board),
             "Fraction of evaluation samples whose d exceeds eps (dotted lines: the table's radii); "
             "a curve stays flat at the share of samples no attack broke."),
            ("Distribution of d per defense", plots.distance_distribution(board),
             "Every sample's d; the box spans the middle half, the line is the median."),
            ("Clean accuracy against mean l2", plots.tradeoff(board),
             "The robustness/accuracy trade-off: up is more robust, right is more accurate; bars are the "
             "means' 95% bootstrap intervals."),
        ],
        gallery=_gallery_groups(board, gallery),
        scale=GALLERY_SCALE,
    )


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2")


def _gallery_groups(board: Leaderboard, items: Sequence[GalleryItem]) -> list[dict]:
    """Gallery items grouped per defense, in rank order (defenses not on the board last)."""
    order = {s.name: s.rank for s in board.defenses}
    groups: dict[str, list[dict]] = {}
    for item in items:
        groups.setdefault(item.defense, []).append(_gallery_entry(item))
    names = sorted(groups, key=lambda n: (order.get(n, math.inf), n))
    return [{"defense": n, "items": sorted(groups[n], key=lambda e: e["sample_index"])} for n in names]


def _gallery_entry(item: GalleryItem) -> dict:
    entry = {
        "sample_index": item.sample_index,
        "true_label": item.true_label,
        "clean": plots.image_data_uri(item.clean, GALLERY_SCALE),
        "adversarial": None,
    }
    if item.adversarial is not None:
        perturbation, factor = plots.amplified_perturbation(item.clean, item.adversarial)
        entry.update(
            adversarial=plots.image_data_uri(item.adversarial, GALLERY_SCALE),
            perturbation=plots.image_data_uri(perturbation, GALLERY_SCALE),
            factor=f"{factor:.0f}" if factor >= 10 else f"{factor:.1f}",
            adversarial_label=item.adversarial_label or "?",
            distance=f"{item.distance:.3f}",
            attack=item.attack,
        )
    return entry
