"""Fused image kernels for the attacks' hot loops (numba).

Every query of a decision-based attack is an image made from one or two others, clipped to the
bounds (a probe x + c * u, a bisection point x0 + m * (x' - x0), a Boundary Attack proposal
x0 + a * r + b * eta), and every image answered adversarial needs its l2 distance. In numpy each
of those is three to five passes over 48 KiB per image, with temporaries, which costs a third of
the demo model's own answer per query (docs/benchmarks.md). Here each is one
pass that also measures the image's distance as it writes it (exact float64 sums), spread over
the cores when the batch is big enough to pay for waking the threads.

The cost is memory traffic, not arithmetic: the oracle's run between two queries evicts the
attack's rows from the caches, so every 48 KiB row a kernel touches comes from memory. Hence one pass per image, measuring while writing, and low-resolution
directions interpolated on the fly (`step_upsampled`) rather than read at full size.

Arrays are float32, C-contiguous, one image per row of the flattened view; `rows` arguments pick
rows (the same base image for many probes, the same direction for many samples) without
gathering copies. Compiled on first use and cached on disk (numba's cache).
"""

from __future__ import annotations

import types

import numpy as np
from numba import njit, prange

# Below this many values in a call, one thread: waking the pool (OpenMP threads that sleep when
# idle, OMP_WAIT_POLICY=PASSIVE) costs more than it saves. Above it, two threads pay: the rows come
# from memory (the oracle's run in between evicts them from the caches) and two cores fetch more
# of them at once (the figures: docs/benchmarks.md, "Design measurements").
PARALLEL_MIN_VALUES = 16 * 3 * 64 * 64


# The step kernels optionally measure what they write (`measure`): squares[k] = the exact squared
# l2 distance of image k to originals[owners[k]], summed in float64 while the row is in registers,
# which saves reading every queried image back to measure it.

def _step(out, base, base_rows, coef, direction, direction_rows, lo, hi, measure, originals, owners, squares):
    for k in prange(out.shape[0]):
        b = base[base_rows[k]]
        d = direction[direction_rows[k]]
        c = coef[k]
        o = out[k]
        if measure:
            x0 = originals[owners[k]]
            s = 0.0
            for j in range(o.shape[0]):
                v = min(max(b[j] + c * d[j], lo), hi)
                o[j] = v
                t = np.float64(v) - np.float64(x0[j])  # exact: both are float32
                s += t * t
            squares[k] = s
        else:
            for j in range(o.shape[0]):
                o[j] = min(max(b[j] + c * d[j], lo), hi)


def _step_upsampled(out, base, base_rows, coef, rows, direction_rows, top, bottom, w_top, w_bottom, lo, hi,
                    measure, originals, owners, squares):
    # rows: [nd, channels, r, width], directions upsampled along the width only; each output
    # row interpolates two of them here (bilinear in height), so no full-resolution direction
    # is read: a quarter of the memory traffic of `_step` at r = 16, height 64.
    height, width = top.shape[0], rows.shape[3]
    for k in prange(out.shape[0]):
        b = base[base_rows[k]]
        d = rows[direction_rows[k]]
        c = coef[k]
        o = out[k]
        x0 = originals[owners[k]]
        s = 0.0
        for ch in range(rows.shape[1]):
            for i in range(height):
                t = d[ch, top[i]]
                u = d[ch, bottom[i]]
                a0 = c * w_top[i]
                a1 = c * w_bottom[i]
                off = (ch * height + i) * width
                if measure:
                    for j in range(width):
                        v = min(max(b[off + j] + a0 * t[j] + a1 * u[j], lo), hi)
                        o[off + j] = v
                        e = np.float64(v) - np.float64(x0[off + j])
                        s += e * e
                else:
                    for j in range(width):
                        o[off + j] = min(max(b[off + j] + a0 * t[j] + a1 * u[j], lo), hi)
        squares[k] = s


def _squared_distances(out, images, rows, originals, owners):
    for k in prange(rows.shape[0]):
        a = images[rows[k]]
        b = originals[owners[k]]
        s = 0.0
        for j in range(a.shape[0]):
            t = np.float64(a[j]) - np.float64(b[j])  # exact: both are float32
            s += t * t
        out[k] = s


