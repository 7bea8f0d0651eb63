"""The value check of the image contract (ARENA_RULES section 2), shared by every reader of images.

An image's values must be finite and lie in [0, 1]. The arena checks it on every Predict, the
oracles on every query, the sample reader on every file: it is on hot paths, so it costs one
pass over the bits instead of the usual two reductions (min and max) or a mask.
"""

from __future__ import annotations

import numpy as np

# Non-negative float32 values order like their bit patterns read as unsigned integers; NaN, +inf,
# every negative number and everything above 1.0 has a pattern above that of 1.0.
_ONE_BITS = int(np.array(1.0, dtype=np.float32).view(np.uint32))


def in_unit_interval(values: np.ndarray) -> bool:
    """True when every value of a float32 array is finite and in [0, 1]. One pass over the
    values' bits; only an array that fails it (or holds -0.0, whose pattern is above 1.0's but
    which equals 0) gets the exact second look."""
    values = np.ascontiguousarray(values)
    if values.dtype != np.float32:
        raise TypeError(f"in_unit_interval takes float32 values, got {values.dtype}")
    if values.size == 0 or int(values.reshape(-1).view(np.uint32).max()) <= _ONE_BITS:
        return True
    low, high = values.min(), values.max()
    return bool(low >= 0.0 and high <= 1.0)  # False for NaN too


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
