"""The report's figures, as PNG data URIs (matplotlib, Agg canvas, no pyplot global state).

Each figure function takes a Leaderboard and returns a `data:image/png;base64,...` string,
or None when there is nothing to draw (no defenses, or no per-sample distances because the
leaderboard came over the wire). Colours follow the defense's rank, the same in every figure.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imsave

from scoreboard.scoring import DefenseScore, Leaderboard

DPI = 110
_PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)


def defense_colour(index: int) -> str:
    """The colour of the defense at position `index` of the ranking (0-based)."""
    return _PALETTE[index % len(_PALETTE)]


def robust_accuracy_curves(board: Leaderboard) -> str | None:
    """Robust accuracy (fraction of samples with d > eps) against eps, one step curve per defense.

    The x axis ends just past the largest distance an attack actually found: beyond it each
    curve is flat at the fraction of samples no attack broke (scored at the capped fill).
    """
    scored = _with_distances(board)
    if not scored:
        return None
    found = [
        d for _, s in scored for d, run in zip(s.distances, s.best_runs) if run
    ]
    x_max = max([*found, *board.radii, 0.1]) * 1.15
    fig, ax = _figure(7.5, 4.2)
    for i, s in scored:
        d = np.sort(np.asarray(s.distances))
        xs = np.concatenate([[0.0], d[d < x_max], [x_max]])
        ys = 1.0 - np.searchsorted(d, xs, side="right") / d.size
        ax.step(xs, 100 * ys, where="post", color=defense_colour(i), linewidth=2, label=f"{s.rank}. {s.name}")
    for eps, height in zip(board.radii, _label_heights(board.radii, x_max)):
        ax.axvline(eps, color="#999999", linestyle=":", linewidth=1)
        ax.annotate(f"eps {eps}", (eps, height), fontsize=8, color="#666666", ha="center", va="bottom",
                    annotation_clip=False)
    ax.set_xlim(0, x_max)
    ax.set_ylim(0, 100)
    ax.set_xlabel("eps (l2, [0, 1] pixel scale)")
    ax.set_ylabel("robust accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=9, frameon=True)
    return _png(fig)


def _label_heights(radii, x_max: float, width: float = 0.09) -> list[float]:
    """The y of each eps label (percent): a label closer than `width` of the axis to the one before
    it goes one line higher, so that neighbouring labels never overlap."""
    heights: list[float] = []
    previous = None
    for eps in sorted(radii):
        close = previous is not None and (eps - previous) < width * x_max
        heights.append(heights[-1] + 5.0 if close and heights else 101.0)
        previous = eps
    order = sorted(range(len(radii)), key=lambda i: radii[i])
    out = [0.0] * len(radii)
    for rank, i in enumerate(order):
        out[i] = heights[rank]
    return out


def distance_distribution(board: Leaderboard) -> str | None:
    """Box plot of the per-sample d of each defense, with every sample drawn as a point.

    Symmetric-log x axis: it shows 0 (clean image misclassified), small adversarial
    distances and the worst case (no adversarial found) on one scale.
    """
    scored = _with_distances(board)
    if not scored:
        return None
    fig, ax = _figure(7.5, 0.9 + 0.55 * len(scored))
    rng = np.random.default_rng(0)  # jitter only; fixed so the report is reproducible
    data = [np.asarray(s.distances) for _, s in scored]
    positions = np.arange(len(scored), 0, -1)  # rank 1 on top
    ax.boxplot(data, positions=positions, orientation="horizontal", widths=0.5, showfliers=False,
               medianprops={"color": "black"})
    for (i, _), d, y in zip(scored, data, positions):
        ax.scatter(d, y + rng.uniform(-0.18, 0.18, d.size), s=9, alpha=0.6, color=defense_colour(i),
                   edgecolors="none")
        ax.scatter([d.mean()], [y], marker="D", s=36, color="white", edgecolors="black", zorder=3)
    for (_, s), y in zip(scored, positions):  # the mean's 95% bootstrap interval (docs/rules.md section 7)
        low, high = s.uncertainty.mean_ci_low, s.uncertainty.mean_ci_high
        if np.isfinite(low) and np.isfinite(high):
            ax.plot([low, high], [y + 0.3, y + 0.3], color="black", linewidth=2, solid_capstyle="butt", zorder=3)
            ax.plot([low, low, np.nan, high, high], [y + 0.24, y + 0.36, np.nan, y + 0.24, y + 0.36], color="black",
                    linewidth=1, zorder=3)
    ax.set_yticks(positions, [f"{s.rank}. {s.name}" for _, s in scored])
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlim(0, max(float(np.max(np.concatenate(data))), 1.0) * 1.4)
    ax.set_xlabel("d per sample (l2; 0 = clean misclassified; right-most = worst case)\n"
                  "diamond = mean, bar above it = the mean's 95% interval")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def tradeoff(board: Leaderboard) -> str | None:
    """Clean accuracy against mean l2 for every defense (the robustness/accuracy trade-off), the
    mean with its 95% bootstrap interval as a vertical bar where the board has one."""
    if not board.defenses:
        return None
    fig, ax = _figure(6.5, 4.2)
    for i, s in enumerate(board.defenses):
        low, high = s.uncertainty.mean_ci_low, s.uncertainty.mean_ci_high
        if np.isfinite(low) and np.isfinite(high) and np.isfinite(s.mean_l2):
            ax.errorbar([100 * s.clean_accuracy], [s.mean_l2], yerr=[[s.mean_l2 - low], [high - s.mean_l2]],
                        color=defense_colour(i), capsize=4, linewidth=1.5, zorder=2)
        ax.scatter([100 * s.clean_accuracy], [s.mean_l2], s=60, color=defense_colour(i), zorder=3)
        ax.annotate(s.name, (100 * s.clean_accuracy, s.mean_l2), textcoords="offset points", xytext=(6, 4),
                    fontsize=9)
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel("mean l2 (higher is more robust)")
    ax.margins(x=0.2, y=0.2)
    ax.grid(alpha=0.3)
    return _png(fig)


def image_data_uri(image: np.ndarray, scale: int = 3) -> str:
    """A float [3,H,W] image in [0, 1] as a PNG data URI, upscaled by nearest neighbour."""
    hwc = np.clip(np.transpose(np.asarray(image, dtype=np.float32), (1, 2, 0)), 0.0, 1.0)
    hwc = hwc.repeat(scale, axis=0).repeat(scale, axis=1)
    buffer = io.BytesIO()
    imsave(buffer, (hwc * 255 + 0.5).astype(np.uint8), format="png")
    return _data_uri(buffer.getvalue())


def amplified_perturbation(clean: np.ndarray, adversarial: np.ndarray) -> tuple[np.ndarray, float]:
    """(adversarial - clean) mapped to [0, 1] around mid-grey, and the amplification factor used.

    The largest absolute change maps to 0 or 1; the factor is how much the change was scaled.
    """
    delta = np.asarray(adversarial, dtype=np.float32) - np.asarray(clean, dtype=np.float32)
    peak = float(np.max(np.abs(delta))) if delta.size else 0.0
    factor = 0.5 / peak if peak > 0 else 1.0
    return 0.5 + factor * delta, factor


def _with_distances(board: Leaderboard) -> list[tuple[int, DefenseScore]]:
    """The ranked defenses with per-sample detail: a provisional one is in no comparison (section 6)."""
    return [(i, s) for i, s in enumerate(board.defenses) if s.distances and s.rank]


def _figure(width: float, height: float) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return _data_uri(buffer.getvalue())


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