def _boundary_proposals(out, squares, x0, current, rows, eta, eta_sq, dist, spherical, source, with_spherical, lo,
                        hi):
    # Boundary Attack proposals (see attackers.boundary): per sample, r = current - x0 and the dot
    # product r . eta, then from the same rows (now cached) the full candidate and,
    # with_spherical, the spherical one, each measured against x0 as it is written.
    m = rows.shape[0]
    for k in prange(m):
        i = rows[k]
        x = x0[i]
        y = current[i]
        dot = 0.0
        for j in range(x.shape[0]):
            dot += np.float64(y[j] - x[j]) * np.float64(eta[j])
        d2 = dist[k] * dist[k]
        ortho = np.sqrt(max(eta_sq - dot * dot / d2, 1e-30))
        g = spherical[k] * dist[k] / ortho           # eta' = g * (eta - dot / d2 * r)
        b = 1.0 - g * dot / d2                       # r + eta' = b * r + g * eta
        norm = 1.0 / np.sqrt(1.0 + spherical[k] * spherical[k])
        for half in range(2 if with_spherical else 1):
            out_k = k + half * m
            scale = norm if half else (1.0 - source[k]) * norm
            c1 = np.float32(scale * b)
            c2 = np.float32(scale * g)
            o = out[out_k]
            s = 0.0
            for j in range(o.shape[0]):
                v = min(max(x[j] + c1 * (y[j] - x[j]) + c2 * eta[j], lo), hi)
                o[j] = v
                t = np.float64(v) - np.float64(x[j])
                s += t * t
            squares[out_k] = s


def _keep_closer(out, dest, dest_rows, limits, src, src_rows, originals, owners):
    # Measures src row k against its original, then (second read, from cache) copies it over
    # dest row k when it is closer than limits[k].
    for k in prange(src_rows.shape[0]):
        a = src[src_rows[k]]
        b = originals[owners[k]]
        s = 0.0
        for j in range(a.shape[0]):
            t = np.float64(a[j]) - np.float64(b[j])
            s += t * t
        d = np.sqrt(s)
        out[k] = d
        if d < limits[k]:
            dest[dest_rows[k]] = a


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


_COMPILED = {body: (_compile(body, False), _compile(body, True))
             for body in (_step, _step_upsampled, _boundary_proposals, _squared_distances, _keep_closer, _copy_rows)}


def _pick(body, values: int):
    """body's compiled variant for a call over `values` values (serial or parallel)."""
    return _COMPILED[body][values >= PARALLEL_MIN_VALUES]


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


@njit(cache=True)
def _outside(rows, n):
    # One pass, no temporaries: the kernels index without bounds checks, so every row is checked.
    for i in range(rows.shape[0]):
        if rows[i] < 0 or rows[i] >= n:
            return True
    return False


def _indices(rows, m: int, n: int, name: str) -> np.ndarray:
    """rows as int64 (0..m-1 when None), each checked to lie in [0, n)."""
    if rows is None:
        return np.arange(m, dtype=np.int64)
    out = np.ascontiguousarray(rows, dtype=np.int64)
    if out.ndim != 1 or _outside(out, n):
        raise IndexError(f"{name} must be a vector of rows in [0, {n})")
    return out


def _coefficients(coef, m: int) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(np.asarray(coef, dtype=np.float32), (m,)))


def _bounds(bounds: tuple[float, float]) -> tuple[np.float32, np.float32]:
    return np.float32(bounds[0]), np.float32(bounds[1])


def _measuring(distances_to, m: int, values: int, fallback: np.ndarray, fallback_rows: np.ndarray):
    """The kernels' (measure, originals, owners, squares) arguments for `distances_to` =
    (originals, owners) or None (then the fallback rows stand in, unread)."""
    squares = np.empty(m, dtype=np.float64)
    if distances_to is None:
        return False, fallback, fallback_rows, squares
    originals, owners = distances_to
    if originals[:1].size != values or originals.ndim < 2:
        raise ValueError(f"distances_to: originals of shape {list(originals.shape)} do not match the images")
    return True, _flat(originals), _indices(owners, m, originals.shape[0], "owners"), squares


def _result(out: np.ndarray, measure: bool, squares: np.ndarray):
    return (out, np.sqrt(squares, out=squares)) if measure else out


