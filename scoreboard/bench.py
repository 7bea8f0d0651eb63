"""`arena bench bootstrap`: the board's section 7 intervals against the straightforward loop.

Ours (`scoreboard.uncertainty`): the resamples drawn once as multiplicities, every row's
resampled means as one matrix product, the percentiles in one call. The reference: the
textbook loop, one resample at a time (draw n indices, take every row's mean over them). Both
compute the intervals of the means of `rows` rows and of the differences of neighbours; the
figure per side is the median over rounds.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from scoreboard import uncertainty

ARGS = {
    "--rows": (int, 10, "rows on the board (defenses)"),
    "--samples": (str, "64,1000", "comma-separated evaluation-set sizes"),
    "--resamples": (int, uncertainty.RESAMPLES, "bootstrap resamples"),
    "--rounds": (int, 3, "measurement rounds"),
}


def add_arguments(parser) -> None:
    for flag, (kind, default, text) in ARGS.items():
        parser.add_argument(flag, type=kind, default=default, help=f"{text} [{default}]")


def reference(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Intervals [rows + rows - 1, 2] by the loop: one resample at a time."""
    rng = np.random.default_rng(seed)
    stacked = np.concatenate([values, values[:-1] - values[1:]])
    n = values.shape[1]
    means = np.empty((stacked.shape[0], resamples))
    for r in range(resamples):
        idx = rng.integers(0, n, size=n)
        means[:, r] = stacked[:, idx].mean(axis=1)
    return np.quantile(means, [0.025, 0.975], axis=1).T


def ours(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    draws = uncertainty.Resamples(values.shape[1], resamples, seed)
    stacked = np.concatenate([values, values[:-1] - values[1:]])  # as the board does: one pass
    return np.array([[i.low, i.high] for i in uncertainty.mean_intervals(stacked, draws)])


def _median_seconds(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(args) -> dict:
    sizes = [int(s) for s in str(args.samples).split(",") if s.strip()]
    if args.rows < 2 or args.resamples < 1 or args.rounds < 1 or not sizes or min(sizes) < 1:
        raise ValueError("need --rows >= 2, --resamples >= 1, --rounds >= 1 and sample sizes >= 1")
    rows, figures = [], {}
    rng = np.random.default_rng(0)
    for n in sizes:
        values = rng.lognormal(0.0, 0.5, size=(args.rows, n))
        a, b = ours(values, args.resamples, 0), reference(values, args.resamples, 0)
        # The same seeded index draws (chunked or one row at a time): the bounds agree to rounding.
        agree = float(np.max(np.abs(a - b)))
        t_ours = _median_seconds(lambda: ours(values, args.resamples, 0), args.rounds)
        t_ref = _median_seconds(lambda: reference(values, args.resamples, 0), args.rounds)
        rows.append([n, args.rows, args.resamples, t_ref * 1e3, t_ours * 1e3, t_ref / t_ours, agree])
        figures[f"ms_ours_n{n}"] = t_ours * 1e3
        figures[f"ratio_n{n}"] = t_ref / t_ours
    figures["ratio"] = figures[f"ratio_n{sizes[-1]}"]
    return {
        "title": f"Board intervals (section 7): {args.rows} rows + {args.rows - 1} neighbour differences, "
                 f"{args.resamples} resamples; median of {args.rounds} rounds",
        "columns": ["samples", "rows", "resamples", "loop ms", "ours ms", "speed-up", "max |bound diff|"],
        "rows": rows,
        "figures": figures,
    }
