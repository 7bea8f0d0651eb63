"""Fused image kernels for the attacks' hot loops (numba).

Every query of a decision-based attack is an image made from one or two others, clipped to the
bounds (a probe x + c * u, a bisection point x0 + m * (x' - x0), a Boundary Attack proposal
x0 + a * r + b * eta), and every image answered adversarial needs its l2 distance. In numpy each
of those is three to five passes over 48 KiB per image, with temporaries; on the 2-core machines
they cost 30-40 us per query, against ~90 us for the demo model's own answer. Here each is one
pass, spread over the cores when the batch is big enough to pay for waking the threads
(a parallel launch costs tens of microseconds), and distances are exact float64 sums.

Arrays are float32, C-contiguous, one image per row of the flattened view; `rows` arguments pick
rows (the same base image for many probes, the same direction for many samples) without
gathering copies. Compiled on first use and cached on disk (numba's cache).
"""

from __future__ import annotations

import types

import numpy as np
from numba import njit, prange

# Below this many values in a call, one thread: waking the pool costs more than it saves
# (measured: ~65 us per launch with OpenMP threads that sleep when idle, OMP_WAIT_POLICY=PASSIVE).
PARALLEL_MIN_VALUES = 96 * 3 * 64 * 64


def _step(out, out_rows, base, base_rows, coef, direction, direction_rows, lo, hi):
    for k in prange(out_rows.shape[0]):
        b = base[base_rows[k]]
        d = direction[direction_rows[k]]
        c = coef[k]
        o = out[out_rows[k]]
        for j in range(o.shape[0]):
            o[j] = min(max(b[j] + c * d[j], lo), hi)


def _step2(out, base, rows, coef1, direction1, coef2, direction2, direction2_rows, lo, hi):
    for k in prange(out.shape[0]):
        b = base[rows[k]]
        d1 = direction1[rows[k]]
        d2 = direction2[direction2_rows[k]]
        c1 = coef1[k]
        c2 = coef2[k]
        o = out[k]
        for j in range(o.shape[0]):
            o[j] = min(max(b[j] + c1 * d1[j] + c2 * d2[j], lo), hi)


def _squared_distances(out, images, rows, originals, owners):
    for k in prange(rows.shape[0]):
        a = images[rows[k]]
        b = originals[owners[k]]
        s = 0.0
        for j in range(a.shape[0]):
            t = np.float64(a[j]) - np.float64(b[j])  # exact: both are float32
            s += t * t
        out[k] = s


def _copy_rows(dest, dest_rows, src, src_rows):
    for k in prange(dest_rows.shape[0]):
        dest[dest_rows[k]] = src[src_rows[k]]


def _compile(body, parallel: bool):
    """body compiled serial or parallel. The two get distinct names because numba's on-disk cache
    keys compiled code by function name and line, not by the `parallel` flag: under one name,
    one variant would load the other's code."""
    name = f"{body.__name__}_{'parallel' if parallel else 'serial'}"
    fn = types.FunctionType(body.__code__, body.__globals__, name)
    fn.__qualname__ = name
    return njit(parallel=parallel, fastmath=True, boundscheck=False, cache=True)(fn)


_BODIES = (_step, _step2, _squared_distances, _copy_rows)
_SERIAL = tuple(_compile(body, False) for body in _BODIES)
_PARALLEL = tuple(_compile(body, True) for body in _BODIES)


def _pick(values: int):
    """The (step, step2, squared_distances, copy_rows) kernels for a call over `values` values."""
    return _PARALLEL if values >= PARALLEL_MIN_VALUES else _SERIAL


