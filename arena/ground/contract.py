"""The competition contract in code (docs/rules.md, sections 2, 4, 5 and 6): numpy only.

Every package that needs a rule imports it from here: the server, the client, the attackers, the
defenses' evaluation and the scoreboard. Nothing here imports anything else of the project, so
any of them may depend on it.

- Images (section 2): float32, channels-first `IMAGE_SHAPE`, every value finite and in `BOUNDS`.
- Distance (section 2): l2 over all 12,288 values in [0, 1] scale, accumulated in float64
  (`l2_distances` is the reference; the attackers' numba kernels are tested equal to it).
- Budget (section 4): `DEFAULT_BUDGET` images classified per sample.
- Labels (section 5): a defense's label is the argmax of its logits; logits that are not all
  finite are a failure of the defense, labelled `FAILED_LABEL`, which is never a true label, so
  the image counts as misclassified.
- Score (section 6): per sample, 0 if the clean image is misclassified, else the smallest
  verified distance, else the worst case ||max(x, 1 - x)||_2 (`sample_scores`).
"""

from __future__ import annotations

import enum

import numpy as np

IMAGE_SHAPE: tuple[int, int, int] = (3, 64, 64)
IMAGE_VALUES = 3 * 64 * 64            # 12,288
IMAGE_BYTES = IMAGE_VALUES * 4        # 49,152 (float32)
BOUNDS: tuple[float, float] = (0.0, 1.0)
DEFAULT_BUDGET = 1000
# Serving (section 3): a defense only ever runs on batches of power-of-two sizes up to this one.
DEFAULT_MAX_CHUNK = 64
FAILED_LABEL = -1


class DefenseStatus(str, enum.Enum):
    """A submission's verdict, as stored (the value) and as sent (`arena.v1.DefenseStatus`)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"


# ---------------------------------------------------------------- the value check (section 2)

# Non-negative float32 values order like their bit patterns read as unsigned integers; NaN, +inf,
# every negative number and everything above 1.0 has a pattern above that of 1.0.
_ONE_BITS = int(np.array(1.0, dtype=np.float32).view(np.uint32))


def in_unit_interval(values: np.ndarray) -> bool:
    """True when every value of a float32 array is finite and in [0, 1]. It is on every hot path
    (each Predict, each oracle query, each file read), so it costs one pass over the values' bits;
    only an array that fails it (or holds -0.0, whose pattern is above 1.0's but which equals 0)
    gets the exact second look."""
    values = np.ascontiguousarray(values)
    if values.dtype != np.float32:
        raise TypeError(f"in_unit_interval takes float32 values, got {values.dtype}")
    if values.size == 0 or int(values.reshape(-1).view(np.uint32).max()) <= _ONE_BITS:
        return True
    low, high = values.min(), values.max()
    return bool(low >= 0.0 and high <= 1.0)  # False for NaN too


def within_bounds(values: np.ndarray, bounds: tuple[float, float] = BOUNDS) -> bool:
    """True when every value is finite and within `bounds` (the arena's are [0, 1]: the fast path)."""
    values = np.ascontiguousarray(values)
    if values.size == 0:
        return True
    if tuple(bounds) == BOUNDS and values.dtype == np.float32:
        return in_unit_interval(values)
    lo, hi = bounds
    return bool(lo <= values.min() and values.max() <= hi)  # False for NaN too


def first_bad_image(images: np.ndarray) -> tuple[int, str] | None:
    """(index, what is wrong) of the first image [N, ...] breaking the value rule, or None."""
    flat = np.ascontiguousarray(images).reshape(images.shape[0], -1)
    not_finite = ~np.isfinite(flat).all(axis=1)
    if not_finite.any():
        return int(np.argmax(not_finite)), "holds NaN or Inf values"
    outside = ((flat < 0.0) | (flat > 1.0)).any(axis=1)
    if outside.any():
        return int(np.argmax(outside)), "has values outside [0, 1]"
    return None


# ---------------------------------------------------------------- labels (section 5)


def labels_from_logits(logits: np.ndarray) -> np.ndarray:
    """int32 [n]: the argmax of each row, FAILED_LABEL where a row is not all finite (np.argmax
    would turn a NaN row into class 0, a label the defense never gave)."""
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be [n, classes], got shape {list(logits.shape)}")
    if logits.shape[1] == 0:
        return np.full(logits.shape[0], FAILED_LABEL, dtype=np.int32)
    labels = np.argmax(logits, axis=1).astype(np.int32)
    finite = np.isfinite(logits).all(axis=1)
    if not finite.all():
        labels[~finite] = FAILED_LABEL
    return labels


# ---------------------------------------------------------------- distances and scores (2, 6)


def l2_distances(images: np.ndarray, originals: np.ndarray) -> np.ndarray:
    """float64 [n]: ||images[i] - originals[i]||_2 over all values, differences and sums in float64.
    The reference every faster implementation is tested against."""
    n = images.shape[0]
    diff = images.reshape(n, -1).astype(np.float64) - originals.reshape(n, -1).astype(np.float64)
    return np.sqrt(np.einsum("ij,ij->i", diff, diff))


def worst_case_distances(images: np.ndarray) -> np.ndarray:
    """float64 [n]: ||max(x, 1 - x)||_2 per image, the largest distance any valid image can have."""
    x = images.reshape(images.shape[0], -1).astype(np.float64)
    return np.linalg.norm(np.maximum(x, 1.0 - x), axis=1)


def sample_scores(best: np.ndarray, clean_correct: np.ndarray, worst_case: np.ndarray) -> np.ndarray:
    """The per-sample score d of section 6: 0 where the clean image is misclassified, else the
    smallest verified distance `best` (+inf or nan: none found), else the worst case."""
    best = np.asarray(best, dtype=np.float64)
    found = np.isfinite(best)
    return np.where(np.asarray(clean_correct, dtype=bool), np.where(found, best, worst_case), 0.0)
