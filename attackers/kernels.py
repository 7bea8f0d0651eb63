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


def _count(default: int, *arrays) -> int:
    """The number of output rows: the length the given row arrays and coefficients agree on."""
    lengths = {int(np.shape(a)[0]) for a in arrays if a is not None and np.ndim(a)}
    if len(lengths) > 1:
        raise ValueError(f"rows and coefficients disagree on the number of images: {sorted(lengths)}")
    return lengths.pop() if lengths else default


def _indices(rows, m: int, n: int, name: str) -> np.ndarray:
    """rows as int64 (0..m-1 when None), each checked to lie in [0, n)."""
    out = np.arange(m, dtype=np.int64) if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
    if out.size and (out.min() < 0 or out.max() >= n):
        raise IndexError(f"{name} must lie in [0, {n})")
    return out


def _coefficients(coef, m: int) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(np.asarray(coef, dtype=np.float32), (m,)))


def _bounds(bounds: tuple[float, float]) -> tuple[np.float32, np.float32]:
    return np.float32(bounds[0]), np.float32(bounds[1])


def step(base: np.ndarray, coef, direction: np.ndarray, bounds: tuple[float, float], *,
         base_rows=None, direction_rows=None, out: np.ndarray | None = None, out_rows=None) -> np.ndarray:
    """float32 images clip(base[base_rows[k]] + coef[k] * direction[direction_rows[k]], bounds).

    base: [nb, *shape]; direction: [nd, *shape]; coef: [m] (or a scalar); rows default to
    0..m-1. Returns a new [m, *shape] array, or writes row k into out[out_rows[k]] (in place;
    out_rows must not repeat) and returns out."""
    shape = base.shape[1:]
    if tuple(direction.shape[1:]) != tuple(shape):
        raise ValueError(f"step: base rows {list(shape)} and direction rows {list(direction.shape[1:])} differ")
    m = _count(base.shape[0], base_rows, direction_rows, out_rows, coef)
    if out is None:
        out = np.empty((m, *shape), dtype=np.float32)
    elif out.dtype != np.float32 or not out.flags.c_contiguous or tuple(out.shape[1:]) != tuple(shape):
        raise ValueError(f"step: out must be C-contiguous float32 [n,{','.join(map(str, shape))}]")
    b_rows = _indices(base_rows, m, base.shape[0], "base_rows")
    d_rows = _indices(direction_rows, m, direction.shape[0], "direction_rows")
    o_rows = _indices(out_rows, m, out.shape[0], "out_rows")
    if m:
        _pick(m * base[:1].size)[0](out.reshape(out.shape[0], -1), o_rows, _flat(base), b_rows,
                                    _coefficients(coef, m), _flat(direction), d_rows, *_bounds(bounds))
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
    m = _count(base.shape[0], rows, direction2_rows, coef1, coef2)
    r = _indices(rows, m, base.shape[0], "rows")
    r2 = _indices(direction2_rows, m, direction2.shape[0], "direction2_rows")
    out = np.empty((m, *shape), dtype=np.float32)
    if m:
        _pick(out.size)[1](out.reshape(m, -1), _flat(base), r, _coefficients(coef1, m), _flat(direction1),
                           _coefficients(coef2, m), _flat(direction2), r2, *_bounds(bounds))
    return out


def l2_distances(images: np.ndarray, originals: np.ndarray, *, rows=None, owners=None) -> np.ndarray:
    """float64 l2 norms of images[rows[k]] - originals[owners[k]] over all values (rows and
    owners default to 0..m-1): exact differences, float64 sums, as the arena measures."""
    if images[:1].size != originals[:1].size:
        raise ValueError(f"l2_distances: images {list(images.shape)} and originals {list(originals.shape)} differ")
    m = _count(images.shape[0], rows, owners)
    r = _indices(rows, m, images.shape[0], "rows")
    o = _indices(owners, m, originals.shape[0], "owners")
    out = np.empty(m, dtype=np.float64)
    if m:
        _pick(m * images[:1].size)[2](out, _flat(images), r, _flat(originals), o)
    return np.sqrt(out, out=out)


def copy_rows(dest: np.ndarray, dest_rows, src: np.ndarray, src_rows=None) -> None:
    """dest[dest_rows[k]] = src[src_rows[k]] for every k, in place, without the temporary that
    `dest[a] = src[b]` makes. dest_rows must not repeat (rows are copied in parallel)."""
    if dest.dtype != np.float32 or not dest.flags.c_contiguous or dest[:1].size != src[:1].size:
        raise ValueError("copy_rows: dest must be C-contiguous float32 with rows of src's size")
    m = _count(0, dest_rows, src_rows)
    d_rows = _indices(dest_rows, m, dest.shape[0], "dest_rows")
    s_rows = _indices(src_rows, m, src.shape[0], "src_rows")
    if m:
        _pick(m * dest[:1].size)[3](dest.reshape(dest.shape[0], -1), d_rows, _flat(src), s_rows)