def step(base: np.ndarray, coef, direction: np.ndarray, bounds: tuple[float, float], *,
         base_rows=None, direction_rows=None, distances_to: tuple[np.ndarray, np.ndarray] | None = None):
    """float32 images clip(base[base_rows[k]] + coef[k] * direction[direction_rows[k]], bounds).

    base: [nb, *shape]; direction: [nd, *shape]; coef: [m] (or a scalar); rows default to
    0..m-1. Returns a new [m, *shape] array. With distances_to = (originals, owners), returns
    (images, distances): also the exact float64 l2 distance of image k to originals[owners[k]],
    measured in the same pass (as `l2_distances` would, up to the order of the float64 sum)."""
    shape = base.shape[1:]
    if tuple(direction.shape[1:]) != tuple(shape):
        raise ValueError(f"step: base rows {list(shape)} and direction rows {list(direction.shape[1:])} differ")
    m = _count(base.shape[0], base_rows, direction_rows, coef)
    out = np.empty((m, *shape), dtype=np.float32)
    b_rows = _indices(base_rows, m, base.shape[0], "base_rows")
    d_rows = _indices(direction_rows, m, direction.shape[0], "direction_rows")
    flat = _flat(base)
    measure = _measuring(distances_to, m, flat.shape[1], flat, b_rows)
    if m:
        _pick(_step, out.size)(out.reshape(m, -1), flat, b_rows, _coefficients(coef, m), _flat(direction), d_rows,
                           *_bounds(bounds), *measure)
    return _result(out, measure[0], measure[3])


def step_upsampled(base: np.ndarray, coef, rows: np.ndarray, vertical, bounds: tuple[float, float], *,
                   base_rows=None, direction_rows=None, distances_to: tuple[np.ndarray, np.ndarray] | None = None):
    """float32 images clip(base[base_rows[k]] + coef[k] * V @ rows[direction_rows[k]], bounds): `step`
    with directions given at low height, interpolated on the fly (and distances_to as in `step`).

    base: [nb, c, h, w]; rows: [nd, c, r, w] (directions already upsampled along the width);
    vertical = (top, bottom, w_top, w_bottom), each [h]: output row i of a channel is
    w_top[i] * rows[.., top[i], :] + w_bottom[i] * rows[.., bottom[i], :] (bilinear weights,
    `attackers.probes.vertical_weights`). Returns [m, c, h, w]."""
    if base.ndim != 4 or rows.ndim != 4 or base.shape[1] != rows.shape[1] or base.shape[3] != rows.shape[3]:
        raise ValueError(f"step_upsampled: base {list(base.shape)} and rows {list(rows.shape)} do not match")
    h, r = base.shape[2], rows.shape[2]
    top, bottom = (np.ascontiguousarray(v, dtype=np.int64) for v in vertical[:2])
    w_top, w_bottom = (np.ascontiguousarray(v, dtype=np.float32) for v in vertical[2:])
    if any(v.shape != (h,) for v in (top, bottom, w_top, w_bottom)) or h and (
            min(top.min(), bottom.min()) < 0 or max(top.max(), bottom.max()) >= r):
        raise ValueError(f"step_upsampled: vertical weights must be 4 arrays of {h} with rows in [0, {r})")
    m = _count(base.shape[0], base_rows, direction_rows, coef)
    b_rows = _indices(base_rows, m, base.shape[0], "base_rows")
    d_rows = _indices(direction_rows, m, rows.shape[0], "direction_rows")
    out = np.empty((m, *base.shape[1:]), dtype=np.float32)
    flat = _flat(base)
    measure = _measuring(distances_to, m, flat.shape[1], flat, b_rows)
    if m:
        _pick(_step_upsampled, out.size)(out.reshape(m, -1), flat, b_rows, _coefficients(coef, m),
                           np.ascontiguousarray(rows, dtype=np.float32), d_rows, top, bottom, w_top, w_bottom,
                           *_bounds(bounds), *measure)
    return _result(out, measure[0], measure[3])


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
        _pick(_squared_distances, m * images[:1].size)(out, _flat(images), r, _flat(originals), o)
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
        _pick(_copy_rows, m * dest[:1].size)(dest.reshape(dest.shape[0], -1), d_rows, _flat(src), s_rows)


