"""Budgets (docs/rules.md section 4): one account per team, defense and split, shared by all of
that team's runs there, so starting another run never refills it.

Two ledgers behind one interface:
- `Account`: the authority is this process's memory, mirroring the store (SQLite, one server).
  Reservations are made on the event loop; charges are applied on the worker thread that ran the
  model, just before the group commit (`Charge` ops); each account's `lock` (re-entrant) makes
  every step atomic. `reserve` refuses a request that would take any sample past the budget,
  counting what in-flight requests of every run on the account already reserved, so concurrent
  clients and runs never overdraw. `used` equals the durable charges once the pending commits
  land; after a restart it is reloaded from the store.
- `SharedAccount`: the authority is the database (`Store.shared_ledger`, PostgreSQL), so several
  server processes can share it. Each request's reservation is one all-or-nothing
  `Store.reserve` (a conditional update under row locks) and IS the charge: the group commit only
  records what the run spent (`RunSpend`), a failure before the answer gives it back with
  `Store.release`, and a replica killed between the two leaves the charge in place (never an
  answer without its charge). A Predict's reservation also claims its request id, so a retry
  that reaches another replica replays or adopts the claim instead of paying twice. `used` is
  then only this process's last view, for `remaining`.

`Charging` is the one reserve -> consume -> rollback sequence both Predict and SubmitAdversarials
go through, whichever the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import numpy as np

from arena.server.errors import BadRequest, BudgetExceeded, FinishedRun
from arena.server.store import Charge, RunRow, RunSpend, Store, StoreError, account_key

log = logging.getLogger("arena.ledger")


class AlreadyAnswered(Exception):
    """A shared ledger's reservation found the request id answered: nothing reserved, replay it."""


class Account:
    """One team's budget on one defense and split (per sample), kept in this process."""

    shared = False

    def __init__(self, key: tuple[str, str, str], used: np.ndarray, budget: Callable[[], int]) -> None:
        self.key = key                      # (team, defense, split)
        self.used = used.astype(np.int64)
        self.reserved = np.zeros_like(self.used)
        self._budget = budget               # the arena's current budget (the organizer may change it)
        self.lock = threading.RLock()

    @property
    def budget(self) -> int:
        return int(self._budget())

    @property
    def name(self) -> str:
        return account_key(*self.key)

    def _refuse(self, over: np.ndarray, taken: np.ndarray, field: str) -> None:
        budget = self.budget
        left = {int(s): int(max(budget - taken[s], 0)) for s in over[:10]}
        more = "" if over.size <= 10 else f" and {over.size - 10} more"
        raise BudgetExceeded(
            f"{field}: the request would exceed your team's budget of {budget} queries per sample on "
            f"this defense and split (shared by all your runs there) on samples {sorted(left)}{more} "
            f"(left: {', '.join(f'{s}: {n}' for s, n in left.items())}; each image counts for the sample it "
            f"is about, docs/rules.md section 4); refused whole, nothing charged",
            samples=[int(s) for s in over],
        )

    def reserve(self, counts: np.ndarray, field: str = "sample_indices") -> None:
        """Reserves counts[s] queries on each sample s, or raises BudgetExceeded (nothing reserved)."""
        with self.lock:
            taken = self.used + self.reserved
            over = np.flatnonzero((taken + counts > self.budget) & (counts > 0))
            if over.size:
                self._refuse(over, taken, field)
            self.reserved += counts

    def release(self, counts: np.ndarray) -> None:
        with self.lock:
            self.reserved -= counts

    def consume(self, counts: np.ndarray) -> None:
        with self.lock:
            self.reserved -= counts
            self.used += counts

    def unconsume(self, counts: np.ndarray) -> None:
        with self.lock:
            self.used -= counts

    def charges(self, run_id: str, counts: np.ndarray) -> list:
        """The write operations that make a consumed reservation durable (group commit)."""
        return [Charge(run_id, int(s), int(counts[s])) for s in np.flatnonzero(counts)]


