"""The arena's behaviour: submissions, runs, queries, verification, the competition's phases and
the organizer's actions (docs/rules.md).

Every method runs on the server's event loop; blocking work (validation, model runs, hashing,
distances, commits) goes to worker threads. Errors are `arena.server.errors` exceptions, which
`arena.server.transport` maps to gRPC status codes.

Rules v2 in short (docs/rules.md sections 4, 6, 8): a run attacks one split (public while the
competition is open, private once it is final; only the organizer may choose another); every run
of a team on a defense and split spends one shared budget (`ledger.Account`), so a new run never
refills it; submissions are refused once the final phase began, atomically with the switch
(`Store.put_defense(require_open=True)`); organizer actions are recorded with their reason.

Anti-leak design of verification (docs/rules.md sections 4-5). SubmitAdversarials answers with the
arena's label, so it must not be a free oracle: an image whose exact bytes Predict answered
adversarial for the same run and sample (the store keeps a sha256 and the label of every such
image, written in the same group commit as its charge) is verified free; any other image is
charged one query, exactly like Predict, and refused whole when over budget. (Images Predict
answered with the true label are not recorded: they can never be accepted, and not hashing them
saves most of the hashing on the serving path.) An adversarial whose verification label differs
from the label Predict returned for the same bytes is not accepted (section 5: a label must not
change), and the verdict says so.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from arena.contract import DEFAULT_BUDGET, FAILED_LABEL, IMAGE_BYTES, DefenseStatus, l2_distances
from arena.inference import DEFAULT_MAX_CHUNK, default_threads
from arena.server import images as wire
from arena.server import sandbox, validation
from arena.server.auth import TEAM_PATTERN, create_token
from arena.server.batching import BatchResult
from arena.server.digests import image_sha256, request_digest
from arena.server.errors import (
    AlreadyExists,
    BadRequest,
    Busy,
    FailedPrecondition,
    FinishedRun,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from arena.server.evaluation import EvaluationData
from arena.server.leaderboard_wire import SPLITS
from arena.server.ledger import Account, AlreadyAnswered, Charging, RunState, make_account
from arena.server.metrics import Metrics
from arena.server.registry import DefenseRegistry
from arena.server.store import (
    FINAL,
    OPEN,
    ORGANIZER,
    PRIVATE,
    PUBLIC,
    ROLES,
    Action,
    AdversarialRecord,
    DefenseRow,
    FinishRun,
    NameTaken,
    PhaseClosed,
    QueryRecord,
    RequestRecord,
    RunRow,
    Store,
    StoreError,
)
from arena.wire import encode
from arena.server.writer import GroupCommitWriter
from protos import arena_v1_pb2 as pb

log = logging.getLogger("arena.core")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ATTACK_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")
REQUEST_ID_MAX = 128
DESCRIPTION_MAX = 1000
DEFAULT_PAGE_BYTES = 4 << 20          # GetRunSamples(limit=0) fits gRPC's default receive limit
MESSAGE_SLACK = 1 << 20               # room for everything but the image bytes
VALIDATION_NICE = 10                  # validations yield the cores to serving


@dataclass(frozen=True)
class ArenaConfig:
    """The server core's settings (`arena serve` flags): budget, batch and message limits, inference
    and validation limits."""

    budget: int = DEFAULT_BUDGET      # queries per sample, team, defense and split (the store's, once set, wins)
    max_batch: int = 256              # images per Predict / SubmitAdversarials (published)
    max_chunk: int = DEFAULT_MAX_CHUNK  # largest batch handed to ORT; a power of two (arena.inference)
    batch_wait_ms: float = 0.0        # how long a lone request waits for company in the batcher
    latency_ms: float = 100.0         # per-image latency budget of a submission
    max_upload_mb: float = 100.0      # ONNX size limit
    session_cache_mb: float = 2048.0  # memory budget of loaded sessions
    threads: int | None = None        # ORT intra-op threads (default: all cores)
    inference_timeout_s: float = 30.0  # a model run taking longer is a defense failure
    concurrent_runs: int = 2          # model runs in flight per defense
    # Limits on submitted models (docs/rules.md). isolate=False runs them in this process
    # (no limits but the latency budget and inference_timeout_s: benchmarks only).
    isolate: bool = True              # validation and serving in child processes
    validation_timeout_s: float = 240.0   # wall clock of one validation, loading included
    validation_memory_mb: float = 4096.0  # address space of a validation child
    worker_memory_mb: float = 4096.0      # address space of a serving worker (one per defense)
    concurrent_validations: int = 2   # submissions validated at once (at most one per team)
    # The attack board's defenses (docs/rules.md section 6): 0 = every covered one; k = the top k
    # of the public board.
    attack_board_top_k: int = 0

    @property
    def max_message_bytes(self) -> int:
        return self.max_batch * IMAGE_BYTES + MESSAGE_SLACK

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * (1 << 20))


class Arena:
    """The server core: owns the store, the evaluation splits, the served defenses (registry),
    the budgets and runs in memory (ledger) and the competition's phase and budget."""

    def __init__(self, store: Store, evaluation: EvaluationData, config: ArenaConfig) -> None:
        self.store = store
        self.evaluation = evaluation
        self.config = config
        self._clean64 = evaluation.images.reshape(evaluation.num_samples, -1).astype(np.float64)
        self.writer = GroupCommitWriter(store)
        threads = config.threads or default_threads()
        self._threads = threads
        self.children = sandbox.Children()       # every child process, ended at shutdown
        self.metrics = Metrics(lambda: {n: b.queued_images for n, b in list(self.registry.batchers.items())})
        self.registry = DefenseRegistry(
            store, self.writer, threads=threads, max_chunk=config.max_chunk,
            cache_bytes=int(config.session_cache_mb * (1 << 20)), concurrent_runs=config.concurrent_runs,
            batch_wait_s=config.batch_wait_ms / 1e3, timeout_s=config.inference_timeout_s,
            isolate=config.isolate, capacity=max(config.max_batch, config.max_chunk), children=self.children,
            worker_limits=sandbox.ChildLimits(config.worker_memory_mb, threads), metrics=self.metrics)
        self.validation_pool = ThreadPoolExecutor(max(1, config.concurrent_validations),
                                                  thread_name_prefix="arena-validate")
        self.io_pool = ThreadPoolExecutor(4, thread_name_prefix="arena-io")
        self._validating_teams: set[str] = set()
        self._runs: dict[str, RunState] = {}
        self._accounts: dict[tuple[str, str, str], Account] = {}
        self._submitting: set[str] = set()
        # The competition's state: the store's is the authority; the first start records the config's budget.
        if store.budget() is None:
            store.set_budget(config.budget)
        self.budget = int(store.budget())
        if self.budget != config.budget:
            log.warning("budget %d per sample comes from the store (set by the organizer); --budget %d ignored",
                        self.budget, config.budget)
        self.phase = store.phase()
        self._synced = time.monotonic()

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
    def _batchers(self):
        return self.registry.batchers

    @property
    def sessions(self):
        return self.registry.sessions

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

    async def _io(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.io_pool, fn, *args)

    def _batcher(self, name: str):
        return self.registry.batcher(name)

    # ---------------------------------------------------------------- defenses

    def defense_message(self, row: DefenseRow, role: str = "team") -> pb.Defense:
        public, private = (self.evaluation.split_slice(s) for s in (PUBLIC, PRIVATE))
        correct = np.asarray(row.clean_correct, dtype=bool)
        accepted = row.status == DefenseStatus.ACCEPTED and correct.size == self.evaluation.num_samples
        show_private = accepted and (self.phase == FINAL or role == ORGANIZER) and private.stop > private.start
        return pb.Defense(
            name=row.name, team=row.team,
            status=pb.DEFENSE_STATUS_ACCEPTED if row.status == DefenseStatus.ACCEPTED else pb.DEFENSE_STATUS_REJECTED,
            description=row.description, sha256=row.sha256, size_bytes=row.size_bytes,
            num_classes=row.num_classes,
            clean_accuracy=(float(correct[public].mean()) if accepted and public.stop > public.start
                            else 0.0 if accepted and not show_private and private.stop > private.start
                            else row.clean_accuracy),   # the whole set's figure would tell the private split's
            clean_accuracy_private=float(correct[private].mean()) if show_private else 0.0,
            rejection_reasons=list(row.rejection_reasons), submitted_at=row.submitted_at,
            disqualified_reason=row.disqualified_reason,
        )

    async def list_defenses(self) -> list[DefenseRow]:
        return await self._io(self.store.list_defenses)

    async def get_defense(self, name: str) -> DefenseRow:
        row = await self._io(self.store.get_defense, name)
        if row is None:
            raise NotFound(f"name: no defense {name!r}")
        return row

    async def submit_defense(self, team: str, messages) -> DefenseRow:
        """`messages`: async iterator of SubmitDefenseRequest (metadata first, then chunks).
        Returns the accepted defense; raises BadRequest with every failed rule when rejected
        (the rejection is recorded and visible in ListDefenses)."""
        first = None
        async for first in messages:
            break
        if first is None or first.WhichOneof("part") != "metadata":
            raise BadRequest("metadata: the first message of SubmitDefense must carry the metadata")
        meta = first.metadata
        if not NAME_PATTERN.match(meta.name):
            raise BadRequest(f"metadata.name: {meta.name!r} must be 1-64 characters of [A-Za-z0-9_.-]")
        if len(meta.description) > DESCRIPTION_MAX:
            raise BadRequest(f"metadata.description: {len(meta.description)} characters, at most {DESCRIPTION_MAX}")
        name = meta.name
        self.sync()
        if self.phase != OPEN:
            raise FailedPrecondition("submissions are closed: the competition is in its final phase")
        existing = await self._io(self.store.get_defense, name)
        if existing is not None and (existing.status == DefenseStatus.ACCEPTED or existing.team != team):
            raise AlreadyExists(f"metadata.name: a defense named {name!r} already exists")
        if name in self._submitting:
            raise AlreadyExists(f"metadata.name: a defense named {name!r} is being validated right now")
        if team in self._validating_teams:
            raise Busy(f"team {team!r} already has a submission being validated; submit again once it is done")
        self._submitting.add(name)
        self._validating_teams.add(team)
        try:
            return await self._receive_and_validate(team, name, meta.description, messages)
        finally:
            self._submitting.discard(name)
            self._validating_teams.discard(team)

    async def _receive_and_validate(self, team: str, name: str, description: str, messages) -> DefenseRow:
        limit = self.config.max_upload_bytes
        chunks: list[bytes] = []
        size = 0
        too_big = False
        async for message in messages:
            if message.WhichOneof("part") != "chunk":
                raise BadRequest("chunk: only the first message may carry metadata; the others carry ONNX bytes")
            size += len(message.chunk)
            if size > limit:
                too_big = True
                break
            chunks.append(message.chunk)
        now = time.time()
        if too_big:
            reasons = [f"file: the upload exceeds the size limit of {limit} bytes"]
            row = self._rejected(name, team, description, "", size, reasons, now)
            await self._io(self.store.put_defense, row)
            raise BadRequest(_rejection_message(name, reasons))
        data = b"".join(chunks)
        chunks.clear()
        digest = hashlib.sha256(data).hexdigest()
        limits = validation.Limits(max_bytes=limit, latency_ms=self.config.latency_ms,
                                   max_chunk=self.config.max_chunk, threads=self._threads)
        loop = asyncio.get_running_loop()
        if self.config.isolate:
            limits_in_child = sandbox.ValidationLimits(
                self.config.validation_timeout_s,
                sandbox.ChildLimits(self.config.validation_memory_mb, self._threads, nice=VALIDATION_NICE))
            result = await loop.run_in_executor(
                self.validation_pool, self.metrics.timed_validation(sandbox.validate_in_child), name, data,
                self.evaluation.images, self.evaluation.labels, limits, limits_in_child, self.children)
        else:
            result = await loop.run_in_executor(
                self.validation_pool, self.metrics.timed_validation(validation.validate), name, data,
                self.evaluation.images, self.evaluation.labels, limits)
        if not result.accepted:
            row = self._rejected(name, team, description, digest, len(data), result.reasons, now)
            await self._io(self.store.put_defense, row)
            raise BadRequest(_rejection_message(name, result.reasons))
        await self._io(self.store.blobs.put, data)
        row = DefenseRow(
            name=name, team=team, status=DefenseStatus.ACCEPTED, description=description, sha256=digest,
            size_bytes=len(data), num_classes=result.num_classes, clean_accuracy=result.clean_accuracy,
            clean_correct=result.clean_correct, rejection_reasons=(), serving_mode=result.serving_mode,
            submitted_at=now,
        )
        try:
            await self._io(self.store.put_defense, row, True)
        except PhaseClosed as error:   # the final phase began while it was validated
            raise FailedPrecondition(str(error)) from None
        except StoreError as error:
            raise AlreadyExists(f"metadata.name: {error}") from None
        if result.model is not None:
            self.registry.add(result.model)
        elif self.config.isolate:  # start its worker now, not on the first Predict
            warm = loop.run_in_executor(self.io_pool, self.sessions.get, name)
            warm.add_done_callback(lambda f: f.cancelled() or f.exception())
        public = row.clean_correct[self.evaluation.split_slice(PUBLIC)]
        log.info("defense %s accepted (team %s, clean accuracy %s on the public split, %s)", name, team,
                 f"{public.mean():.3f}" if public.size else "-", row.serving_mode)
        return row

    @staticmethod
    def _rejected(name, team, description, digest, size, reasons, now) -> DefenseRow:
        return DefenseRow(name=name, team=team, status=DefenseStatus.REJECTED, description=description, sha256=digest,
                          size_bytes=size, num_classes=0, clean_accuracy=0.0,
                          clean_correct=np.zeros(0, dtype=np.bool_), rejection_reasons=tuple(reasons),
                          serving_mode="", submitted_at=now)

    # ---------------------------------------------------------------- runs

    def split_for(self, role: str, requested: str | None) -> str:
        """The split a new run attacks: the current phase's, unless the organizer names another."""
        self.sync()
        current = PUBLIC if self.phase == OPEN else PRIVATE
        if requested is None or requested == current:
            return current
        if role != ORGANIZER:
            raise PermissionDenied(f"split: runs attack the {current} split in the {self.phase} phase; "
                                   f"only the organizer may attack the {requested} split now")
        return requested

    async def _account(self, team: str, defense: str, split: str) -> Account:
        key = (team, defense, split)
        account = self._accounts.get(key)
        if account is None:
            used = await self._io(self.store.account_usage, team, defense, split, self.evaluation.split_size(split))
            account = self._accounts.setdefault(key, make_account(self.store, key, used, lambda: self.budget))
        return account

    async def start_run(self, team: str, defense: str, attack: str, *, role: str = "team",
                        split: str | None = None, config_digest: str = "") -> RunState:
        if not ATTACK_PATTERN.match(attack):
            raise BadRequest(f"attack: {attack!r} must be 1-64 characters of [A-Za-z0-9_.+-]")
        if config_digest and not re.fullmatch(r"[0-9a-f]{64}", config_digest):
            raise BadRequest("attack_config_digest: must be a sha256 in hex (64 characters of 0-9a-f)")
        row = await self._io(self.store.get_defense, defense)
        if row is None:
            raise NotFound(f"defense: no defense {defense!r}")
        if row.status != DefenseStatus.ACCEPTED:
            raise NotFound(f"defense: {defense!r} was rejected; nothing of it is served")
        if row.disqualified_reason:
            raise FailedPrecondition(f"defense: {defense!r} was disqualified ({row.disqualified_reason})")
        split = self.split_for(role, split)
        size = self.evaluation.split_size(split)
        if size == 0:
            raise FailedPrecondition(f"split: the {split} split of this arena is empty")
        account = await self._account(team, defense, split)
        run = RunRow(run_id=uuid.uuid4().hex, team=team, defense=defense, attack=attack, num_samples=size,
                     budget=self.budget, started_at=time.time(), finished_at=None, split=split,
                     attack_config_digest=config_digest)
        await self._io(self.store.create_run, run)
        state = RunState(run, account, np.zeros(size, np.int64), np.full(size, np.inf))
        if not state.shared:   # another replica may answer any id of a shared run: ask the store
            state.request_ids = set()
        self._runs[run.run_id] = state
        return state

    async def run(self, team: str, run_id: str, field: str = "run_id") -> RunState:
        """The caller's run; another team's run reads exactly like an unknown id (NOT_FOUND)."""
        state = self._runs.get(run_id)
        if state is None:
            if not run_id:
                raise BadRequest(f"{field}: required")
            row = await self._io(self.store.get_run, run_id)
            if row is None or row.team != team:
                raise NotFound(f"{field}: no run {run_id!r} for team {team!r}")
            state = self._runs.get(run_id)  # loaded meanwhile?
            if state is None:
                account = await self._account(row.team, row.defense, row.split)
                spent = await self._io(self.store.usage, run_id, row.num_samples)
                best = await self._io(self.store.best_distances, run_id, row.num_samples)
                ids = None if row.finished else await self._io(self.store.request_ids, run_id)
                state = self._runs.get(run_id)
                if state is None:
                    state = self._runs[run_id] = RunState(row, account, spent, best)
                    state.request_ids = None if state.shared else ids
        if state.row.team != team:
            raise NotFound(f"{field}: no run {run_id!r} for team {team!r}")
        return state

    def _split_offset(self, state: RunState) -> int:
        return self.evaluation.split_slice(state.row.split).start

    def _refresh(self, state: RunState) -> None:
        """A shared run's figures from the store: other replicas charge and finish it too."""
        state.row = self.store.get_run(state.row.run_id) or state.row
        team, defense, split = state.account.key
        used = self.store.account_usage(team, defense, split, state.num_samples)
        with state.lock:
            state.account.used = np.maximum(state.account.used, used)
            state.spent = self.store.usage(state.row.run_id, state.num_samples)
            state.best = np.minimum(state.best, self.store.best_distances(state.row.run_id, state.num_samples))
        state.finishing = state.finishing or state.row.finished

    async def current_info(self, state: RunState) -> pb.RunInfo:
        """RunInfo with a shared run's figures read from the store first (off the event loop)."""
        if state.shared:
            await self._io(self._refresh, state)
        return self.run_info(state)

    @staticmethod
    def _run_header(row: RunRow) -> pb.RunInfo:
        """What a run's row alone says (ListRuns gives only this)."""
        return pb.RunInfo(
            run_id=row.run_id, defense=row.defense, attack=row.attack, team=row.team,
            num_samples=row.num_samples, budget_per_sample=row.budget, finished=row.finished,
            started_at=row.started_at, split=SPLITS[row.split],
            attack_config_digest=row.attack_config_digest, disqualified_reason=row.disqualified_reason)

    def run_info(self, state: RunState) -> pb.RunInfo:
        row = state.row
        if state.num_classes is None:
            defense = self.store.get_defense(row.defense)
            state.num_classes = defense.num_classes if defense else 0
        info = self._run_header(row)
        info.budget_per_sample = state.budget
        info.max_batch = self.config.max_batch
        info.max_message_bytes = self.config.max_message_bytes
        info.num_classes = state.num_classes
        with state.lock:
            used = state.account.used.copy()
            spent = state.spent.copy()
        info.queries_used.extend(int(v) for v in used)
        info.remaining.extend(int(v) for v in np.maximum(state.budget - used, 0))
        info.run_queries.extend(int(v) for v in spent)
        info.best_distances.extend(float(v) for v in state.best)
        return info

    def run_samples(self, state: RunState, offset: int, limit: int) -> pb.GetRunSamplesResponse:
        n = state.num_samples
        if offset > n:
            raise BadRequest(f"offset: {offset} is past the end of the run's split ({n} samples)")
        fit_default = max(1, (DEFAULT_PAGE_BYTES - (64 << 10)) // IMAGE_BYTES)
        fit_max = max(1, (self.config.max_message_bytes - MESSAGE_SLACK) // IMAGE_BYTES)
        count = fit_default if limit == 0 else min(limit, fit_max)
        base = self._split_offset(state)
        start, stop = base + offset, base + min(n, offset + count)
        return pb.GetRunSamplesResponse(
            offset=offset, images=encode(self.evaluation.images[start:stop]),
            labels=[int(v) for v in self.evaluation.labels[start:stop]],
        )

    async def list_runs(self, team: str, role: str) -> list[pb.RunInfo]:
        rows = await self._io(self.store.list_runs)
        out = []
        for row in rows:
            if role != ORGANIZER and row.team != team:
                continue
            out.append(self._run_header(row))
        return out

    async def finish_run(self, state: RunState) -> RunState:
        """Refuses new queries at once, waits for those in flight, then records the end durably.
        Finishing a finished run returns it unchanged."""
        if state.row.finished:
            return state
        state.finishing = True
        await state.wait_idle()
        if state.row.finished:
            return state
        now = time.time()
        await self.writer.commit([FinishRun(state.row.run_id, now)])
        state.row = replace(state.row, finished_at=now)
        state.request_ids = None   # replays of a finished run read the store
        return state

    async def _reserve(self, charging: Charging, digest=None) -> None:
        """Reserves the request's queries and counts it in flight (before any await, so that a
        FinishRun waits for it). A shared ledger's reservation is one database round trip, off the
        loop, that also claims a Predict's request id (`digest()` its request digest): raises
        AlreadyAnswered if the id is answered; a claim adopted from an earlier attempt (a retry whose
        first attempt ran on another replica) reserves nothing (`charging.adopted`)."""
        state = charging.state
        state.enter()
        try:
            if state.shared:
                await self._io(charging.reserve_shared, digest)
            else:
                charging.reserve()
        except BaseException:
            state.leave()
            raise

    # ---------------------------------------------------------------- Predict

    async def predict(self, team: str, request: pb.PredictRequest) -> pb.PredictResponse:
        if getattr(request, "error", ""):
            raise BadRequest(request.error)
        state = await self.run(team, request.run_id)
        self.sync(1.0)
        request_id = request.request_id
        if not request_id:
            raise BadRequest("request_id: required (a client-chosen id, unique per run, makes retries safe)")
        if len(request_id) > REQUEST_ID_MAX:
            raise BadRequest(f"request_id: at most {REQUEST_ID_MAX} characters, got {len(request_id)}")
        while True:
            replay = await self._replay(state, request)
            if replay is not None:
                return replay
            if request_id not in state.pending:  # a duplicate claimed it while _replay awaited
                break
        if state.finishing:
            raise FinishedRun(f"run_id: run {state.row.run_id!r} is finished; it takes no more queries")
        images = wire.decode(request.images, "images", self.config.max_batch)
        indices = wire.check_sample_indices(request.sample_indices, images.shape[0], state.num_samples)
        counts = np.bincount(indices, minlength=state.num_samples)
        charging = Charging(state, counts, request_id=request_id)
        digest = functools.cache(lambda: request_digest(indices, images))   # shared claim and replay record
        claim = state.pending[request_id] = _Claim()   # duplicates wait for this attempt from here on
        try:
            await self._reserve(charging, digest)
        except BaseException as error:
            state.pending.pop(request_id, None)
            claim.settle(None)
            if isinstance(error, AlreadyAnswered):   # by another replica, or by this one meanwhile
                stored = await self._io(self.store.get_request, state.row.run_id, request_id)
                replay = self._stored_answer(state, request, stored)
                if replay is None:  # answers are never deleted: a store out of step with itself
                    raise Unavailable("the arena could not read this request's stored answer; retry") from None
                return replay
            raise
        answer: dict = {}
        run_id = state.row.run_id
        true_labels = self.evaluation.labels[self.evaluation.split_slice(state.row.split)]

        def prepare(result: BatchResult) -> list:  # on the worker thread, before the group commit
            with state.lock:
                charging.consume()
                remaining = np.maximum(state.budget - state.account.used[indices], 0).astype("<u4")
            labels = result.labels.astype("<i4")
            answer["remaining"] = remaining
            ops: list = charging.ops()
            ops.append(RequestRecord(run_id, request_id, digest(), labels.tobytes(),
                                     remaining.tobytes(), time.time()))
            # what verification may take for free: the images answered adversarial (see above)
            adversarial = np.flatnonzero(labels != true_labels[indices])
            ops += [QueryRecord(run_id, int(indices[i]), h, int(labels[i]))
                    for i, h in zip(adversarial, image_sha256(images, adversarial))]
            return ops

        job = self._batcher(state.row.defense).submit(images, prepare, charging.rollback)
        state.pending[request_id] = job
        claim.settle(job)

        def finished() -> None:
            state.pending.pop(request_id, None)
            if job.error is None and state.request_ids is not None:
                state.request_ids.add(request_id)
            state.leave()

        job.when_finished(finished)
        # if this caller goes away, the job still completes and is charged; a retry replays it
        result = await job.future
        return pb.PredictResponse(labels=result.labels.tolist(), remaining=answer["remaining"].tolist(), replayed=False)

    async def _replay(self, state: RunState, request: pb.PredictRequest) -> pb.PredictResponse | None:
        """The stored answer of a repeated request id (waiting for it if still in flight)."""
        request_id = request.request_id
        pending = state.pending.get(request_id)
        if pending is not None:
            try:
                await pending.wait()
            except Exception:
                return None  # the first attempt failed and charged nothing: this one runs anew
        if state.request_ids is not None and request_id not in state.request_ids:
            return None  # known new: no store read on the hot path
        if state.shared and not state.finishing:  # the reservation tells an answered id (AlreadyAnswered)
            return None
        if state.shared:  # a finished run: a read on the database server, off the loop
            stored = await self._io(self.store.get_request, state.row.run_id, request_id)
        else:  # a point read on the loop thread (tens of microseconds): cheaper than a thread hop
            stored = self.store.get_request(state.row.run_id, request_id)
        return self._stored_answer(state, request, stored)

    def _stored_answer(self, state: RunState, request: pb.PredictRequest, stored) -> pb.PredictResponse | None:
        request_id = request.request_id
        if stored is None:
            return None
        images = wire.decode(request.images, "images", self.config.max_batch)
        indices = wire.check_sample_indices(request.sample_indices, images.shape[0], state.num_samples)
        if request_digest(indices, images) != stored.digest:
            raise BadRequest(f"request_id: {request_id!r} was already used for a different request in this run")
        return pb.PredictResponse(labels=stored.labels.tolist(), remaining=stored.remaining.tolist(), replayed=True)

    # ---------------------------------------------------------------- SubmitAdversarials

    async def submit_adversarials(self, team: str, request: pb.SubmitAdversarialsRequest) -> pb.SubmitAdversarialsResponse:
        if getattr(request, "error", ""):
            raise BadRequest(request.error)
        state = await self.run(team, request.run_id)
        if state.finishing:
            raise FinishedRun(f"run_id: run {state.row.run_id!r} is finished; it takes no more adversarials")
        images = wire.decode(request.images, "images", self.config.max_batch)
        indices = wire.check_sample_indices(request.sample_indices, images.shape[0], state.num_samples)
        run_id = state.row.run_id
        loop = asyncio.get_running_loop()

        base = self._split_offset(state)

        def measure():
            hashes = image_sha256(images)
            known = self.store.query_labels(run_id, list(zip(indices.tolist(), hashes)))
            return hashes, known, l2_distances(images, self._clean64[base + indices])

        hashes, known, distances = await loop.run_in_executor(self.io_pool, measure)
        if state.finishing:  # FinishRun came in meanwhile: nothing counts after it
            raise FinishedRun(f"run_id: run {state.row.run_id!r} is finished; it takes no more adversarials")
        free = np.array([(int(s), h) in known for s, h in zip(indices, hashes)], dtype=bool)
        counts = np.bincount(indices[~free], minlength=state.num_samples)
        restore: dict[int, float] = {}

        def restore_best() -> None:
            for s, value in restore.items():
                state.best[s] = value

        charging = Charging(state, counts, on_rollback=restore_best)
        await self._reserve(charging)
        verdicts: list[pb.Verdict] = []
        true_labels = self.evaluation.labels[self.evaluation.split_slice(state.row.split)]

        def prepare(result: BatchResult) -> list:  # on the worker thread, before the group commit
            with state.lock:
                return _prepare(result)

        def _prepare(result: BatchResult) -> list:
            charging.consume()
            ops: list = charging.ops()
            best_here: dict[int, int] = {}
            for i, (s, h, label) in enumerate(zip(indices.tolist(), hashes, result.labels.tolist())):
                adversarial = label != int(true_labels[s])
                note = ""
                accepted = adversarial
                if free[i]:
                    queried = known[(s, h)]
                    if queried != label:
                        accepted = False
                        note = (f"label changed since the query (label {queried} then, {label} now): "
                                "not accepted (docs/rules.md section 5)")
                elif adversarial:  # charged and answered adversarial: verifying it again is free
                    ops.append(QueryRecord(run_id, s, h, int(label)))
                if accepted and label == FAILED_LABEL:
                    note = "the defense failed on this image: counts as misclassified (docs/rules.md section 5)"
                if accepted and distances[i] < state.best[s]:
                    restore.setdefault(s, float(state.best[s]))
                    state.best[s] = distances[i]
                    best_here[s] = i
                verdicts.append(pb.Verdict(
                    sample_index=s, label=int(label), adversarial=adversarial, distance=float(distances[i]),
                    accepted=accepted, charged=not bool(free[i]), note=note,
                ))
            now = time.time()
            for s, i in best_here.items():
                ops.append(AdversarialRecord(run_id, s, float(distances[i]), int(result.labels[i]),
                                             images[i].tobytes(), now))
            return ops

        job = self._batcher(state.row.defense).submit(images, prepare, charging.rollback)
        job.when_finished(state.leave)
        await job.future
        if state.shared:  # another replica may hold a closer one
            best = await self._io(self.store.best_distances, run_id, state.num_samples)
            with state.lock:
                state.best = np.minimum(state.best, best)
        for verdict in verdicts:
            verdict.best_distance = float(state.best[verdict.sample_index])
        return pb.SubmitAdversarialsResponse(verdicts=verdicts)

    # ---------------------------------------------------------------- the competition (rules v2)

    def competition(self, team: str, role: str) -> pb.Competition:
        self.sync()
        return pb.Competition(
            phase=pb.PHASE_OPEN if self.phase == OPEN else pb.PHASE_FINAL, budget_per_sample=self.budget,
            public_samples=self.evaluation.split_size(PUBLIC), private_samples=self.evaluation.split_size(PRIVATE),
            team=team, role=pb.ROLE_ORGANIZER if role == ORGANIZER else pb.ROLE_TEAM)

    @staticmethod
    def _action(organizer: str, action: str, target: str, reason: str) -> Action:
        reason = " ".join(reason.split())
        if not reason:
            raise BadRequest("reason: required (every organizer action is recorded with its reason)")
        if len(reason) > DESCRIPTION_MAX:
            raise BadRequest(f"reason: at most {DESCRIPTION_MAX} characters")
        return Action(time.time(), organizer, action, target, reason)

    async def set_phase(self, organizer: str, phase: str, reason: str) -> None:
        """Open -> final closes submissions (atomically with any racing submission: see the store)
        and points new runs at the private split. Final -> open is allowed (a mistaken switch)."""
        if phase not in (OPEN, FINAL):
            raise BadRequest("phase: must be PHASE_OPEN or PHASE_FINAL")
        action = self._action(organizer, "set_phase", phase, reason)
        await self._io(self.store.set_phase, phase, action)
        self.phase = phase
        log.info("phase set to %s by %s: %s", phase, organizer, action.reason)

    async def set_budget(self, organizer: str, budget: int, reason: str) -> None:
        if not 1 <= budget <= 1_000_000:
            raise BadRequest(f"budget_per_sample: must be in [1, 1000000], got {budget}")
        action = self._action(organizer, "set_budget", str(budget), reason)
        await self._io(self.store.set_budget, budget, action)
        self.budget = int(budget)

    async def create_token(self, organizer: str, team: str, role: str, reason: str) -> str:
        if not TEAM_PATTERN.match(team):
            raise BadRequest(f"team: {team!r} must be 1-64 characters of [A-Za-z0-9_.-]")
        if role not in ROLES:
            raise BadRequest("role: must be ROLE_TEAM or ROLE_ORGANIZER")
        action = self._action(organizer, "create_token", f"{team} ({role})", reason)
        try:
            return await self._io(lambda: create_token(self.store, team, role=role, action=action))
        except NameTaken as error:
            raise AlreadyExists(f"team: {error}") from None

    async def revoke_tokens(self, organizer: str, team: str, reason: str) -> int:
        if not TEAM_PATTERN.match(team):
            raise BadRequest(f"team: {team!r} must be 1-64 characters of [A-Za-z0-9_.-]")
        action = self._action(organizer, "revoke_tokens", team, reason)
        return await self._io(self.store.revoke_tokens, team, action)

    async def disqualify(self, organizer: str, kind: str, name: str, reason: str) -> None:
        action = self._action(organizer, f"disqualify_{kind}", name, reason)
        if not await self._io(self.store.disqualify, kind, name, action.reason, action):
            raise NotFound(f"{'defense' if kind == 'defense' else 'run_id'}: no {kind} {name!r}")
        if kind == "run" and name in self._runs:
            state = self._runs[name]
            state.row = replace(state.row, disqualified_reason=action.reason)

    async def actions(self) -> list[Action]:
        return await self._io(self.store.actions)


class _Claim:
    """A request id being served here before its batcher job exists (its reservation may be a
    database round trip): a duplicate waits for it, then replays or runs anew."""

    def __init__(self) -> None:
        self._settled = asyncio.Event()
        self._job = None

    def settle(self, job) -> None:
        self._job = job
        self._settled.set()

    async def wait(self):
        await self._settled.wait()
        if self._job is None:
            raise Unavailable("the first attempt with this request id failed before running")
        return await self._job.wait()


def _rejection_message(name: str, reasons: list[str]) -> str:
    return f"defense {name!r} rejected ({len(reasons)} failed rule{'s' if len(reasons) != 1 else ''}): " + "; ".join(reasons)


__all__ = ["Arena", "ArenaConfig"]
