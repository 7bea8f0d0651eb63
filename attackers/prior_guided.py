"""CGBA guided by surrogate priors throughout the search, not only at the start.

The surrogates' gradient p (`attackers.surrogates`, the unit ascent direction of their margin,
taken at the current boundary point x_b) enters CGBA's iterations (`attackers.cgba`) first as
the normal itself (1), then in every Monte Carlo estimate, either as a bias (2) or, by default,
as a subspace (3):
1. as the normal itself, while that pays: the semicircular search runs in the plane of
   (x_b - x0) and p, without a single probe (~8 queries per iteration instead of ~30-200). A
   sample leaves this phase for good once an iteration shortens its distance by less than
   `prior_min_gain` (the surrogate's step has collapsed: near the target's own minimum the
   surrogate's boundary no longer matches);
2. (`prior_weight` > 0) as a bias of the Monte Carlo estimate (Brunner et al. 2019, the biased boundary attack):
   each probe direction is u = sqrt(lambda) p + sqrt(1 - lambda) r, r a low-frequency random
   direction orthogonalised against p and normalised, lambda = `prior_weight`; the estimate is
   mean(phi_b u_b), with no baseline (it would cancel the prior's share). Where p is right,
   the probes' answers agree and the estimate leans on p; where it is not, their signs split
   and the random part decides.
3. (`subspace`, the default) as a subspace: a share `subspace` of each iteration's probes is
   drawn in the span of the surrogates' class-boundary gradients at x_b (each surrogate, each
   class other than the true one: 18 directions for two surrogates and ten classes), where a
   few dozen probes estimate the normal's part in that span well; the rest are CGBA's
   low-frequency random probes; the two unit estimates are added (the idea of subspace
   attacks, Guo et al. 2019, with label-only probes).
The start is CGBA's own, or what a caller hands to `iterate` (LIVIA, `attackers.livia`).

Measured as LIVIA's refinement on the demo model (40 samples, 1000 queries, mean l2 /
white-box DDN, from a start at 1.77x; docs/benchmarks.md): phase 1 then CGBA 1.59x; biased
sampling with lambda=0.1 1.77x (the probes all agree with p and the estimate stays on it:
`prior_weight` defaults to 0); the class-gradient subspace with half the probes 1.54x (all of
them 1.57x, three quarters 1.56x). A prior step before every estimate as well (tried, from a
start at 1.84x) gave 1.66x against 1.65x without: not kept.
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from attackers.base import check_float
from attackers.cgba import CGBA
from attackers.hopskipjump import MIN_ESTIMATES
from attackers.kernels import l2_distances
from attackers.probes import draw_directions, to_image
from attackers.surrogates import Surrogates
from attackers.tracker import Tracker


class PriorGuidedCGBA(CGBA):
    """CGBA whose normal estimates lean on white-box surrogates (see the module docstring);
    `surrogates`: checkpoint paths or torch modules, or a `Surrogates`; the other keyword
    arguments are CGBA's."""

    name = "prior-cgba"

    def __init__(self, surrogates, *, prior_min_gain: float = 0.01, prior_weight: float = 0.0,
                 subspace: float = 0.5, **cgba) -> None:
        super().__init__(**cgba)
        self.subspace = check_float("subspace", subspace, 0.0, 1.0, low_open=False)
        self.surrogates = surrogates if isinstance(surrogates, Surrogates) else Surrogates(surrogates)
        self.prior_min_gain = check_float("prior_min_gain", prior_min_gain, 0.0, 1.0, low_open=False)
        self.prior_weight = check_float("prior_weight", prior_weight, 0.0, 1.0, low_open=False, high_open=True)

    def _params(self) -> dict:
        cgba = [p for p in inspect.signature(CGBA.__init__).parameters if p != "self"]
        return {"surrogates": self.surrogates, "prior_min_gain": self.prior_min_gain,
                "prior_weight": self.prior_weight, "subspace": self.subspace, **{p: getattr(self, p) for p in cgba}}

    def check_surrogate(self, num_classes: int, image_shape: tuple[int, ...]) -> None:
        self.surrogates.check(num_classes, image_shape)

    def search(self, tracker: Tracker, positions: np.ndarray, starts: np.ndarray | None,
               rng: np.random.Generator) -> None:
        with tracker.timed("surrogate"):
            self.check_surrogate(tracker.oracle.num_classes, tuple(tracker.originals.shape[1:]))
        super().search(tracker, positions, starts, rng)

    # ------------------------------------------------------------------ the iterations
    def iterate(self, tracker: Tracker, pos: np.ndarray, boundary: np.ndarray, rng: np.random.Generator) -> None:
        x0 = tracker.originals[pos]
        labels = tracker.labels[pos]
        x = boundary.astype(np.float32, copy=True)
        dist = l2_distances(x, x0)
        # Phase 1: the surrogates' gradient as the normal, while each step gains enough.
        trusting = dist > 0
        reserve = self.reserve_queries()
        while True:
            rows = np.flatnonzero(trusting & (tracker.remaining[pos] >= reserve))
            if rows.size == 0:
                break
            with tracker.timed("surrogate"):
                p = self.surrogates.gradient(x[rows], labels[rows])
            new_x, new_d = self.boundary_search(tracker, pos[rows], x0[rows], x[rows], dist[rows], p)
            moved = new_d < dist[rows]
            trusting[rows[new_d >= (1.0 - self.prior_min_gain) * dist[rows]]] = False  # 0: until no gain at all
            x[rows[moved]] = new_x[moved]
            dist[rows[moved]] = new_d[moved]
        # Phase 2: CGBA's iterations, the surrogates shaping the probes (estimate_gradient).
        super().iterate(tracker, pos, x, rng)

    def _subspace_estimate(self, tracker, pos, x, rows, dist, counts, rng):
        """A share `subspace` of the probes drawn in the span of the surrogates' class-boundary
        gradients at x (each surrogate, each other class), the rest low-frequency random; each
        part's HopSkipJump estimate made unit, then added."""
        k = pos.shape[0]
        shape = x.shape[1:]
        in_span = np.maximum(np.round(counts * self.subspace).astype(np.int64), MIN_ESTIMATES)
        rest = counts - in_span
        with tracker.timed("surrogate"):
            basis = self.surrogates.class_gradients(x[rows], tracker.labels[pos])
        lo, hi = tracker.bounds
        out = np.zeros((k, int(np.prod(shape))), dtype=np.float32)
        for i in range(k):
            q, _ = np.linalg.qr(basis[i].T.astype(np.float64))         # [D, m] orthonormal
            c = int(in_span[i])
            z = rng.standard_normal((c, q.shape[1]))
            u = (z @ q.T).astype(np.float32)
            u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
            probes = np.clip(x[rows[i]].reshape(1, -1) + (self.delta * dist[i]) * u, lo, hi).astype(np.float32)
            answer = tracker.query(np.full(c, pos[i]), probes.reshape(c, *shape))
            phi = np.where(answer.adversarial, 1.0, -1.0).astype(np.float32)
            phi[~answer.answered] = 0.0
            mean = phi.mean()
            est = (phi - (0.0 if abs(mean) == 1.0 else mean)) @ u
            out[i] = est / max(float(np.linalg.norm(est)), 1e-12)
        more = np.flatnonzero(rest >= MIN_ESTIMATES)
        if more.size:
            low = to_image(super().estimate_gradient(tracker, pos[more], x, rows[more], dist[more], rest[more], rng), shape)
            out[more] += low / np.maximum(np.linalg.norm(low, axis=1, keepdims=True), 1e-12)
        return out

    def estimate_gradient(self, tracker: Tracker, pos: np.ndarray, x: np.ndarray, rows: np.ndarray,
                        dist: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Biased sampling (see the module docstring); HopSkipJump's estimate where lambda = 0.
        Returns full-resolution estimates [k, c*h*w] (not pooled across resolutions)."""
        if self.subspace > 0.0:
            return self._subspace_estimate(tracker, pos, x, rows, dist, counts, rng)
        if self.prior_weight == 0.0:
            return to_image(super().estimate_gradient(tracker, pos, x, rows, dist, counts, rng), x.shape[1:])
        k = pos.shape[0]
        shape = x.shape[1:]
        with tracker.timed("surrogate"):
            p = self.surrogates.gradient(x[rows], tracker.labels[pos]).astype(np.float32)
        m = int(counts.max())
        r = draw_directions(rng, m, shape, self.probe_resolution).full().reshape(m, -1)
        a, b = math.sqrt(self.prior_weight), math.sqrt(1.0 - self.prior_weight)
        lo, hi = tracker.bounds
        out = np.zeros((k, r.shape[1]), dtype=np.float32)
        for i in range(k):
            c = int(counts[i])
            ri = r[:c] - np.outer(r[:c] @ p[i], p[i])                  # orthogonal to p
            ri /= np.maximum(np.linalg.norm(ri, axis=1, keepdims=True), 1e-12)
            u = a * p[i] + b * ri                                      # unit: p and ri are orthonormal
            probes = np.clip(x[rows[i]].reshape(1, -1) + (self.delta * dist[i]) * u, lo, hi).astype(np.float32)
            answer = tracker.query(np.full(c, pos[i]), probes.reshape(c, *shape))
            phi = np.where(answer.adversarial, 1.0, -1.0).astype(np.float32)
            phi[~answer.answered] = 0.0
            out[i] = phi @ u / c
        return out
