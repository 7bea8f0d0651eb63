"""Group commit: whatever piled up while the previous commit ran goes into ONE store transaction.

Leader/follower, without a thread of its own: a worker thread that has write operations queues
them and takes the commit lock; whoever holds it commits everything queued so far (its own and
its followers') in one transaction, and a follower that finds its operations already committed
returns at once. Uncontended, a worker commits its own batch with no thread hand-off; under
load, one transaction (and one fsync) covers many merged micro-batches.

`commit_blocking(ops)` returns once `ops` are durable or raises the store's error; `await
commit(ops)` does the same from the event loop (on a thread of its own).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from arena.server.store import Store, WriteOp


@dataclass
class WriterStats:
    """Counters of the group-commit writer (commits, operations, jobs)."""

    commits: int = 0
    ops: int = 0
    jobs: int = 0


@dataclass(eq=False)
class _Entry:
    ops: list[WriteOp]
    done: bool = False
    error: BaseException | None = field(default=None)


class GroupCommitWriter:
    """One thread that commits the write operations of many requests in one store transaction; a
    request's labels are released only after its commit."""
    def __init__(self, store: Store, max_ops: int = 50_000) -> None:
        self._store = store
        self._max_ops = max_ops
        self._queue: list[_Entry] = []
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._closed = False
        self.stats = WriterStats()

    def commit_blocking(self, ops: list[WriteOp]) -> None:
        if not ops:
            return
        entry = _Entry(ops)
        with self._queue_lock:
            if self._closed:
                raise RuntimeError("the writer is closed")
            self._queue.append(entry)
        while not entry.done:
            with self._commit_lock:
                if entry.done:          # a leader committed it while we waited for the lock
                    break
                self._commit_queued()
        if entry.error is not None:
            raise entry.error

    def _commit_queued(self) -> None:
        """Under the commit lock: one transaction for what is queued (up to max_ops)."""
        with self._queue_lock:
            group, size = [], 0
            while self._queue and (not group or size + len(self._queue[0].ops) <= self._max_ops):
                entry = self._queue.pop(0)
                group.append(entry)
                size += len(entry.ops)
        if not group:
            return
        error: BaseException | None = None
        try:
            self._store.write([op for entry in group for op in entry.ops])
            self.stats.commits += 1
            self.stats.ops += size
            self.stats.jobs += len(group)
        except BaseException as exc:  # every entry of the group gets it
            error = exc
        for entry in group:
            entry.error = error
            entry.done = True

    async def commit(self, ops: list[WriteOp]) -> None:
        """From the event loop: returns when ops are committed (raises the store's error)."""
        await asyncio.get_running_loop().run_in_executor(None, self.commit_blocking, ops)

    def close(self) -> None:
        """Commits what is still queued; later commits raise."""
        with self._queue_lock:
            self._closed = True
        with self._commit_lock:
            while self._queue:
                self._commit_queued()
