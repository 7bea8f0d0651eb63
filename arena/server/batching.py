"""Dynamic micro-batching: concurrent classification requests on one defense share one ORT run.

One `MicroBatcher` per defense, with at most `max_inflight` model runs in flight (ONNX
Runtime's intra-op parallelism leaves cores idle on small models; two runs at once fill them).
Requests that arrive while the runs are busy queue up and go together into the next run (up to
`run_images` images, at least one request; optionally waiting up to `max_wait_s` for company, 0
by default so a lone request never waits). After a run, every request's write operations
(charges, replay record, query hashes, adversarials) are committed in one group commit and only
then are the labels released; the next run starts meanwhile. Labels do not depend on the
company a request had: see `arena.ground.inference`.

The event loop only queues and dispatches: model run, preparing the write operations (digests
included) and the group commit happen on one worker thread per run, and the loop wakes once
per run to release the labels (plain callbacks, no task or shielded future per request: this
path runs for every Predict).

Failures (docs/rules.md section 5, rules v3): a label is a verdict only if it reproduces on the
image alone. When a run fails (an error, a crash, or no answer within `timeout_s`), each of its
images is run again alone under the per-image limit `image_timeout_s`: an image that fails alone
with an error or a crash counts as misclassified (label -1), as logits that are not all finite
always do; an image that still gets no answer in time makes the requests holding it UNAVAILABLE
(rolled back, nothing charged): a time-out caused by load, concurrency or request size is never a
verdict. The other requests of the run are answered as usual.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from arena.ground.contract import FAILED_LABEL
from arena.server.errors import Unavailable
from arena.ground.inference import DefenseModel
from arena.server.store import WriteOp
from arena.server.writer import GroupCommitWriter

log = logging.getLogger("arena.batching")


@dataclass
class BatchResult:
    """The labels of one request's images after a model run."""

    labels: np.ndarray            # int32 [n]; FAILED_LABEL where the defense failed


@dataclass(eq=False)
class Job:
    """One request's images in the batcher. `future` resolves to its BatchResult once durable;
    the caller may await it directly (cancelling it does not stop the job: its charge is still
    committed, and `finished` callbacks always run)."""

    images: np.ndarray
    prepare: Callable[[BatchResult], list[WriteOp]]   # called on a worker thread: must be thread-safe
    rollback: Callable[[], None]                      # idem
    future: asyncio.Future
    result: BatchResult | None = field(default=None)
    failure: BaseException | None = field(default=None)   # set on the worker thread: this job alone failed
    error: BaseException | None = field(default=None)
    done: bool = False
    _waiters: list[asyncio.Future] = field(default_factory=list)
    _callbacks: list[Callable[[], None]] = field(default_factory=list)

    def when_finished(self, callback: Callable[[], None]) -> None:
        """Runs callback on the loop once the job is finished (committed or failed)."""
        if self.done:
            callback()
        else:
            self._callbacks.append(callback)

    async def wait(self) -> BatchResult:
        """Another waiter (e.g. a duplicate request): not affected by the owner's cancellation."""
        if not self.done:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        if self.error is not None:
            raise self.error
        return self.result

    def _finish(self, error: BaseException | None) -> None:
        self.done = True
        self.error = error
        for future in [self.future, *self._waiters]:
            if not future.done():
                if error is None:
                    future.set_result(self.result)
                else:
                    future.set_exception(error)
        if error is not None and self.future.done() and not self.future.cancelled():
            self.future.exception()  # retrieved: no "never retrieved" warning when nobody awaits
        for callback in self._callbacks:
            callback()


@dataclass
class BatcherStats:
    """Counters of one micro-batcher (runs, images, merged runs, failures), read by tests and benchmarks."""

    runs: int = 0
    images: int = 0
    merged_runs: int = 0          # runs that carried more than one request
    failures: int = 0             # failed model runs (errors, crashes and time-outs)
    timeouts: int = 0             # of which time-outs
    retried_images: int = 0       # images run again alone after a failed run
    unavailable_images: int = 0   # images that timed out alone too (their requests: UNAVAILABLE)


class Workers:
    """A minimal thread pool for model runs: a queue and N threads, no Future per task (the
    standard executor's bookkeeping costs tens of microseconds per submit on this hot path)."""

    def __init__(self, threads: int, name: str = "arena-infer") -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._loop, name=f"{name}_{i}", daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], object], done: Callable[[object, BaseException | None], None]) -> None:
        """Runs fn() on a worker, then done(result, error) on that worker."""
        self._queue.put((fn, done))

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, done = item
            try:
                result, error = fn(), None
            except BaseException as exc:  # handed to done()
                result, error = None, exc
            done(result, error)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()


