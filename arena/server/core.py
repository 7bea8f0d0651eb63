"""The arena's core: the shared state of the server and the rooms that hold its behaviour
(docs/rules.md). The rooms speak plain types (`arena.server.calls`), never protobuf;
`arena.server.transport` decodes each request into a call and encodes each answer.

    submissions   SubmitDefense, ListDefenses, GetDefense: upload, validation, verdict, phase, caps
    runs          StartRun, GetRun, GetRunSamples, FinishRun, ListRuns: runs and budget accounts
    queries       Predict and SubmitAdversarials: charging, batching, verification, replay
    competition   GetCompetition and the organizer's actions (phase, budget, tokens, disqualify)

`Arena` owns what the rooms share: the store, the evaluation splits, the served defenses
(registry), the group-commit writer, the competition's phase and budget, the charging rule's
chargers, the worker pools and the per-team admission. Every method runs on the server's event
loop; blocking work (validation, model runs, hashing, distances, commits) goes to worker threads.
Errors are `arena.server.errors` exceptions, which `arena.server.transport` maps to gRPC status
codes.

Rules v2 in short (docs/rules.md sections 4, 6, 8): a run attacks one split (public while the
competition is open, private once it is final; only the organizer may choose another); every run
of a team on a defense and split spends one shared budget (`ledger.Account`), so a new run never
refills it; submissions are refused once the final phase began, atomically with the switch
(`Store.put_defense(require_open=True)`); organizer actions are recorded with their reason.

Rules v3 on the query path (docs/rules.md sections 4-5): each queried image is charged to the
sample it is about (`arena.ground.charging`: the sample whose neighbourhood holds it, else the one named),
so remaining, refusals and replays follow that sample; a team's images in flight on a defense are
bounded (`arena.server.admission`); a time-out is never a verdict (`arena.server.batching`).

Anti-leak design of verification (docs/rules.md sections 4-5). SubmitAdversarials answers with the
arena's label, so it must not be a free oracle: an image whose exact bytes Predict answered
adversarial for the same run and sample (the store keeps a digest (BLAKE3) and the label of every such
image, written in the same group commit as its charge) is verified free; any other image is
charged one query, exactly like Predict, and refused whole when over budget. (Images Predict
answered with the true label are not recorded: they can never be accepted, and not hashing them
saves most of the hashing on the serving path.) An adversarial whose verification label differs
from the label Predict returned for the same bytes is not accepted (section 5: a label must not
change), and the verdict says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from arena.ground.charging import SampleCharger
from arena.ground.inference import default_threads
from arena.server import sandbox
from arena.server.admission import TeamAdmission
from arena.server.competition import Competition
from arena.server.evaluation import EvaluationData
from arena.server.metrics import Metrics
from arena.server.private_accuracy import PrivateAccuracy
from arena.server.queries import Queries
from arena.server.registry import DefenseRegistry
from arena.server.runs import Runs
from arena.server.settings import ArenaConfig
from arena.server.store import PRIVATE, PUBLIC, Store
from arena.server.submissions import Submissions
from arena.server.writer import GroupCommitWriter

log = logging.getLogger("arena.core")


class Arena:
    """The server core: the shared state, and the rooms (`submissions`, `runs`, `queries`,
    `competition`) that act on it."""

    def __init__(self, store: Store, evaluation: EvaluationData, config: ArenaConfig) -> None:
        self.store = store
        self.evaluation = evaluation
        self.config = config
        self.clean64 = evaluation.images.reshape(evaluation.num_samples, -1).astype(np.float64)
        # The server's own GEMMs (the charging rule's search) on one BLAS thread: a BLAS pool
        # spinning on cores that ONNX Runtime and other processes share ran them 50x slower
        # (docs/benchmarks.md, "the charging rule").
        threadpool_limits(1, user_api="blas")
        # per split, the sample each queried image is charged to (docs/rules.md section 4)
        self.chargers = {split: SampleCharger(evaluation.images[evaluation.split_slice(split)])
                         for split in (PUBLIC, PRIVATE)}
        self.writer = GroupCommitWriter(store)
        threads = config.threads or default_threads()
        self.threads = threads
        self.children = sandbox.Children()       # every child process, ended at shutdown
        self.metrics = Metrics(lambda: {n: b.queued_images for n, b in list(self.registry.batchers.items())})
        self.registry = DefenseRegistry(
            store, self.writer, threads=threads, max_chunk=config.max_chunk,
            cache_bytes=int(config.session_cache_mb * (1 << 20)), concurrent_runs=config.concurrent_runs,
            batch_wait_s=config.batch_wait_ms / 1e3, timeout_s=config.inference_timeout_s,
            image_timeout_s=config.image_timeout_s,
            isolate=config.isolate, capacity=max(config.max_batch, config.max_chunk), children=self.children,
            worker_limits=sandbox.ChildLimits(config.worker_memory_mb, threads), metrics=self.metrics)
        self.validation_pool = ThreadPoolExecutor(max(1, config.concurrent_validations),
                                                  thread_name_prefix="arena-validate")
        self.io_pool = ThreadPoolExecutor(4, thread_name_prefix="arena-io")
        self.private = PrivateAccuracy(store, evaluation, lambda name: self.sessions.get(name), self.io,
                                       config.max_batch)   # measured after acceptance (rules v3)
        self.admission = TeamAdmission(config.team_images_in_flight, config.team_wait_s)
        # The competition's state: the store's is the authority; the first start records the config's budget.
        if store.budget() is None:
            store.set_budget(config.budget)
        self.budget = int(store.budget())
        if self.budget != config.budget:
            log.warning("budget %d per sample comes from the store (set by the organizer); --budget %d ignored",
                        self.budget, config.budget)
        self.phase = store.phase()
        self._synced = time.monotonic()
        # the rooms
        self.submissions = Submissions(self)
        self.runs = Runs(self)
        self.queries = Queries(self)
        self.competition = Competition(self)

    def sync(self, max_age: float = 0.0) -> None:
        """With a shared store (several replicas), the phase and the budget another replica's
        organizer call set: read from the store when older than `max_age` seconds. The phase is
        read fresh wherever it decides something (StartRun, submissions, boards); the budget on the
        query path at most once a second."""
        if not self.store.shared_ledger or time.monotonic() - self._synced < max_age:
            return
        self.phase = self.store.phase()
        self.budget = int(self.store.budget() or self.budget)
        self._synced = time.monotonic()

    @property
    def sessions(self):
        return self.registry.sessions

    async def io(self, fn, *args):
        """`fn(*args)` on the I/O pool (store reads and writes, hashing, distances)."""
        return await asyncio.get_running_loop().run_in_executor(self.io_pool, fn, *args)

    # ---------------------------------------------------------------- lifecycle

    async def drain(self) -> None:
        await self.registry.drain()

    def kill_children(self) -> None:
        """Ends every child now: validations are rejected, runs in flight fail over to Unavailable."""
        self.children.kill_all()
        for name in self.sessions.loaded():
            self.sessions.evict(name)

    def close(self) -> None:
        self.kill_children()
        self.registry.close()
        self.writer.close()
        for pool in (self.validation_pool, self.io_pool):
            pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["Arena", "ArenaConfig"]
