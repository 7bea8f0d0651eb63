"""The page of `arena study`: methods compared on one dataset, white-box and through the arena.

Pure functions of the measured figures (no torch, no arena): the table, the comparison at matched
clean accuracy, the verdict on each of the four findings of the literature, the figures and the
self-contained HTML page (`templates/study.html.j2`).

The four findings checked:
1. TRADES beats Madry PGD-AT at equal clean accuracy (Zhang et al., ICML 2019).
2. TRADES' accuracy/robustness trade-off grows with beta (Zhang et al., Table 5).
3. MART raises robustness further (Wang et al., ICLR 2020).
4. Robust models' input gradients look like the object, a natural model's like noise
   (Tsipras et al., ICLR 2019), measured as the correlation of |gradient| with the image's edges.

Black-box figures are the arena's per-sample scores d (docs/rules.md section 6), compared with
paired bootstraps over the same samples (section 7).

Seeds (`arena study --seeds K`): each configuration is trained K times; its figures are the means
over the seeds, with the seed spread (standard deviation) beside each. A verdict calls a
difference shown only where it exceeds both the sample uncertainty (the paired interval excludes
0) and the seed uncertainty (a Welch t-test over the seeds' figures at 5%, `seed_separated`); and a
comparison with "the nearest TRADES model" must hold against every TRADES model whose clean
accuracy is within one standard error of the nearest's, so no verdict rests on a tie-break.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scoreboard import plots
from scoreboard.tables import NOT_SEPARATED, SEPARATED, Table, _text_table
from scoreboard.uncertainty import Interval, paired_difference

_TEMPLATES = Path(__file__).resolve().parent / "templates"
METHOD_LABELS = {"natural": "natural", "pgd-at": "PGD-AT", "trades": "TRADES", "mart": "MART"}


@dataclass(frozen=True, eq=False)
class StudyModel:
    """One trained model of the study with its white-box and black-box (arena) figures."""

    name: str                         # its name on the arena's board, e.g. "trades-b3"
    method: str                       # natural | pgd-at | trades | mart
    beta: float | None                # TRADES / MART beta; None for natural and PGD-AT
    clean_accuracy: float             # white-box evaluation images
    pgd_linf_accuracy: float
    pgd_l2_accuracy: float
    whitebox_mean_l2: float           # DDN minimal l2, scored as the arena scores
    edge_correlations: np.ndarray     # per gradient image: corr(|input gradient|, Sobel edges)
    gradient_maps: np.ndarray         # [k,H,W] |input gradient| of the gradient images
    arena_mean_l2: float              # the arena's mean d over its evaluation samples
    arena_ci: tuple[float, float]     # its 95% bootstrap interval
    arena_clean_accuracy: float
    arena_distances: np.ndarray = field(default_factory=lambda: np.zeros(0))  # d per arena sample
    whitebox_samples: int = 0         # images behind clean_accuracy (its standard error)
    seeds: tuple[StudyModel, ...] = ()  # one per training seed when there are several; figures are their means

    def spread(self, attr: str) -> float:
        """The standard deviation of a figure over the seeds (NaN with fewer than two)."""
        values = [getattr(m, attr) for m in self.seeds]
        return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan

    @property
    def clean_se(self) -> float:
        """The standard error of clean_accuracy: sampling over the images, and over the seeds."""
        p, n = self.clean_accuracy, self.whitebox_samples * max(1, len(self.seeds))
        sampling = p * (1 - p) / n if n else math.nan
        seed = self.spread("clean_accuracy") ** 2 / len(self.seeds) if len(self.seeds) > 1 else 0.0
        return math.sqrt(sampling + seed)

    @property
    def label(self) -> str:
        method = METHOD_LABELS.get(self.method, self.method)
        return f"{method} \u03b2={self.beta:g}" if self.method == "trades" and self.beta is not None else method

    @property
    def edge_correlation(self) -> float:
        return float(np.mean(self.edge_correlations)) if len(self.edge_correlations) else math.nan


def aggregate(per_seed: Sequence[StudyModel]) -> StudyModel:
    """One configuration over its seeds: the figures' means (per arena sample and per gradient image
    too, the samples and images being the same), the seeds kept for their spread."""
    from scoreboard.uncertainty import mean_interval

    if len(per_seed) == 1:
        return per_seed[0]
    first = per_seed[0]
    mean = {a: float(np.mean([getattr(m, a) for m in per_seed]))
            for a in ("clean_accuracy", "pgd_linf_accuracy", "pgd_l2_accuracy", "whitebox_mean_l2",
                      "arena_mean_l2", "arena_clean_accuracy")}
    distances = np.mean([m.arena_distances for m in per_seed], axis=0)
    ci = mean_interval(distances)
    return StudyModel(name=first.name.rsplit("-s", 1)[0], method=first.method, beta=first.beta, **mean,
                      edge_correlations=np.mean([m.edge_correlations for m in per_seed], axis=0),
                      gradient_maps=first.gradient_maps, arena_ci=(ci.low, ci.high), arena_distances=distances,
                      whitebox_samples=first.whitebox_samples, seeds=tuple(per_seed))


# Two-sided 97.5% quantiles of Student's t by degrees of freedom (Welch's, rounded down: conservative).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def seed_separated(a: StudyModel, b: StudyModel, attr: str = "arena_mean_l2") -> bool | None:
    """Whether a's and b's figure differ beyond the seed spread (Welch's t-test at 5% over their
    seeds); None when either has a single seed (no seed uncertainty measured)."""
    if len(a.seeds) < 2 or len(b.seeds) < 2:
        return None
    va, vb = a.spread(attr) ** 2 / len(a.seeds), b.spread(attr) ** 2 / len(b.seeds)
    diff = getattr(a, attr) - getattr(b, attr)
    if va + vb == 0:
        return diff != 0
    df = (va + vb) ** 2 / (va**2 / (len(a.seeds) - 1) + vb**2 / (len(b.seeds) - 1))
    t = _T975[max(k for k in _T975 if k <= max(1, int(df)))]
    return abs(diff) > t * math.sqrt(va + vb)


def _seed_note(a: StudyModel, b: StudyModel) -> str:
    sep = seed_separated(a, b)
    if sep is None:
        return " One training seed per model: the seed spread is not measured."
    return (f" Over {len(a.seeds)} and {len(b.seeds)} seeds (sd {a.spread('arena_mean_l2'):.3f}, "
            f"{b.spread('arena_mean_l2'):.3f}): {'beyond' if sep else 'within'} the seed spread.")


@dataclass(frozen=True)
class Finding:
    """One of the papers' findings checked on the study's models: its claim, the figures and the
    verdict."""

    claim: str
    verdict: str        # "reproduced", "not reproduced", or "not shown at this sample size"
    evidence: str


# ---------------------------------------------------------------- tables


def study_table(models: Sequence[StudyModel]) -> Table:
    """Every model's figures; with several seeds, each figure is their mean "± their sd"."""
    header = ["model", "seeds", "clean acc", "PGD-20 linf 8/255", "PGD-20 l2 0.5", "DDN mean l2", "arena mean l2",
              "95% CI", "arena clean acc", "edge corr"]

    def pct(m, attr):
        sd = m.spread(attr)
        return _pct(getattr(m, attr)) + ("" if math.isnan(sd) else f" \u00b1{100 * sd:.1f}")

    def l2(m, attr):
        sd = m.spread(attr)
        return f"{getattr(m, attr):.3f}" + ("" if math.isnan(sd) else f" \u00b1{sd:.3f}")

    rows = [
        [m.label, str(max(1, len(m.seeds))), pct(m, "clean_accuracy"), pct(m, "pgd_linf_accuracy"),
         pct(m, "pgd_l2_accuracy"), l2(m, "whitebox_mean_l2"), l2(m, "arena_mean_l2"),
         f"[{m.arena_ci[0]:.3f}, {m.arena_ci[1]:.3f}]", pct(m, "arena_clean_accuracy"), f"{m.edge_correlation:.3f}"]
        for m in models
    ]
    return Table(header, rows, frozenset({0}))


