"""Budgets in memory, mirroring the store (docs/rules.md section 4).

An `Account` is the budget of one team on one defense and split: B queries per sample, shared
by every run of that team there, so starting another run never refills it. A `RunState` is one
run: its row, the account it spends, what it spent itself and its best verified distances.

Reservations are made on the server's event loop; charges are applied on the worker thread that
ran the model, just before the group commit; each account's `lock` (re-entrant) makes every step
atomic. `reserve` refuses a request that would take any sample past the budget, counting what
concurrent in-flight requests of every run on the account already reserved, so concurrent
clients and runs can never overdraw. A reservation becomes `used` when its request's charge is
written (`consume`), or is released when the request fails before that (`release`). `used`
always equals the durable charges once the pending commits land; after a restart it is reloaded
from the store.

`charge_protocol` is the one reserve -> prepare -> rollback sequence both Predict and
SubmitAdversarials go through.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np

from arena.server.errors import BudgetExceeded
from arena.server.store import RunRow


class Account:
    """One team's budget on one defense and split (per sample)."""

    def __init__(self, key: tuple[str, str, str], used: np.ndarray, budget: Callable[[], int]) -> None:
        self.key = key                      # (team, defense, split)
        self.used = used.astype(np.int64)
        self.reserved = np.zeros_like(self.used)
        self._budget = budget               # the arena's current budget (the organizer may change it)
        self.lock = threading.RLock()

    @property
    def budget(self) -> int:
        return int(self._budget())

    def remaining(self) -> np.ndarray:
        return np.maximum(self.budget - self.used, 0)

    def reserve(self, counts: np.ndarray, field: str = "sample_indices") -> None:
        """Reserves counts[s] queries on each sample s, or raises BudgetExceeded (nothing reserved)."""
        with self.lock:
            budget = self.budget
            after = self.used + self.reserved + counts
            over = np.flatnonzero((after > budget) & (counts > 0))
            if over.size:
                left = {int(s): int(max(budget - self.used[s] - self.reserved[s], 0)) for s in over[:10]}
                more = "" if over.size <= 10 else f" and {over.size - 10} more"
                raise BudgetExceeded(
                    f"{field}: the request would exceed your team's budget of {budget} queries per sample on "
                    f"this defense and split (shared by all your runs there) on samples {sorted(left)}{more} "
                    f"(left: {', '.join(f'{s}: {n}' for s, n in left.items())}); refused whole, nothing charged",
                    samples=[int(s) for s in over],
                )
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
        # ids of the run's answered requests (None: not loaded; finished runs ask the store)
        self.request_ids: set[str] | None = None

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
    """The reserve -> prepare -> rollback protocol of one request on one run.

    `reserve()` on the event loop (raises BudgetExceeded, nothing reserved); then, on the worker
    thread before the group commit, `consume()` turns the reservation into charges; if the job
    fails, `rollback()` undoes whichever of the two happened. `on_rollback` restores what the
    caller changed in memory besides the budget (e.g. best distances)."""

    def __init__(self, state: RunState, counts: np.ndarray, on_rollback: Callable[[], None] | None = None) -> None:
        self.state = state
        self.counts = counts
        self.consumed = False
        self._on_rollback = on_rollback

    def reserve(self) -> None:
        self.state.account.reserve(self.counts)
        self.state.enter()

    def consume(self) -> None:
        """Call with `state.lock` held."""
        self.state.account.consume(self.counts)
        self.state.spent += self.counts
        self.consumed = True

    def rollback(self) -> None:
        with self.state.lock:
            if self.consumed:
                self.state.account.unconsume(self.counts)
                self.state.spent -= self.counts
                if self._on_rollback is not None:
                    self._on_rollback()
            else:
                self.state.account.release(self.counts)