class SharedAccount(Account):
    """The same budget when the store is shared by several server processes: every reservation
    is an atomic conditional update in the database (see the module docstring)."""

    shared = True

    def __init__(self, key: tuple[str, str, str], used: np.ndarray, budget: Callable[[], int], store: Store) -> None:
        super().__init__(key, used, budget)
        self.store = store

    def reserve_shared(self, counts: np.ndarray, run_id: str, field: str = "sample_indices",
                       request_id: str | None = None, digest=None) -> np.ndarray | None:
        """Blocking (one database round trip): call it off the event loop. With a request id (and
        `digest()`, its request digest) it claims the id: raises AlreadyAnswered (nothing reserved)
        if the store holds its answer, BadRequest if the id's claim is for another request, and
        returns None if it adopted an earlier attempt's claim (nothing reserved: that attempt's
        reservation pays for whichever answers first). Otherwise returns what the database says
        each of the request's samples has used right after this charge (int64 [num_samples],
        meaningful on those samples only): the request's own `remaining`, whatever other replicas
        charged since."""
        samples = np.flatnonzero(counts)
        budget = self.budget
        result = self.store.reserve(self.name, samples, counts[samples], budget, run_id=run_id,
                                    request_id=request_id, digest=digest() if request_id is not None else None)
        if result.replay:
            raise AlreadyAnswered(request_id)
        if result.mismatch:
            raise BadRequest(f"request_id: {request_id!r} was already used for a different request in this run")
        if result.adopted:
            return None
        if result.closed:
            raise FinishedRun(f"run_id: run {run_id!r} is finished; it takes no more queries")
        with self.lock:
            self.used[result.samples] = np.maximum(self.used[result.samples], result.used)
            if not result.granted:
                taken = self.used.copy()
                taken[result.samples] = result.used
                over = result.samples[result.used + counts[result.samples] > budget]
                self._refuse(over, taken, field)
        after = np.zeros_like(self.used)
        after[result.samples] = result.used
        return after

    def release_shared(self, counts: np.ndarray, run_id: str, request_id: str | None = None) -> None:
        samples = np.flatnonzero(counts)
        try:
            self.store.release(self.name, samples, counts[samples], run_id=run_id, request_id=request_id)
        except StoreError as error:  # the charge stays: never an answer without a charge
            log.error("run %s: could not give back %d reserved queries: %s", run_id, int(counts.sum()), error)
            return
        with self.lock:
            self.used[samples] = np.maximum(self.used[samples] - counts[samples], 0)

    def reserve(self, counts: np.ndarray, field: str = "sample_indices") -> None:
        raise TypeError("a shared account reserves in the database: use reserve_shared, off the event loop")

    def consume(self, counts: np.ndarray) -> None:
        pass                         # the reservation was the charge

    def charges(self, run_id: str, counts: np.ndarray) -> list:
        return [RunSpend(run_id, int(s), int(counts[s])) for s in np.flatnonzero(counts)]


def make_account(store: Store, key: tuple[str, str, str], used: np.ndarray, budget: Callable[[], int]) -> Account:
    """The ledger of an account: in this process, or in the database when the store is shared."""
    if store.shared_ledger:
        return SharedAccount(key, used, budget, store)
    return Account(key, used, budget)


class RunState:
    """One run in memory: its row, its account, its own spend and best distances, what is in flight."""

    def __init__(self, row: RunRow, account: Account, spent: np.ndarray, best: np.ndarray) -> None:
        self.row = row
        self.account = account
        self.spent = spent.astype(np.int64)       # what this run itself was charged, per sample
        self.best = best.astype(np.float64)
        self.finishing = row.finished
        self.num_classes: int | None = None
        self.inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # request_id -> the in-flight request's batcher job (a duplicate waits for it, then replays)
        self.pending: dict = {}
        # ids of the run's answered requests (None: not loaded, finished, or another replica may
        # answer any id: ask the store)
        self.request_ids: set[str] | None = None

    @property
    def shared(self) -> bool:
        return self.account.shared

    @property
    def lock(self) -> threading.RLock:
        return self.account.lock

    @property
    def budget(self) -> int:
        return self.account.budget

    @property
    def num_samples(self) -> int:
        return self.row.num_samples

    def enter(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


class Charging:
    """The reserve -> consume -> rollback protocol of one request on one run.

    `reserve` (on the event loop for a local account; `reserve_shared`, off it, for a shared one)
    raises BudgetExceeded with nothing reserved; then, on the worker thread before the group
    commit and with `state.lock` held, `consume()` turns the reservation into charges and `ops()`
    gives their write operations; if the job fails, `rollback()` undoes whichever happened.
    `on_rollback` restores what the caller changed in memory besides the budget (best distances)."""

    def __init__(self, state: RunState, counts: np.ndarray, on_rollback: Callable[[], None] | None = None,
                 request_id: str | None = None) -> None:
        self.state = state
        self.counts = counts
        self.request_id = request_id
        self.consumed = False
        self.adopted = False                 # a shared claim adopted: nothing reserved here
        self.after: np.ndarray | None = None  # a shared ledger's post-charge usage, from the database
        self._on_rollback = on_rollback

    def reserve(self) -> None:
        self.state.account.reserve(self.counts)

    def reserve_shared(self, digest=None) -> bool:
        """Blocking; returns True when it adopted an earlier attempt's claim on the request id."""
        account = self.state.account
        self.after = account.reserve_shared(self.counts, self.state.row.run_id, request_id=self.request_id,
                                            digest=digest)
        self.adopted = self.after is None
        return self.adopted

    def remaining(self, samples: np.ndarray) -> np.ndarray:
        """Per image, its sample's budget left right after this request's own charge (docs/rules.md
        section 4): a local ledger's count just after `consume` (under `state.lock`), or the value
        the database returned with the reservation. An adopted claim (nothing reserved here) falls
        back on this process's latest view."""
        used = self.after if self.after is not None else self.state.account.used
        return np.maximum(self.state.budget - used[samples], 0)

    def consume(self) -> None:
        self.state.account.consume(self.counts)
        self.state.spent += self.counts
        self.consumed = True

    def ops(self) -> list:
        return self.state.account.charges(self.state.row.run_id, self.counts)

    def rollback(self) -> None:
        state, account = self.state, self.state.account
        if self.adopted:       # the claim's reservation pays for its first attempt
            return
        with state.lock:
            if self.consumed:
                state.spent -= self.counts
                if self._on_rollback is not None:
                    self._on_rollback()
        if account.shared:
            account.release_shared(self.counts, state.row.run_id, self.request_id)
        elif self.consumed:
            account.unconsume(self.counts)
        else:
            account.release(self.counts)
