"""The arena's Predict on one run as an oracle: `RemoteOracle`, over the one client (`arena.ground.client`).

The client retries UNAVAILABLE with the same request id (the server replays the answer instead
of charging twice); a budget refusal of the server becomes `BudgetExceeded` naming the samples
the server lists; any other failure surfaces as the client's `ArenaCallError`.

`RemoteOracle` behaves as `LocalOracle` does: labels only, a request that would take a sample
past its budget is refused whole before anything is sent (it keeps the server's per-sample
`remaining` from every answer), and batches larger than the server's published `max_batch`
are split. Request ids are deterministic (`<namespace>-<counter>`): an attack re-run with the
same seed on the same run sends the same requests under the same ids, which the server
replays free of charge; that is how `arena attack` resumes an interrupted run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from arena.ground.charging import SampleCharger
from arena.ground.client import ArenaCallError, ArenaClient, BudgetRefused, ReplayMismatch, max_batch_of
from attackers.oracle import BudgetExceeded, InvalidRequest, Oracle, OracleError, check_request


class RequestIds:
    """Deterministic request ids `<namespace>-<counter>`. `fork()` moves to a fresh namespace
    (after a replay mismatch), so no id is ever reused for a different request."""

    def __init__(self, namespace: str, counter: int = 0, on_issue: Callable[[int], None] | None = None) -> None:
        self.namespace = namespace
        self.counter = counter
        self.forks = 0
        self.on_issue = on_issue

    def next(self) -> str:
        rid = f"{self.namespace}{'~' + str(self.forks) if self.forks else ''}-{self.counter}"
        self.counter += 1
        if self.on_issue is not None:
            self.on_issue(self.counter)
        return rid

    def fork(self) -> None:
        self.forks += 1


class RemoteOracle(Oracle):
    """Predict on one arena run. `run` is the run's RunInfo (from StartRun or GetRun)."""

    def __init__(self, client: ArenaClient, run, request_ids: RequestIds, *, replay_until: int = 0) -> None:
        self.client = client
        self.run_id = run.run_id
        self._num_classes = int(run.num_classes)
        self.budget = int(run.budget_per_sample)
        self.num_samples = int(run.num_samples)
        self._max_batch = max_batch_of(run)
        used = np.zeros(self.num_samples, dtype=np.int64)
        used[: len(run.queries_used)] = np.asarray(run.queries_used, dtype=np.int64)
        self.remaining = self.budget - used        # per sample, as the server last told us
        self.ids = request_ids
        # Requests numbered below this were sent before an interruption: the server replays them
        # free, so they skip the local budget check (the remaining counts already include them).
        self.replay_until = int(replay_until)
        self.replayed = 0                           # requests answered from the server's replay store
        self._charger: SampleCharger | None = None   # the arena's charging rule, after a refusal
        self.calls = 0

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def labels(self, images: np.ndarray, sample_indices: np.ndarray) -> np.ndarray:
        images, ids = check_request(images, sample_indices, self.image_shape, self.bounds)
        if ids.size and ids.max() >= self.num_samples:
            raise InvalidRequest(f"sample id {int(ids.max())} out of range: the run has {self.num_samples} samples")
        if ids.size == 0:
            return np.zeros(0, dtype=np.int64)
        wanted = np.bincount(ids, minlength=self.num_samples)
        over = np.flatnonzero(wanted > self.remaining)
        if over.size and self.ids.counter >= self.replay_until:
            raise BudgetExceeded(
                f"request refused: it would take {over.size} sample(s) past the budget of {self.budget} "
                f"(e.g. sample {int(over[0])}: {int(self.remaining[over[0]])} left, {int(wanted[over[0]])} asked)",
                over.tolist(),
            )
        out = np.empty(ids.size, dtype=np.int64)
        for start in range(0, ids.size, self._max_batch):
            stop = min(ids.size, start + self._max_batch)
            while True:
                try:
                    response = self.client.predict_raw(self.run_id, images[start:stop], ids[start:stop],
                                                       request_id=self.ids.next())
                    break
                except ReplayMismatch:
                    self.ids.fork()  # a diverged resume: fresh ids, paid anew from here on
                except BudgetRefused as error:
                    raise BudgetExceeded(f"the arena refused the request: {error.details()}",
                                         self._refused(error.samples, images[start:stop], ids[start:stop])) from None
            labels = np.asarray(response.labels, dtype=np.int64)
            if labels.shape != (stop - start,):
                raise OracleError(f"the arena answered {labels.size} labels for {stop - start} images")
            out[start:stop] = labels
            remaining = np.asarray(response.remaining, dtype=np.int64)
            if remaining.shape == labels.shape:
                # each figure is that of the sample the image was charged to (rules v3: the sample
                # it is about), which the server names; an older server charged the named one
                charged = np.asarray(response.charged_samples, dtype=np.int64)
                chunk = charged if charged.shape == labels.shape else ids[start:stop]
                # A replayed answer tells the budget of its time, which can only have shrunk since.
                self.remaining[chunk] = np.minimum(self.remaining[chunk], remaining) if response.replayed else remaining
            self.replayed += int(response.replayed)
            self.calls += 1
        return out

    def _refused(self, exhausted, images: np.ndarray, ids: np.ndarray) -> list[int]:
        """The named samples whose images were charged to the `exhausted` samples the arena
        listed: the arena charges an image to the sample it is about (`arena.ground.charging`), which
        may not be the one named. The rule needs the whole split's images: fetched once, here."""
        exhausted = np.asarray(exhausted, dtype=np.int64)
        if exhausted.size == 0:
            return []
        if self._charger is None:
            split, _ = self.client.samples(self.run_id)
            self._charger = SampleCharger(split)
        charged = self._charger.charged(images, ids)
        return np.unique(ids[np.isin(charged, exhausted)]).tolist()

    def close(self) -> None:
        pass  # the client belongs to the caller


__all__ = ["ArenaCallError", "RemoteOracle", "RequestIds"]