@dataclass(frozen=True)
class MatchedComparison:
    """A method against TRADES at the method's clean accuracy."""

    model: StudyModel
    trades_interpolated: float | None   # TRADES' arena mean l2 interpolated at the model's clean accuracy
    nearest: StudyModel                 # the TRADES model closest in clean accuracy
    difference: Interval                # paired: nearest TRADES minus the model, per arena sample
    # The other TRADES models within one standard error of the nearest's clean accuracy: a verdict
    # must hold against each of them too (no tie-break decides it).
    ties: tuple[MatchedComparison, ...] = ()


def matched_comparisons(models: Sequence[StudyModel], *, seed: int = 0) -> list[MatchedComparison]:
    """Each non-TRADES robust model against the TRADES curve at its clean accuracy."""
    trades = sorted((m for m in models if m.method == "trades"), key=lambda m: m.clean_accuracy)
    if not trades:
        return []
    accs = np.array([m.clean_accuracy for m in trades])
    l2s = np.array([m.arena_mean_l2 for m in trades])
    out = []
    for m in models:
        if m.method in ("trades", "natural"):
            continue
        inside = accs[0] <= m.clean_accuracy <= accs[-1]
        interpolated = float(np.interp(m.clean_accuracy, accs, l2s)) if inside and len(trades) > 1 else None
        nearest = min(trades, key=lambda t: abs(t.clean_accuracy - m.clean_accuracy))
        diff = paired_difference(nearest.arena_distances, m.arena_distances, seed=seed)
        ties = tuple(
            MatchedComparison(m, interpolated, t, paired_difference(t.arena_distances, m.arena_distances, seed=seed))
            for t in trades if t is not nearest
            and abs(abs(t.clean_accuracy - m.clean_accuracy) - abs(nearest.clean_accuracy - m.clean_accuracy))
            <= math.hypot(t.clean_se, nearest.clean_se))
        out.append(MatchedComparison(m, interpolated, nearest, diff, ties))
    return out