def keep_closer(dest: np.ndarray, dest_rows, limits, src: np.ndarray, src_rows, originals: np.ndarray,
                owners) -> np.ndarray:
    """Measures each src[src_rows[k]] against originals[owners[k]] (exact float64 l2, as
    `l2_distances`) and, where that distance is below limits[k], copies it over
    dest[dest_rows[k]] in place: one read of each image. Returns the distances (float64 [m]).
    dest_rows must not repeat."""
    if dest.dtype != np.float32 or not dest.flags.c_contiguous or dest[:1].size != src[:1].size \
            or originals[:1].size != src[:1].size:
        raise ValueError("keep_closer: dest must be C-contiguous float32, rows of dest, src and originals alike")
    m = _count(0, dest_rows, src_rows, owners, limits)
    d_rows = _indices(dest_rows, m, dest.shape[0], "dest_rows")
    s_rows = _indices(src_rows, m, src.shape[0], "src_rows")
    o_rows = _indices(owners, m, originals.shape[0], "owners")
    out = np.empty(m, dtype=np.float64)
    if m:
        _pick(_keep_closer, m * dest[:1].size)(out, dest.reshape(dest.shape[0], -1), d_rows,
                                    np.ascontiguousarray(np.broadcast_to(np.asarray(limits, np.float64), (m,))),
                                    _flat(src), s_rows, _flat(originals), o_rows)
    return out


def boundary_proposals(x0: np.ndarray, current: np.ndarray, rows, eta: np.ndarray, dist, spherical, source,
                       bounds: tuple[float, float], with_spherical: bool) -> tuple[np.ndarray, np.ndarray]:
    """The Boundary Attack's candidates for the samples at `rows` (see
    `attackers.boundary.BoundaryAttack._proposals` for the geometry) and their distances.

    x0, current: [n, *shape] originals and current adversarial points, r = current - x0 with
    |r[rows[k]]| = dist[k]; eta: the noise, one image; dist, spherical, source: float64 [m] per
    row. Returns (float32 [m or 2m, *shape], float64 [m or 2m]): the full candidates
    clip(x0 + (1 - source) * (r + eta') / sqrt(1 + spherical^2)), followed, with_spherical, by
    the spherical ones clip(x0 + (r + eta') / sqrt(1 + spherical^2)), eta' the part of eta
    orthogonal to r scaled to spherical * dist."""
    shape = x0.shape[1:]
    x0, current = _flat(x0), _flat(current)
    if current.shape != x0.shape or eta.size != x0.shape[1]:
        raise ValueError(f"boundary_proposals: x0 {list(x0.shape)}, current {list(current.shape)}, "
                         f"eta {list(eta.shape)} do not match")
    m = _count(0, rows, dist, spherical, source)
    rows = _indices(rows, m, x0.shape[0], "rows")
    eta = np.ascontiguousarray(eta, dtype=np.float32).reshape(-1)
    per_row = [np.ascontiguousarray(np.broadcast_to(np.asarray(v, np.float64), (m,))) for v in (dist, spherical, source)]
    n_out = 2 * m if with_spherical else m
    out = np.empty((n_out, *shape), dtype=np.float32)
    squares = np.empty(n_out, dtype=np.float64)
    if m:
        _pick(_boundary_proposals, out.size)(out.reshape(n_out, -1), squares, x0, current, rows, eta,
                           float(eta @ eta), *per_row, bool(with_spherical),
                           *_bounds(bounds))
    return out, np.sqrt(squares, out=squares)


def probe_tiles(counts: np.ndarray, max_images: int, tile: int):
    """The order in which a batch of gradient probes is built and sent: `counts[i]` probes for
    sample i (direction j = 0 .. counts[i]-1), in consecutive groups of samples holding at most
    `max_images` probes each (bounds the memory of one query; a sample is never split), and
    within a group in tiles of `tile` samples, direction-major: consecutive probes share a
    direction and cycle over a few samples' rows, so both stay in the core's cache while the
    probes are written. Yields (start, stop, local, within): the group's samples are
    start..stop-1; probe p belongs to sample start + local[p] and uses direction within[p]."""
    k = counts.shape[0]
    start = 0
    while start < k:
        stop = start + 1
        total = int(counts[start])
        while stop < k and total + counts[stop] <= max_images:
            total += int(counts[stop])
            stop += 1
        c = counts[start:stop].astype(np.int64)
        ends = np.cumsum(c)
        local = np.repeat(np.arange(stop - start), c)
        within = np.arange(total) - np.repeat(ends - c, c)
        order = np.lexsort((local, within, local // tile))
        yield start, stop, local[order], within[order]
        start = stop
