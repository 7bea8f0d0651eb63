"""Process-level tuning for moving megabytes of image bytes through Python.

glibc's malloc serves allocations above its mmap threshold (128 KiB at first, adapting) with
fresh mmaps and returns them on free, so every multi-megabyte protobuf/bytes buffer of a
Predict request page-faults its way in again (30x slower to build: docs/benchmarks.md, "Design
measurements"). Raising the mmap and trim thresholds keeps those buffers in the heap and reused. Called by the server and by the benchmark's clients; a no-op off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def tune_malloc(mmap_threshold: int = 64 << 20, trim_threshold: int = 512 << 20) -> bool:
    """Keeps buffers below `mmap_threshold` in the heap; returns whether glibc accepted it."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
    _done = ok
    return ok
