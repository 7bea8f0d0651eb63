"""Per-run budget ledger in memory, mirroring the store (docs/rules.md section 4).

Reservations are made on the server's event loop; charges are applied on the worker thread that
ran the model, just before the group commit; `lock` (re-entrant) makes every step atomic.
`reserve` refuses a request that would take any sample past its budget, counting what
concurrent in-flight requests already reserved, so concurrent clients can never overdraw.
A reservation becomes `used` when its request's charge is written (`consume`), or is released
when the request fails before that (`release`). `used` always equals the durable charges once
the pending commits land; after a restart it is reloaded from the store.

`SharedRunState` is the same ledger for a store that several server processes share
(`Store.shared_ledger`, PostgreSQL): the authority is the database, never this process. Each
request's reservation is one all-or-nothing `Store.reserve` (a conditional update under row
locks) and IS the charge: the group commit adds no `Charge`, a failure before the answer gives it
back with `Store.release`, and a replica killed between the two leaves the charge in place (never
an answer without its charge). A Predict's reservation also claims its request id: a retry on
another replica adopts the claim instead of paying again. `used` is then only this process's
last view, for `remaining`.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np

import logging

from arena.server.errors import BadRequest, BudgetExceeded, FinishedRun
from arena.server.store import Charge, RunRow, Store, StoreError

log = logging.getLogger("arena.ledger")


class AlreadyAnswered(Exception):
    """A shared ledger's reservation found the request id answered: nothing reserved, replay it."""


class RunState:
    def __init__(self, row: RunRow, used: np.ndarray, best: np.ndarray) -> None:
        self.row = row
        self.used = used.astype(np.int64)
        self.reserved = np.zeros_like(self.used)
        self.best = best.astype(np.float64)
        self.finishing = row.finished
        self.num_classes: int | None = None
        self.lock = threading.RLock()
        self.inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # request_id -> the in-flight request's batcher job (a duplicate waits for it, then replays)
        self.pending: dict = {}
        # ids of the run's answered requests (None: not loaded; finished runs ask the store)
        self.request_ids: set[str] | None = None

    @property
    def budget(self) -> int:
        return self.row.budget

    @property
    def num_samples(self) -> int:
        return self.row.num_samples

    shared = False      # budgets are kept in this process (see SharedRunState)

    def reserve(self, counts: np.ndarray, field: str = "sample_indices") -> None:
        """Reserves counts[s] queries on each sample s, or raises BudgetExceeded (nothing reserved)."""
        with self.lock:
            self._reserve(counts, field)

    def _reserve(self, counts: np.ndarray, field: str) -> None:
        after = self.used + self.reserved + counts
        over = np.flatnonzero((after > self.budget) & (counts > 0))
        if over.size:
            self._refuse(over, self.used + self.reserved, field)
        self.reserved += counts

    def _refuse(self, over: np.ndarray, taken: np.ndarray, field: str) -> None:
        left = {int(s): int(max(self.budget - taken[s], 0)) for s in over[:10]}
        more = "" if over.size <= 10 else f" and {over.size - 10} more"
        raise BudgetExceeded(
            f"{field}: the request would exceed the budget of {self.budget} queries per sample on samples "
            f"{sorted(left)}{more} (left: {', '.join(f'{s}: {n}' for s, n in left.items())}); "
            "refused whole, nothing charged",
            samples=[int(s) for s in over],
        )

    def charges(self, counts: np.ndarray) -> list[Charge]:
        """The write operations that make a consumed reservation durable (group commit)."""
        run_id = self.row.run_id
        return [Charge(run_id, int(s), int(counts[s])) for s in np.flatnonzero(counts)]

    def release(self, counts: np.ndarray, request_id: str | None = None) -> None:
        with self.lock:
            self.reserved -= counts

    def consume(self, counts: np.ndarray) -> None:
        with self.lock:
            self.reserved -= counts
            self.used += counts

    def unconsume(self, counts: np.ndarray, request_id: str | None = None) -> None:
        with self.lock:
            self.used -= counts

    def enter(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


class SharedRunState(RunState):
    """A run's ledger when the store is shared by several server processes: every reservation
    is an atomic conditional update in the database (see the module docstring)."""

    shared = True

    def __init__(self, row: RunRow, used: np.ndarray, best: np.ndarray, store: Store) -> None:
        super().__init__(row, used, best)
        self.store = store
        self.request_ids = None      # another replica may have answered any id: always ask the store

    def reserve(self, counts: np.ndarray, field: str = "sample_indices", request_id: str | None = None,
                digest=None) -> bool:
        """Blocking (one database round trip): call it off the event loop. With a request id (and
        `digest()`, its request digest) it claims the id: raises AlreadyAnswered (nothing reserved)
        if the store holds its answer, BadRequest if the id's claim is for another request, and
        returns True if it adopted an earlier attempt's claim (nothing reserved: that attempt's
        reservation pays for whichever answers first)."""
        samples = np.flatnonzero(counts)
        result = self.store.reserve(self.row.run_id, samples, counts[samples], self.budget, run_id=self.row.run_id,
                                    request_id=request_id, digest=digest() if request_id is not None else None)
        if result.replay:
            raise AlreadyAnswered(request_id)
        if result.mismatch:
            raise BadRequest(f"request_id: {request_id!r} was already used for a different request in this run")
        if result.adopted:
            return True
        if result.closed:
            self.finishing = True
            raise FinishedRun(f"run_id: run {self.row.run_id!r} is finished; it takes no more queries")
        with self.lock:
            self.used[result.samples] = np.maximum(self.used[result.samples], result.used)
            if not result.granted:
                taken = self.used.copy()
                taken[result.samples] = result.used
                over = result.samples[result.used + counts[result.samples] > self.budget]
                self._refuse(over, taken, field)
        return False

    def release(self, counts: np.ndarray, request_id: str | None = None) -> None:
        samples = np.flatnonzero(counts)
        try:
            self.store.release(self.row.run_id, samples, counts[samples], run_id=self.row.run_id,
                               request_id=request_id)
        except StoreError as error:  # the charge stays: never an answer without a charge
            log.error("run %s: could not give back %d reserved queries: %s", self.row.run_id,
                      int(counts.sum()), error)
            return
        with self.lock:
            self.used[samples] = np.maximum(self.used[samples] - counts[samples], 0)

    def consume(self, counts: np.ndarray) -> None:
        pass                         # the reservation was the charge

    def unconsume(self, counts: np.ndarray, request_id: str | None = None) -> None:
        self.release(counts, request_id)

    def charges(self, counts: np.ndarray) -> list[Charge]:
        return []


def run_state(store: Store, row: RunRow, used: np.ndarray, best: np.ndarray) -> RunState:
    """The ledger for a run: in this process, or in the database when the store is shared."""
    if store.shared_ledger:
        return SharedRunState(row, used, best, store)
    return RunState(row, used, best)