def _flat(a: np.ndarray) -> np.ndarray:
    """A float32 C-contiguous [n, values] view (a copy only if it is not one already)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    return a.reshape(a.shape[0], -1)


def _rows(rows, n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) if rows is None else np.ascontiguousarray(rows, dtype=np.int64)


def step(base: np.ndarray, coef, direction: np.ndarray, bounds: tuple[float, float], *,
         base_rows=None, direction_rows=None, out: np.ndarray | None = None, out_rows=None) -> np.ndarray:
    """float32 images clip(base[base_rows[k]] + coef[k] * direction[direction_rows[k]], bounds).

    base: [nb, *shape]; direction: [nd, *shape]; coef: [m] (or a scalar); rows default to
    0..m-1. Returns a new [m, *shape] array, or writes row k into out[out_rows[k]] (in place;
    out_rows must not repeat) and returns out."""
    shape = base.shape[1:]
    if tuple(direction.shape[1:]) != tuple(shape):
        raise ValueError(f"step: base rows {list(shape)} and direction rows {list(direction.shape[1:])} differ")
    m = _count(base_rows, direction_rows, coef, base.shape[0])
    m = _count(base_rows, out_rows, coef, m)
    b_rows, d_rows = _rows(base_rows, m), _rows(direction_rows, m)
    _check_rows(b_rows, base.shape[0], "base_rows")
    _check_rows(d_rows, direction.shape[0], "direction_rows")
    c = np.ascontiguousarray(np.broadcast_to(np.asarray(coef, dtype=np.float32), (m,)))
    if out is None:
        out = np.empty((m, *shape), dtype=np.float32)
    elif out.dtype != np.float32 or not out.flags.c_contiguous or tuple(out.shape[1:]) != tuple(shape):
        raise ValueError(f"step: out must be C-contiguous float32 [n,{','.join(map(str, shape))}]")
    o_rows = _rows(out_rows, m)
    _check_rows(o_rows, out.shape[0], "out_rows")
    if m:
        kernel = _pick(m * base[:1].size)[0]
        kernel(out.reshape(out.shape[0], -1), o_rows, _flat(base), b_rows, c, _flat(direction), d_rows,
               np.float32(bounds[0]), np.float32(bounds[1]))
    return out


def step2(base: np.ndarray, coef1, direction1: np.ndarray, coef2, direction2: np.ndarray,
          bounds: tuple[float, float], *, rows=None, direction2_rows=None) -> np.ndarray:
    """float32 images clip(base[i] + coef1[k] * direction1[i] + coef2[k] * direction2[j], bounds)
    with i = rows[k], j = direction2_rows[k].

    base, direction1: [n, *shape]; direction2: [n2, *shape] (e.g. one noise image shared by all
    rows: direction2_rows all zero); coefficients [m] or scalars. Returns [m, *shape]."""
    shape = base.shape[1:]
    if direction1.shape != base.shape or tuple(direction2.shape[1:]) != tuple(shape):
        raise ValueError(f"step2: shapes {list(base.shape)}, {list(direction1.shape)}, {list(direction2.shape)} do not match")
    m = _count(rows, direction2_rows, coef1, base.shape[0])
    m = _count(rows, direction2_rows, coef2, m)
    r, r2 = _rows(rows, m), _rows(direction2_rows, m)
    _check_rows(r, base.shape[0], "rows")
    _check_rows(r2, direction2.shape[0], "direction2_rows")
    c1 = np.ascontiguousarray(np.broadcast_to(np.asarray(coef1, dtype=np.float32), (m,)))
    c2 = np.ascontiguousarray(np.broadcast_to(np.asarray(coef2, dtype=np.float32), (m,)))
    out = np.empty((m, *shape), dtype=np.float32)
    if m:
        kernel = _pick(out.size)[1]
        kernel(out.reshape(m, -1), _flat(base), r, c1, _flat(direction1), c2, _flat(direction2), r2,
               np.float32(bounds[0]), np.float32(bounds[1]))
    return out


def l2_distances(images: np.ndarray, originals: np.ndarray, *, rows=None, owners=None) -> np.ndarray:
    """float64 l2 norms of images[rows[k]] - originals[owners[k]] over all values (rows and
    owners default to 0..m-1): exact differences, float64 sums, as the arena measures."""
    m = _count(rows, owners, None, images.shape[0])
    r, o = _rows(rows, m), _rows(owners, m)
    _check_rows(r, images.shape[0], "rows")
    _check_rows(o, originals.shape[0], "owners")
    out = np.empty(m, dtype=np.float64)
    if m:
        if images[:1].size != originals[:1].size:
            raise ValueError(f"l2_distances: images {list(images.shape)} and originals {list(originals.shape)} differ")
        kernel = _pick(m * images[:1].size)[2]
        kernel(out, _flat(images), r, _flat(originals), o)
    return np.sqrt(out, out=out)


def copy_rows(dest: np.ndarray, dest_rows, src: np.ndarray, src_rows=None) -> None:
    """dest[dest_rows[k]] = src[src_rows[k]] for every k, in place, without the temporary that
    `dest[a] = src[b]` makes. dest_rows must not repeat (rows are copied in parallel)."""
    d_rows = np.ascontiguousarray(dest_rows, dtype=np.int64)
    m = _count(d_rows, src_rows, None, 0)
    s_rows = _rows(src_rows, m)
    _check_rows(d_rows, dest.shape[0], "dest_rows")
    _check_rows(s_rows, src.shape[0], "src_rows")
    if dest.dtype != np.float32 or not dest.flags.c_contiguous or dest[:1].size != src[:1].size:
        raise ValueError("copy_rows: dest must be C-contiguous float32 with rows of src's size")
    if m:
        _pick(m * dest[:1].size)[3](dest.reshape(dest.shape[0], -1), d_rows, _flat(src), s_rows)


def _count(rows_a, rows_b, coef, default: int) -> int:
    """The number of output rows: the length the given row arrays and coefficients agree on."""
    lengths = {int(np.shape(a)[0]) for a in (rows_a, rows_b, coef) if a is not None and np.ndim(a)}
    if len(lengths) > 1:
        raise ValueError(f"rows and coefficients disagree on the number of images: {sorted(lengths)}")
    return lengths.pop() if lengths else default


def _check_rows(rows: np.ndarray, n: int, name: str) -> None:
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise IndexError(f"{name} must lie in [0, {n})")