class MicroBatcher:
    """Merges concurrent requests on one defense into model runs and releases each request's labels
    once its charges are committed (see the module docstring)."""
    def __init__(
        self,
        name: str,
        load: Callable[[], DefenseModel],
        executor: Workers,
        writer: GroupCommitWriter,
        *,
        run_images: int = 64,
        max_inflight: int = 2,
        max_wait_s: float = 0.0,
        timeout_s: float = 30.0,
        image_timeout_s: float | None = None,
    ) -> None:
        self.name = name
        self._load = load
        self._executor = executor
        self._writer = writer
        self._run_images = run_images        # a run takes queued requests up to this many images
        self._max_inflight = max_inflight    # concurrent model runs (ORT's own parallelism is partial)
        self._max_wait_s = max_wait_s
        self._timeout_s = timeout_s
        self._image_timeout_s = timeout_s if image_timeout_s is None else image_timeout_s
        self._queue: deque[Job] = deque()
        self._queued_images = 0
        self._inflight = 0                   # model runs going on (at most max_inflight)
        self._active = 0                     # runs dispatched and not finished (running or committing)
        self._dispatch_scheduled = False
        self._wait_timer: asyncio.TimerHandle | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.stats = BatcherStats()
        self.on_run: Callable[[int, int, float], None] | None = None   # (images, requests, seconds): metrics

    @property
    def queued_images(self) -> int:
        return self._queued_images

    def submit(
        self,
        images: np.ndarray,
        prepare: Callable[[BatchResult], list[WriteOp]],
        rollback: Callable[[], None],
    ) -> Job:
        """Queues `images` and returns the job; `job.future` resolves to their BatchResult once
        the operations that prepare(result) returned are durable, or fails after rollback()."""
        loop = asyncio.get_running_loop()
        job = Job(images, prepare, rollback, loop.create_future())
        self._queue.append(job)
        self._queued_images += images.shape[0]
        self._idle.clear()
        if not self._dispatch_scheduled:
            # dispatch after the current tick: requests arriving together share a run
            self._dispatch_scheduled = True
            loop.call_soon(self._dispatch)
        return job

    def _dispatch(self, waited: bool = False) -> None:
        self._dispatch_scheduled = False
        if waited:
            self._wait_timer = None
        loop = asyncio.get_running_loop()
        while self._queue and self._inflight < self._max_inflight:
            if (self._max_wait_s > 0 and not waited and self._queued_images < self._run_images):
                if self._wait_timer is None:   # wait a little for company
                    self._wait_timer = loop.call_later(self._max_wait_s, self._dispatch, True)
                return
            jobs = self._take()
            self._queued_images -= sum(j.images.shape[0] for j in jobs)
            self._inflight += 1
            self._active += 1
            self.stats.runs += 1
            self.stats.images += sum(j.images.shape[0] for j in jobs)
            if len(jobs) > 1:
                self.stats.merged_runs += 1
            # the slot is given back once the model has run, before the group commit: the next run
            # starts while this one's commit waits for its fsync (the commit still precedes the labels)
            release = _Once(lambda: _call_soon_threadsafe(loop, self._run_done))
            self._executor.submit(
                lambda jobs=jobs, release=release: self._run_and_commit(jobs, release),
                lambda result, error, jobs=jobs, release=release: (
                    release(), _call_soon_threadsafe(loop, self._finished, jobs, result, error)))

    def _run_done(self) -> None:
        self._inflight -= 1
        self._dispatch()

    def _finished(self, jobs: list[Job], result: Exception | None, load_error: BaseException | None) -> None:
        self._active -= 1
        error = result
        if load_error is not None:  # the model could not be loaded: nothing charged, retryable
            log.error("defense %s could not be loaded: %s", self.name, load_error)
            error = Unavailable(f"defense {self.name!r} is not available right now "
                                f"({type(load_error).__name__}); retry")
            for job in jobs:
                job.rollback()
        for job in jobs:
            job._finish(job.failure or error)
        self._dispatch()          # the next run starts with what queued meanwhile
        if not self._queue and self._active == 0:
            self._idle.set()

    async def drain(self) -> None:
        """Waits for queued work and pending commits (graceful shutdown)."""
        await self._idle.wait()

    def _take(self, already: int = 0) -> list[Job]:
        jobs: list[Job] = []
        total = already
        while self._queue:
            n = self._queue[0].images.shape[0]
            if (jobs or already) and total + n > self._run_images:
                break
            jobs.append(self._queue.popleft())
            total += n
        return jobs

    # ---------------------------------------------------------------- worker thread

    def _run_and_commit(self, jobs: list[Job], release: Callable[[], None]) -> Exception | None:
        """Runs the model on the jobs' images, gives the run's slot back (`release`), then commits
        every job's operations at once. Returns None when durable, or the error to give the
        callers (after rolling back)."""
        start = time.perf_counter()
        try:
            results = self._run([j.images for j in jobs])
        finally:
            release()
        if self.on_run is not None:
            self.on_run(sum(j.images.shape[0] for j in jobs), len(jobs), time.perf_counter() - start)
        ops: list[WriteOp] = []
        for job, result in zip(jobs, results):
            if isinstance(result, BaseException):   # timed out alone: nothing charged, retryable
                job.failure = result
                job.rollback()
                continue
            job.result = result
            ops.extend(job.prepare(result))
        try:
            self._writer.commit_blocking(ops)
        except Exception as error:
            log.error("group commit failed for defense %s: %s", self.name, error)
            for job in jobs:
                if job.failure is None:
                    job.rollback()
            return Unavailable("the arena could not record this request; retry it with the same request_id")
        return None

    def _run(self, arrays: list[np.ndarray]) -> list[BatchResult | Unavailable]:
        """Each request's labels, or Unavailable for a request holding an image that timed out
        even alone (see the module docstring)."""
        model = self._load()
        sizes = [a.shape[0] for a in arrays]
        images = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        labels = self._labels(model, images, self._timeout_s)
        timed_out = np.zeros(images.shape[0], dtype=bool)
        if not isinstance(labels, np.ndarray):   # a verdict only if it reproduces on the image alone
            labels = np.empty(images.shape[0], dtype=np.int32)
            self.stats.retried_images += images.shape[0]
            for i in range(images.shape[0]):
                own = self._labels(model, images[i:i + 1], self._image_timeout_s)
                if isinstance(own, np.ndarray):
                    labels[i] = own[0]
                elif own == _ERROR:
                    labels[i] = FAILED_LABEL
                else:
                    timed_out[i] = True
            self.stats.unavailable_images += int(timed_out.sum())
        out, start = [], 0
        for n in sizes:
            if timed_out[start:start + n].any():
                out.append(Unavailable(f"defense {self.name!r} did not classify an image of this request within "
                                       f"{self._image_timeout_s:g} s, even alone; nothing was charged: retry "
                                       "(docs/rules.md section 5)"))
            else:
                out.append(BatchResult(labels[start:start + n]))
            start += n
        return out

    def _labels(self, model: DefenseModel, images: np.ndarray, timeout_s: float) -> np.ndarray | str:
        """The labels, or _ERROR (the model erred or crashed) or _TIMEOUT (no answer in time)."""
        options = ort.RunOptions()
        token = WATCHDOG.arm(options, timeout_s)   # in this process; a worker keeps its own deadline
        try:
            if isinstance(model, DefenseModel):
                labels = model.labels(images, options)
            else:
                labels = model.labels(images, options, timeout_s=timeout_s)
        except Unavailable:         # no worker could be started: nothing charged, retryable
            WATCHDOG.disarm(token)
            raise
        except Exception as error:  # ORT failure, crash or time-out on a valid input
            timeout = WATCHDOG.disarm(token) or bool(getattr(error, "timed_out", False))
            self.stats.failures += 1
            self.stats.timeouts += int(timeout)
            log.warning("defense %s %s on %d images: %s", self.name, "timed out" if timeout else "failed",
                        images.shape[0], type(error).__name__)
            return _TIMEOUT if timeout else _ERROR
        WATCHDOG.disarm(token)
        return labels


