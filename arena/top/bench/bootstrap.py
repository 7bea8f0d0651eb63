"""`arena bench bootstrap`: the board's section 7 intervals, their speed and whether they hold.

Speed: ours (`scoreboard.uncertainty`: the resamples drawn once as multiplicities, every row's
resampled means and second moments as matrix products, the studentized quantiles in one call)
against the textbook loop, one resample at a time; the figure per side is the median over rounds.

Whether they hold (docs/rules.md section 7), by simulation through the scoreboard's own
`leaderboard` (so the fill, its cap and the interval's allowance are the board's):
- coverage: boards of 6 defenses drawn alike, n = 80 and 112 samples; per sample d = 0 with
  probability 1 - clean accuracy, else an attack fails with probability f (the board fills it),
  else d ~ lognormal(0, sigma) (median 1, as the demo's boards). The truth is the mean the board
  estimates: acc * ((1 - f) E[D] + f E[fill]), E[fill] by Monte Carlo over the cap. "Realistic" is
  sigma 0.5 and 0.8 (the demo's boards: mean/median of broken samples 1.1-1.2, i.e. sigma ~0.5) and
  clean accuracy 0.8 and 0.95; `coverage_f<100 f>` is the minimum over those and both n.
- family-wise false separation: boards of 6, 10, 20 defenses in tied pairs (the two of a pair
  identically distributed, pairs 1.5x apart), samples shared (a per-sample difficulty); a board
  errs when any tied pair is called separated. Goal <= 0.05 each.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from scoreboard import uncertainty

ARGS = {
    "--rows": (int, 10, "rows on the board (defenses) for the speed comparison"),
    "--samples": (str, "64,1000", "comma-separated evaluation-set sizes for the speed comparison"),
    "--resamples": (int, uncertainty.RESAMPLES, "bootstrap resamples for the speed comparison"),
    "--rounds": (int, 3, "measurement rounds"),
    "--trials": (int, 300, "simulated boards per setting (coverage, family-wise error); 0 skips them"),
    "--sim-resamples": (int, 1000, "bootstrap resamples per simulated board"),
}
FAILURE_RATES = (0.0, 0.005, 0.01, 0.03)
SIZES = (80, 112)
SIGMAS = (0.5, 0.8)
ACCURACIES = (0.8, 0.95)
BOARD_SIZES = (6, 10, 20)


def add_arguments(parser) -> None:
    for flag, (kind, default, text) in ARGS.items():
        parser.add_argument(flag, type=kind, default=default, help=f"{text} [{default}]")


def _studentized(means: np.ndarray, squares: np.ndarray, values: np.ndarray) -> np.ndarray:
    """[rows, 2] bootstrap-t bounds from resampled means and second moments (no allowance)."""
    n = values.shape[1]
    est, se = values.mean(axis=1), values.std(axis=1, ddof=1) / np.sqrt(n)
    se_star = np.sqrt(np.maximum(squares - means**2, 0) * (n / (n - 1)) / n)
    t = (means - est[:, None]) / np.where(se_star > 0, se_star, se[:, None])
    q_low, q_high = np.quantile(t, [0.025, 0.975], axis=1)
    return np.stack([est - q_high * se, est - q_low * se], axis=1)


def reference(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Intervals [rows + rows - 1, 2] by the loop: one resample at a time."""
    rng = np.random.default_rng(seed)
    stacked = np.concatenate([values, values[:-1] - values[1:]])
    n = values.shape[1]
    means = np.empty((stacked.shape[0], resamples))
    squares = np.empty_like(means)
    for r in range(resamples):
        idx = rng.integers(0, n, size=n)
        means[:, r] = stacked[:, idx].mean(axis=1)
        squares[:, r] = (stacked[:, idx] ** 2).mean(axis=1)
    return _studentized(means, squares, stacked)


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


def _records(d: np.ndarray, unbroken: np.ndarray, clean: np.ndarray):
    """A simulated board's records: one finished run per defense, attacking every sample."""
    from scoreboard.records import DefenseRecord, EvaluationSet, RunRecord

    k, n = d.shape
    defenses = [DefenseRecord(f"d{j}", "t", float(j), clean[j]) for j in range(k)]
    runs = [RunRecord(f"r{j}", f"d{j}", "x", "a", 0.0, True, np.where(unbroken[j], np.inf, d[j]))
            for j in range(k)]
    return defenses, runs, EvaluationSet(worst_case=np.full(n, 60.0))