def matched_table(comparisons: Sequence[MatchedComparison]) -> Table:
    header = ["model", "clean acc", "arena mean l2", "TRADES at that clean acc (interpolated)",
              "nearest TRADES", "its clean acc", "its mean l2", "nearest TRADES - model", "95% CI", "verdict"]
    rows = []
    for c in comparisons:
        rows.append([
            c.model.label, _pct(c.model.clean_accuracy), f"{c.model.arena_mean_l2:.3f}",
            "outside the TRADES range" if c.trades_interpolated is None else f"{c.trades_interpolated:.3f}",
            c.nearest.label, _pct(c.nearest.clean_accuracy), f"{c.nearest.arena_mean_l2:.3f}",
            f"{c.difference.estimate:+.3f}", f"[{c.difference.low:+.3f}, {c.difference.high:+.3f}]",
            SEPARATED if c.difference.excludes_zero else NOT_SEPARATED,
        ])
    return Table(header, rows, frozenset({0, 4, 9}))


# ---------------------------------------------------------------- findings


def findings(models: Sequence[StudyModel], *, seed: int = 0) -> list[Finding]:
    by_method: dict[str, list[StudyModel]] = {}
    for m in models:
        by_method.setdefault(m.method, []).append(m)
    matched = {c.model.method: c for c in matched_comparisons(models, seed=seed)}
    out = []

    if "pgd-at" in matched:
        out.append(_robustness_claim("TRADES beats PGD-AT at equal clean accuracy (Zhang et al. 2019)",
                                     matched["pgd-at"], trades_should_win=True))
    trades = sorted(by_method.get("trades", []), key=lambda m: m.beta)
    if len(trades) >= 3:
        rho_clean = _spearman([m.beta for m in trades], [m.clean_accuracy for m in trades])
        rho_l2 = _spearman([m.beta for m in trades], [m.arena_mean_l2 for m in trades])
        lo, hi = trades[0], trades[-1]
        diff = paired_difference(hi.arena_distances, lo.arena_distances, seed=seed)
        ok = rho_clean < 0 and rho_l2 > 0
        verdict = ("reproduced" if ok and diff.low > 0 and seed_separated(hi, lo) is not False else
                   "not shown at this sample size and seed spread" if ok else "not reproduced")
        out.append(Finding(
            "TRADES' trade-off grows with beta: clean accuracy falls, robustness rises (Zhang et al. 2019, Table 5)",
            verdict,
            f"Spearman rank correlation over beta {', '.join(f'{m.beta:g}' for m in trades)}: with clean accuracy "
            f"{rho_clean:+.2f}, with arena mean l2 {rho_l2:+.2f}; {hi.label} - {lo.label}: {diff.estimate:+.3f} "
            f"[{diff.low:+.3f}, {diff.high:+.3f}] ({SEPARATED if diff.excludes_zero else NOT_SEPARATED}); "
            f"clean accuracy {_pct(lo.clean_accuracy)} -> {_pct(hi.clean_accuracy)}." + _seed_note(hi, lo),
        ))
    if "mart" in matched:
        out.append(_robustness_claim("MART raises robustness further (Wang et al. 2020): above TRADES at its "
                                     "clean accuracy", matched["mart"], trades_should_win=False))
    natural = by_method.get("natural", [])
    robust = [m for m in models if m.method != "natural"]
    if natural and robust:
        nat = natural[0]
        parts, wins, separated = [], 0, 0
        for m in robust:
            diff = paired_difference(m.edge_correlations, nat.edge_correlations, seed=seed)
            wins += diff.estimate > 0
            separated += diff.low > 0
            parts.append(f"{m.label} {m.edge_correlation:.3f} ({diff.estimate:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}])")
        verdict = ("reproduced" if separated == len(robust) else
                   "not shown at this sample size" if wins == len(robust) else "not reproduced")
        out.append(Finding(
            "Robust models' input gradients look like the object, a natural model's like noise (Tsipras et al. 2019)",
            verdict,
            f"Correlation of |input gradient| with the image's Sobel edges, mean over {len(nat.edge_correlations)} "
            f"images: natural {nat.edge_correlation:.3f}; " + "; ".join(parts) +
            " (paired over the images, minus natural).",
        ))
    return out


