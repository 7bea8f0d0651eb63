"""The per-sample tracker between attacks and an oracle (the Foolbox 2 pattern).

Every query of an attack goes through `Tracker.query`. The tracker
- counts the images charged to each sample and never sends a query past a sample's budget:
  the images of a sample that cannot afford all of its images in a call are not sent, charge
  nothing and come back unanswered (`Answer.answered` False), while the other samples' images
  of the same call go through. A sample with no budget left is simply done;
- decides success from answers already paid for: an image is adversarial when the oracle's
  label for it differs from the true label, and nothing is ever queried again to confirm it;
- keeps per sample the best adversarial (the exact float32 bytes that were queried, so the
  arena verifies it free) and its l2 distance (float64, over all values, [0, 1] scale);
- calls `on_improve(tracker, positions)` once per query call with the positions whose best
  improved in it (the `arena attack` client submits those adversarials as they improve);
- records when each improvement was paid for, so `best_distance_at(q)` gives the best distance
  reached within the first q queries of each sample;
- times the oracle (and named one-off phases of an attack, `timed`), so a benchmark can tell the
  attack's own compute from the oracle's.

Attacks never count queries themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from arena.ground.contract import within_bounds
from attackers.kernels import copy_rows, keep_closer, l2_distances
from attackers.oracle import BudgetExceeded, Oracle


@dataclass(frozen=True)
class Answer:
    """What one tracker query returns, per image of the call."""

    adversarial: np.ndarray  # bool [m]: answered and labelled other than the true label
    answered: np.ndarray     # bool [m]: False where the sample lacked budget (not sent, not charged)
    distances: np.ndarray    # float64 [m]: l2 distance of each adversarial image to its original (inf elsewhere)


class Tracker:
    """Per-sample query accounting and best adversarials for one set of samples.

    images: float32 [n, *oracle.image_shape] clean images; labels: int [n] true labels;
    budget: queries per sample (int or int array [n]); sample_indices: the oracle's id of each
    sample (default 0..n-1)."""

    def __init__(
        self,
        oracle: Oracle,
        images: np.ndarray,
        labels: np.ndarray,
        budget: int | np.ndarray,
        *,
        sample_indices: np.ndarray | None = None,
        on_improve: Callable[[Tracker, np.ndarray], None] | None = None,
    ) -> None:
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.float32:
            raise ValueError(f"images must be float32, got {images.dtype}")
        shape = tuple(oracle.image_shape)
        if images.ndim != 1 + len(shape) or tuple(images.shape[1:]) != shape:
            raise ValueError(f"images must have shape [n,{','.join(map(str, shape))}], got {list(images.shape)}")
        n = images.shape[0]
        if labels.shape != (n,) or (n and not np.issubdtype(labels.dtype, np.integer)):
            raise ValueError(f"labels must be integers of shape [{n}], got {labels.dtype} {list(labels.shape)}")
        if n and (labels.min() < 0 or labels.max() >= oracle.num_classes):
            raise ValueError(f"labels must lie in [0, {oracle.num_classes}), got [{labels.min()}, {labels.max()}]")
        lo, hi = oracle.bounds
        if n and not within_bounds(images, (lo, hi)):
            raise ValueError(f"images must be finite with values in [{lo:g}, {hi:g}]")
        budgets = np.broadcast_to(np.asarray(budget), (n,))
        if budgets.size and (not np.issubdtype(budgets.dtype, np.integer) or budgets.min() < 0):
            raise ValueError(f"budget must be non-negative integers, got {budget!r}")
        ids = np.arange(n, dtype=np.int64) if sample_indices is None else np.asarray(sample_indices, dtype=np.int64)
        if ids.shape != (n,):
            raise ValueError(f"sample_indices must have shape [{n}], got {list(ids.shape)}")

        self.oracle = oracle
        self.originals = np.ascontiguousarray(images)
        self.originals.setflags(write=False)
        self.labels = labels.astype(np.int64)
        self.sample_indices = ids
        self.budget = budgets.astype(np.int64).copy()
        self.queries = np.zeros(n, dtype=np.int64)
        self.best = self.originals.copy()  # the clean image until an adversarial is found
        self.best_distance = np.full(n, np.inf, dtype=np.float64)
        self.on_improve = on_improve
        self.calls = 0                 # oracle calls made
        self.oracle_seconds = 0.0      # time spent inside the oracle
        self.hook_seconds = 0.0        # time spent in on_improve
        self.phase_seconds: dict[str, float] = {}  # named one-off phases of an attack (see `timed`)
        # Improvement log: (position, queries paid when found, distance), for best_distance_at.
        self._log_pos: list[np.ndarray] = []
        self._log_q: list[np.ndarray] = []
        self._log_d: list[np.ndarray] = []

    # ------------------------------------------------------------------ state
    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def bounds(self) -> tuple[float, float]:
        return self.oracle.bounds

    @property
    def remaining(self) -> np.ndarray:
        """int64 [n]: queries each sample may still make."""
        return self.budget - self.queries

    @property
    def found(self) -> np.ndarray:
        """bool [n]: an adversarial has been paid for."""
        return np.isfinite(self.best_distance)

    def best_distance_at(self, queries: int) -> np.ndarray:
        """float64 [n]: the best distance each sample had reached once it had paid `queries`
        queries (+inf where it had none by then)."""
        out = np.full(self.num_samples, np.inf)
        if self._log_pos:
            pos = np.concatenate(self._log_pos)
            q = np.concatenate(self._log_q)
            d = np.concatenate(self._log_d)
            keep = q <= queries
            np.minimum.at(out, pos[keep], d[keep])
        return out

    @contextmanager
    def timed(self, phase: str):
        """Times a named phase of an attack that is not per-query work (e.g. transfer-PGD's
        surrogate gradients), so a benchmark can report it apart from the attack's per-query
        overhead: `with tracker.timed("surrogate"): ...`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phase_seconds[phase] = self.phase_seconds.get(phase, 0.0) + time.perf_counter() - start

    # ------------------------------------------------------------------ the query
    def query(self, positions: np.ndarray, images: np.ndarray, *, distances: np.ndarray | None = None) -> Answer:
        """Labels images[k] against the true label of sample positions[k] (positions index this
        tracker's samples, 0..n-1; a sample may appear many times). One oracle call.

        distances: optionally, float64 [m], each image's exact l2 distance to its original, when
        the caller measured it while making the image (`attackers.kernels` do, in the same pass;
        it saves reading every adversarial image back). The answer passes them on, but an image
        that would become a sample's best is measured again by the tracker before it is
        recorded: a wrong value can cost its caller an improvement, never falsify the record."""
        positions = np.asarray(positions, dtype=np.int64)
        images = np.asarray(images)
        m = positions.shape[0]
        if positions.ndim != 1 or images.shape[:1] != (m,) or tuple(images.shape[1:]) != tuple(self.originals.shape[1:]):
            raise ValueError(f"query: {m} positions for images of shape {list(images.shape)}")
        if images.dtype != np.float32:
            raise ValueError(f"query: images must be float32, got {images.dtype}")
        if m and (positions.min() < 0 or positions.max() >= self.num_samples):
            raise ValueError(f"query: positions must lie in [0, {self.num_samples})")
        if distances is not None:
            distances = np.asarray(distances, dtype=np.float64)
            if distances.shape != (m,):
                raise ValueError(f"query: {m} images but distances of shape {list(distances.shape)}")
        # Values (finite, within the bounds) are checked by the oracle, which refuses an invalid
        # request whole (InvalidRequest, a ValueError) and charges nothing: no second pass here.

        adversarial = np.zeros(m, dtype=bool)
        answer_distances = np.full(m, np.inf)
        wanted = np.bincount(positions, minlength=self.num_samples)
        affordable = wanted <= self.remaining
        answered = affordable[positions]
        while answered.any():
            send = np.flatnonzero(answered)
            everything = send.size == m
            start = time.perf_counter()
            try:
                got = self.oracle.labels(images if everything else images[send],
                                         self.sample_indices[positions if everything else positions[send]])
            except BudgetExceeded as error:
                # The oracle's count disagrees with ours (e.g. a server that was charged by an
                # earlier client). Believe it: those samples are done; retry without them.
                over = np.flatnonzero(np.isin(self.sample_indices, error.sample_indices))
                mine = np.isin(over, positions[send])
                if not error.sample_indices or not mine.any():
                    raise
                self.budget[over] = self.queries[over]
                answered &= ~np.isin(positions, over)
                continue
            finally:
                self.oracle_seconds += time.perf_counter() - start
            self.calls += 1
            got = np.asarray(got, dtype=np.int64)
            if got.shape != (send.size,):
                raise RuntimeError(f"the oracle returned {got.shape} labels for {send.size} images")
            self.queries += np.bincount(positions[send], minlength=self.num_samples)
            adversarial[send] = got != self.labels[positions[send]]
            self._record(positions, images, adversarial, answer_distances, distances)
            break
        return Answer(adversarial=adversarial, answered=answered, distances=answer_distances)

    def _record(self, positions: np.ndarray, images: np.ndarray, adversarial: np.ndarray,
                distances: np.ndarray, claimed: np.ndarray | None) -> None:
        """Measures every adversarial image (into `distances`; the `claimed` ones only where they
        would improve) and keeps each sample's closest."""
        hits = np.flatnonzero(adversarial)
        if hits.size == 0:
            return
        pos = positions[hits]
        # Distances of every hit (measured here in one fused pass, or as the caller claims
        # them), then the closest hit of each sample (the first one on ties) against its best.
        dist = l2_distances(images, self.originals, rows=hits, owners=pos) if claimed is None else claimed[hits]
        order = np.lexsort((np.arange(hits.size), dist, pos))
        first = np.ones(order.size, dtype=bool)
        first[1:] = pos[order][1:] != pos[order][:-1]
        pick = order[first]
        pick = pick[dist[pick] < self.best_distance[pos[pick]]]
        if claimed is None:
            copy_rows(self.best, pos[pick], images, hits[pick])
        elif pick.size:
            # Claimed closer: measured here, and kept only if it is (one pass per image).
            limits = self.best_distance[pos[pick]]
            dist[pick] = keep_closer(self.best, pos[pick], limits, images, hits[pick], self.originals, pos[pick])
            pick = pick[dist[pick] < limits]
        distances[hits] = dist
        if pick.size == 0:
            return
        improved = pos[pick]
        self.best_distance[improved] = dist[pick]
        self._log_pos.append(improved.copy())
        self._log_q.append(self.queries[improved].copy())
        self._log_d.append(dist[pick].copy())
        if self.on_improve is not None:
            start = time.perf_counter()
            try:
                self.on_improve(self, improved)
            finally:
                self.hook_seconds += time.perf_counter() - start
