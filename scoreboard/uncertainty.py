"""ARENA_RULES section 7 as pure seeded functions: bootstrap intervals and paired comparisons.

Every mean on a board gets a 95% percentile-bootstrap interval over the evaluation samples, and
each pair of neighbours on a board a paired bootstrap of their per-sample difference: where that
interval contains 0 the two are "not separated at this sample size".

One set of resamples is drawn per board (a seeded numpy Generator) and reused for every row, so
the interval of a mean and the interval of a difference come from the same resampled sample sets,
and a board is reproducible. A resample is held as its multiplicities (how often each sample was
drawn), so the means of every row over every resample are one matrix product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95
SEED = 0
_CHUNK = 1_000  # resamples drawn at a time: bounds the int64 index buffer to 8 KB per sample


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap interval [low, high] (NaN when there are no samples)."""

    estimate: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        """The interval lies strictly on one side of 0: the two compared rows are separated."""
        return self.low > 0 or self.high < 0


NAN_INTERVAL = Interval(math.nan, math.nan, math.nan)


def resample_counts(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """Multiplicities of `resamples` bootstrap resamples of n samples, float64 [resamples, n].

    Row r counts how often each sample was drawn when n indices were drawn uniformly with
    replacement (seeded numpy Generator); every row sums to n.
    """
    if n < 0 or resamples < 1:
        raise ValueError(f"need n >= 0 and resamples >= 1, got n={n}, resamples={resamples}")
    rng = np.random.default_rng(seed)
    counts = np.zeros((resamples, n), dtype=np.float64)
    if n == 0:
        return counts
    for start in range(0, resamples, _CHUNK):
        rows = min(_CHUNK, resamples - start)
        indices = rng.integers(0, n, size=(rows, n))
        flat = (np.arange(rows)[:, None] * n + indices).ravel()
        counts[start : start + rows] = np.bincount(flat, minlength=rows * n).reshape(rows, n)
    return counts


def resampled_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The mean of each row of values [rows, n] over each resample of counts [R, n]: [rows, R]."""
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    n = counts.shape[1]
    if values.shape[1] != n:
        raise ValueError(f"values have {values.shape[1]} samples, the resamples {n}")
    return values @ counts.T / n


def mean_intervals(values: np.ndarray, counts: np.ndarray, level: float = LEVEL) -> list[Interval]:
    """The percentile interval of the mean of each row of values [rows, n]."""
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    if values.shape[1] == 0:
        return [NAN_INTERVAL] * values.shape[0]
    lows, highs = _percentiles(resampled_means(values, counts), level)
    return [Interval(float(v.mean()), float(lo), float(hi)) for v, lo, hi in zip(values, lows, highs)]


def neighbour_differences(values: np.ndarray, counts: np.ndarray, level: float = LEVEL) -> list[Interval]:
    """Paired intervals of row i minus row i+1 (rows in board order), per-sample differences."""
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    if values.shape[0] < 2:
        return []
    return mean_intervals(values[:-1] - values[1:], counts, level)


def _percentiles(means: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    tail = (1 - level) / 2
    lows, highs = np.quantile(means, [tail, 1 - tail], axis=1)
    return lows, highs


def mean_interval(values, *, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> Interval:
    """The bootstrap interval of the mean of one 1-D sample (its own resamples)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    return mean_intervals(values[None], resample_counts(values.size, resamples, seed), level)[0]


def paired_difference(a, b, *, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> Interval:
    """The paired bootstrap interval of mean(a - b) for two rows over the same samples."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {a.size} and {b.size}")
    return mean_interval(a - b, resamples=resamples, seed=seed, level=level)
