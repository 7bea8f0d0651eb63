"""The served defenses: loading an accepted defense's ONNX file (memory-bounded cache,
`arena.ground.inference.SessionCache`) and one micro-batcher per defense (`arena.server.batching`).
Rows live in the store; this module only turns them into something that answers.

A submitted model is untrusted code: with `isolate` (the default of `arena serve`) each served
defense runs in its own worker process under a memory limit (`arena.server.workers`), so a crash,
a hang or a memory blow-up fails only that defense's requests; without it, in this process
(`--in-process`, for benchmarks and trusted deployments)."""

from __future__ import annotations

from arena.ground.contract import DefenseStatus
from arena.ground.inference import DefenseModel, SessionCache, make_session
from arena.server import sandbox
from arena.server.batching import MicroBatcher, Workers
from arena.server.store import Store, StoreError
from arena.server.workers import WorkerDefense
from arena.server.writer import GroupCommitWriter


class DefenseRegistry:
    """Sessions and batchers of the accepted defenses, created on first use."""

    def __init__(self, store: Store, writer: GroupCommitWriter, *, threads: int, max_chunk: int,
                 cache_bytes: int, concurrent_runs: int, batch_wait_s: float, timeout_s: float,
                 image_timeout_s: float | None = None,
                 isolate: bool = False, capacity: int = 256, children: sandbox.Children | None = None,
                 worker_limits: sandbox.ChildLimits | None = None, metrics=None) -> None:
        self.metrics = metrics
        self.store = store
        self.isolate = isolate
        self.capacity = capacity
        self.children = children if children is not None else sandbox.Children()
        self.worker_limits = worker_limits
        self.writer = writer
        self.threads = threads
        self.max_chunk = max_chunk
        self.concurrent_runs = concurrent_runs
        self.batch_wait_s = batch_wait_s
        self.timeout_s = timeout_s
        self.image_timeout_s = timeout_s if image_timeout_s is None else image_timeout_s
        self.pool = Workers(max(2, min(8, threads * 2)))
        self.sessions = SessionCache(self._load, cache_bytes, on_evict=_close_worker)
        self.batchers: dict[str, MicroBatcher] = {}

    def _load(self, name: str) -> DefenseModel:
        row = self.store.get_defense(name)
        if row is None or row.status != DefenseStatus.ACCEPTED:
            raise StoreError(f"defense {name!r} is not served")
        data = self.store.blobs.get(row.sha256)
        if self.isolate:
            return WorkerDefense(
                name, data, row.serving_mode, self.max_chunk, row.num_classes, capacity=self.capacity,
                slots=max(1, self.concurrent_runs), timeout_s=self.timeout_s, children=self.children,
                limits=self.worker_limits or sandbox.ChildLimits(0, self.threads))
        return DefenseModel(name, make_session(data, self.threads), row.serving_mode, self.max_chunk, len(data))

    def add(self, model: DefenseModel) -> None:
        """A defense validation just loaded: served without loading it again."""
        self.sessions.put(model)

    def batcher(self, name: str) -> MicroBatcher:
        batcher = self.batchers.get(name)
        if batcher is None:
            batcher = self.batchers[name] = MicroBatcher(
                name, lambda: self.sessions.get(name), self.pool, self.writer,
                run_images=self.max_chunk, max_inflight=self.concurrent_runs,
                max_wait_s=self.batch_wait_s, timeout_s=self.timeout_s, image_timeout_s=self.image_timeout_s,
            )
            if self.metrics is not None:
                batcher.on_run = self.metrics.batch_observer(name)
        return batcher

    async def drain(self) -> None:
        for batcher in list(self.batchers.values()):
            await batcher.drain()

    def close(self) -> None:
        self.pool.shutdown()


def _close_worker(model) -> None:
    close = getattr(model, "close", None)   # a WorkerDefense ends its child; in-process: nothing
    if close is not None:
        close()