def coverage(n: int, f: float, sigma: float, accuracy: float, trials: int, resamples: int,
             rng: np.random.Generator, k: int = 6) -> float:
    """The fraction of the board's mean intervals (k rows per board) that cover the truth."""
    from scoreboard.scoring import leaderboard

    def draw():
        clean = rng.random((k, n)) < accuracy
        d = rng.lognormal(0.0, sigma, (k, n))
        unbroken = clean & (rng.random((k, n)) < f)
        return d, unbroken, clean

    caps = []
    for _ in range(2000):   # E[fill]: the cap is the largest verified distance on the split
        d, unbroken, clean = draw()
        broken = clean & ~unbroken
        caps.append(min(60.0, d[broken].max()) if broken.any() else 60.0)
    truth = accuracy * ((1 - f) * np.exp(sigma**2 / 2) + f * np.mean(caps))
    hits = total = 0
    for _ in range(trials):
        board = leaderboard(*_records(*draw()), resamples=resamples)
        for row in board.defenses:
            hits += row.uncertainty.mean_ci_low <= truth <= row.uncertainty.mean_ci_high
            total += 1
    return hits / total


def familywise_false_separation(k: int, trials: int, resamples: int, rng: np.random.Generator,
                                n: int = 100) -> float:
    """The fraction of boards of k defenses in tied pairs on which some tied pair is called separated."""
    from scoreboard.scoring import leaderboard

    errors = 0
    for _ in range(trials):
        difficulty = rng.lognormal(0.0, 0.5, n)
        levels = np.repeat(1.5 ** np.arange(k // 2), 2)           # d0 = d1, d2 = d3, ...
        d = difficulty * levels[:, None] * rng.lognormal(0.0, 0.3, (k, n))
        clean = rng.random((k, n)) < 0.9
        unbroken = clean & (rng.random((k, n)) < 0.01)
        board = leaderboard(*_records(d, unbroken, clean), resamples=resamples)
        rows = [s for s in board.defenses if s.rank]
        pair = {f"d{j}": j // 2 for j in range(k)}
        errors += any(a.uncertainty.separated_from_next and pair[a.name] == pair[b.name]
                      for a, b in zip(rows, rows[1:]))
    return errors / trials


def run(args) -> dict:
    sizes = [int(s) for s in str(args.samples).split(",") if s.strip()]
    if args.rows < 2 or args.resamples < 1 or args.rounds < 1 or not sizes or min(sizes) < 2 or args.trials < 0:
        raise ValueError("need --rows >= 2, --resamples >= 1, --rounds >= 1, sample sizes >= 2 and --trials >= 0")
    rows, figures, notes = [], {}, []
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
    if args.trials:
        sim = np.random.default_rng(2018)
        for f in FAILURE_RATES:
            cells = {(n, s, acc): coverage(n, f, s, acc, args.trials, args.sim_resamples, sim)
                     for n in SIZES for s in SIGMAS for acc in ACCURACIES}
            key = f"coverage_f{100 * f:g}"
            figures[key] = min(cells.values())
            notes.append(f"{key}: {figures[key]:.3f} (goal >= 0.93); per (n, sigma, clean acc): "
                         + ", ".join(f"{c}: {v:.3f}" for c, v in cells.items()))
        figures["familywise_false_separation"] = {
            str(k): familywise_false_separation(k, args.trials, args.sim_resamples, sim) for k in BOARD_SIZES}
        notes.append("familywise_false_separation (goal <= 0.05 each): "
                     + ", ".join(f"{k} defenses: {v:.3f}" for k, v in figures["familywise_false_separation"].items()))
        notes.append(f"simulation: {args.trials} boards per setting, {args.sim_resamples} resamples each")
    return {
        "title": f"Board intervals (section 7): {args.rows} rows + {args.rows - 1} neighbour differences, "
                 f"{args.resamples} resamples, bootstrap-t; median of {args.rounds} rounds",
        "columns": ["samples", "rows", "resamples", "loop ms", "ours ms", "speed-up", "max |bound diff|"],
        "rows": rows,
        "figures": figures,
        "notes": notes,
    }