def _robustness_claim(claim: str, c: MatchedComparison, *, trades_should_win: bool) -> Finding:
    """The claim against the nearest TRADES model and each one tied with it in clean accuracy
    (within one standard error): "reproduced" only if it holds against every one of them and beyond
    the seed spread; otherwise not shown."""
    first = _one_claim(claim, c, trades_should_win=trades_should_win)
    verdicts = [first.verdict] + [_one_claim(claim, t, trades_should_win=trades_should_win).verdict for t in c.ties]
    verdict = first.verdict
    if verdict == "reproduced" and (any(v != "reproduced" for v in verdicts)
                                    or seed_separated(c.nearest, c.model) is False):
        verdict = "not shown at this sample size and seed spread"
    evidence = first.evidence
    if c.ties:
        evidence += (" Within one standard error of its clean accuracy: "
                     + "; ".join(f"{t.nearest.label} minus {t.model.label}: {t.difference.estimate:+.3f} "
                                 f"[{t.difference.low:+.3f}, {t.difference.high:+.3f}]" for t in c.ties)
                     + " (the verdict must hold against each).")
    return Finding(claim, verdict, evidence + _seed_note(c.nearest, c.model))


def _one_claim(claim: str, c: MatchedComparison, *, trades_should_win: bool) -> Finding:
    """Inside the TRADES curve's clean-accuracy range: reproduced when the paired interval (nearest
    TRADES minus the model) lies on the claimed side of 0 and the interpolated curve agrees.
    Outside it only dominance decides: the claimed winner must be at least as accurate and more
    robust (separated); a more robust but less accurate winner proves nothing (the trade-off)."""
    sign = 1 if trades_should_win else -1
    winner_acc, loser_acc = ((c.nearest.clean_accuracy, c.model.clean_accuracy) if trades_should_win
                             else (c.model.clean_accuracy, c.nearest.clean_accuracy))
    direction_ok = sign * c.difference.estimate > 0
    separated = sign * c.difference.low > 0 if trades_should_win else sign * c.difference.high > 0
    if c.trades_interpolated is not None:
        direction_ok = direction_ok and sign * (c.trades_interpolated - c.model.arena_mean_l2) > 0
        verdict = "reproduced" if direction_ok and separated else (
            "not shown at this sample size" if direction_ok else "not reproduced")
        where = f"TRADES interpolated {c.trades_interpolated:.3f}"
    else:
        reversed_separated = sign * c.difference.high < 0 if trades_should_win else sign * c.difference.low < 0
        if direction_ok and winner_acc >= loser_acc:
            verdict = "reproduced" if separated else "not shown at this sample size"
        elif reversed_separated and winner_acc <= loser_acc:
            verdict = "not reproduced"  # the claimed loser is at least as accurate and more robust
        else:
            verdict = "not comparable: outside the TRADES curve, on the other side of the trade-off"
        where = "outside the clean-accuracy range of the TRADES curve"
    return Finding(
        claim, verdict,
        f"{c.model.label}: clean {_pct(c.model.clean_accuracy)}, arena mean l2 {c.model.arena_mean_l2:.3f}; {where}; "
        f"nearest {c.nearest.label} (clean {_pct(c.nearest.clean_accuracy)}, {c.nearest.arena_mean_l2:.3f}) minus "
        f"{c.model.label}: {c.difference.estimate:+.3f} [{c.difference.low:+.3f}, {c.difference.high:+.3f}].",
    )


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    ra, rb = _ranks(np.asarray(a, dtype=np.float64)), _ranks(np.asarray(b, dtype=np.float64))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=np.float64)
    for v in np.unique(values):  # ties share their average rank
        tie = values == v
        ranks[tie] = ranks[tie].mean()
    return ranks


