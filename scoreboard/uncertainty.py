"""docs/rules.md section 7 as pure seeded functions: bootstrap intervals and paired comparisons.

Every mean on a board gets a 95% percentile-bootstrap interval over the evaluation samples, and
each pair of neighbours on a board a paired bootstrap of their per-sample difference: where that
interval contains 0 the two are "not separated at this sample size".

One set of resamples is drawn per board (a seeded numpy Generator) and reused for every row, so
the interval of a mean and the interval of a difference come from the same resampled sample sets,
and a board is reproducible. A resample is held as its multiplicities (how often each sample was
drawn), so the means of every row over a chunk of resamples are one matrix product; the chunks are
drawn again on each use (the same seeded draws) so memory stays bounded whatever the sample count.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95
SEED = 0
_CHUNK_VALUES = 2_000_000  # multiplicities held at a time (16 MB of float64)


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


class Resamples:
    """`count` seeded bootstrap resamples of n samples (n indices drawn uniformly with replacement
    each), as multiplicities drawn in chunks; every use draws the very same resamples again."""

    def __init__(self, n: int, count: int = RESAMPLES, seed: int = SEED) -> None:
        if n < 0 or count < 1:
            raise ValueError(f"need n >= 0 and resamples >= 1, got n={n}, resamples={count}")
        self.n, self.count, self.seed = n, count, seed

    def chunks(self) -> Iterator[np.ndarray]:
        """Multiplicities, float64 [rows, n] per chunk, `count` rows in all; every row sums to n.
        (Drawing in chunks or one resample at a time gives the same index stream.)"""
        rng = np.random.default_rng(self.seed)
        step = max(1, min(self.count, _CHUNK_VALUES // max(self.n, 1)))
        for start in range(0, self.count, step):
            rows = min(step, self.count - start)
            if self.n == 0:
                yield np.zeros((rows, 0))
                continue
            indices = rng.integers(0, self.n, size=(rows, self.n))
            flat = (np.arange(rows)[:, None] * self.n + indices).ravel()
            yield np.bincount(flat, minlength=rows * self.n).reshape(rows, self.n).astype(np.float64)

    def means(self, values: np.ndarray) -> np.ndarray:
        """The mean of each row of values [rows, n] over each resample: [rows, count]."""
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))
        if values.shape[1] != self.n:
            raise ValueError(f"values have {values.shape[1]} samples, the resamples {self.n}")
        if self.n == 0:
            return np.full((values.shape[0], self.count), np.nan)
        return np.concatenate([values @ c.T for c in self.chunks()], axis=1) / self.n


def resample_counts(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """All multiplicities of `Resamples(n, resamples, seed)` at once, float64 [resamples, n]."""
    return np.concatenate(list(Resamples(n, resamples, seed).chunks()))


def mean_intervals(values: np.ndarray, resamples: Resamples, level: float = LEVEL) -> list[Interval]:
    """The percentile interval of the mean of each row of values [rows, n]."""
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    if values.shape[1] == 0:
        return [NAN_INTERVAL] * values.shape[0]
    lows, highs = _percentiles(resamples.means(values), level)
    return [Interval(float(v.mean()), float(lo), float(hi)) for v, lo, hi in zip(values, lows, highs)]


def _percentiles(means: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    tail = (1 - level) / 2
    lows, highs = np.quantile(means, [tail, 1 - tail], axis=1)
    return lows, highs


def mean_interval(values, *, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> Interval:
    """The bootstrap interval of the mean of one 1-D sample (its own resamples)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    return mean_intervals(values[None], Resamples(values.size, resamples, seed), level)[0]


def paired_difference(a, b, *, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> Interval:
    """The paired bootstrap interval of mean(a - b) for two rows over the same samples."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {a.size} and {b.size}")
    return mean_interval(a - b, resamples=resamples, seed=seed, level=level)