_ERROR, _TIMEOUT = "error", "timeout"


class _Once:
    """Calls fn the first time it is called (from any thread), never again."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn = fn
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            fn, self._fn = self._fn, None
        if fn is not None:
            fn()


def _call_soon_threadsafe(loop: asyncio.AbstractEventLoop, callback, *args) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop is closed (server stopped)
        pass


class Watchdog:
    """One thread that terminates ORT runs past their deadline (RunOptions.terminate).

    Arming is a dict insert; the thread is only woken when a new deadline is earlier than the
    one it sleeps towards (in steady state: never)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, ort.RunOptions]] = {}
        self._next = 0
        self._wake_at = float("inf")
        self._thread: threading.Thread | None = None

    def arm(self, options: ort.RunOptions, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="arena-watchdog", daemon=True)
                self._thread.start()
            self._next += 1
            self._armed[self._next] = (deadline, options)
            if deadline < self._wake_at:
                self._wake_at = deadline
                self._cond.notify()
            return self._next

    def disarm(self, token: int) -> bool:
        """Forgets the deadline; True if it had passed (the run was told to terminate)."""
        with self._cond:
            return self._armed.pop(token, None) is None

    def _loop(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for token, (deadline, options) in list(self._armed.items()):
                    if deadline <= now:
                        options.terminate = True
                        del self._armed[token]
                self._wake_at = min((d for d, _ in self._armed.values()), default=float("inf"))
                self._cond.wait(None if self._wake_at == float("inf") else max(self._wake_at - now, 0.001))


WATCHDOG = Watchdog()