# ---------------------------------------------------------------- figures


def tradeoff_figure(models: Sequence[StudyModel]) -> str | None:
    """Clean accuracy against arena mean l2 (95% interval bars; hollow: white-box DDN), the TRADES
    models joined in beta order and labelled with their beta."""
    if not models:
        return None
    fig, ax = plots._figure(7.5, 4.6)
    colours = {"natural": "#7f7f7f", "pgd-at": "#d62728", "trades": "#1f77b4", "mart": "#2ca02c"}
    trades = sorted((m for m in models if m.method == "trades"), key=lambda m: m.beta)
    if len(trades) > 1:
        ax.plot([100 * m.clean_accuracy for m in trades], [m.arena_mean_l2 for m in trades], color=colours["trades"],
                linewidth=1, alpha=0.6)
    seen = set()
    for m in models:
        colour = colours.get(m.method, "#9467bd")
        x = 100 * m.clean_accuracy
        label = METHOD_LABELS.get(m.method, m.method)
        ax.errorbar([x], [m.arena_mean_l2], yerr=[[m.arena_mean_l2 - m.arena_ci[0]], [m.arena_ci[1] - m.arena_mean_l2]],
                    fmt="o", color=colour, capsize=3, label=None if label in seen else f"{label} (arena)")
        ax.scatter([x], [m.whitebox_mean_l2], facecolors="none", edgecolors=colour, s=40,
                   label=None if label in seen else f"{label} (white-box DDN)")
        seen.add(label)
        text = f"\u03b2={m.beta:g}" if m.method == "trades" else label
        ax.annotate(text, (x, m.arena_mean_l2), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel("mean l2 (higher is more robust)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return plots._png(fig)


def gradient_figure(images: np.ndarray, models: Sequence[StudyModel], count: int = 4) -> str | None:
    """The same images (first column) and each model's |input gradient| map (brighter = larger,
    each map scaled to its own maximum)."""
    count = min(count, len(images), *(len(m.gradient_maps) for m in models)) if models else 0
    if count == 0:
        return None
    columns = 1 + len(models)
    fig = Figure(figsize=(1.25 * columns, 1.35 * count + 0.3), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(count, columns, squeeze=False)
    for r in range(count):
        axes[r, 0].imshow(np.clip(np.transpose(images[r], (1, 2, 0)), 0, 1))
        for c, m in enumerate(models, start=1):
            g = m.gradient_maps[r]
            axes[r, c].imshow(g / g.max() if g.max() > 0 else g, cmap="gray", vmin=0, vmax=1)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("image", fontsize=8)
    for c, m in enumerate(models, start=1):
        axes[0, c].set_title(f"{m.label}\nr={m.edge_correlation:.2f}", fontsize=7)
    return plots._png(fig)


# ---------------------------------------------------------------- text and HTML


def render_text(models: Sequence[StudyModel], *, seed: int = 0) -> str:
    out = ["Study: every model white-box (evaluation images) and through the arena (its samples)",
           _text_table(study_table(models))]
    comparisons = matched_comparisons(models, seed=seed)
    if comparisons:
        out += ["", "At matched clean accuracy (paired bootstrap over the arena samples, 95%)",
                _text_table(matched_table(comparisons))]
    for f in findings(models, seed=seed):
        out += ["", f"[{f.verdict}] {f.claim}", f"  {f.evidence}"]
    return "\n".join(out) + "\n"


def render_html(models: Sequence[StudyModel], images: np.ndarray, *, settings: Sequence[tuple[str, str]] = (),
                seed: int = 0, title: str = "Robustness study on the embedded dataset") -> str:
    """The study page as one self-contained HTML document."""
    comparisons = matched_comparisons(models, seed=seed)
    return _template().render(
        title=title,
        settings=list(settings),
        study_table=study_table(models),
        matched_table=matched_table(comparisons) if comparisons else None,
        findings=findings(models, seed=seed),
        tradeoff=tradeoff_figure(models),
        gradients=gradient_figure(images, models),
    )


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("study.html.j2")


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}%"

