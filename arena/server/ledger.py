"""Per-run budget ledger in memory, mirroring the store (docs/rules.md section 4).

Reservations are made on the server's event loop; charges are applied on the worker thread that
ran the model, just before the group commit; `lock` (re-entrant) makes every step atomic.
`reserve` refuses a request that would take any sample past its budget, counting what
concurrent in-flight requests already reserved, so concurrent clients can never overdraw.
A reservation becomes `used` when its request's charge is written (`consume`), or is released
when the request fails before that (`release`). `used` always equals the durable charges once
the pending commits land; after a restart it is reloaded from the store.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from arena.server.errors import BudgetExceeded
from arena.server.store import RunRow


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

    def reserve(self, counts: np.ndarray, field: str = "sample_indices") -> None:
        """Reserves counts[s] queries on each sample s, or raises BudgetExceeded (nothing reserved)."""
        with self.lock:
            self._reserve(counts, field)

    def _reserve(self, counts: np.ndarray, field: str) -> None:
        after = self.used + self.reserved + counts
        over = np.flatnonzero((after > self.budget) & (counts > 0))
        if over.size:
            left = {int(s): int(max(self.budget - self.used[s] - self.reserved[s], 0)) for s in over[:10]}
            more = "" if over.size <= 10 else f" and {over.size - 10} more"
            raise BudgetExceeded(
                f"{field}: the request would exceed the budget of {self.budget} queries per sample on samples "
                f"{sorted(left)}{more} (left: {', '.join(f'{s}: {n}' for s, n in left.items())}); "
                "refused whole, nothing charged",
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

    def enter(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()
