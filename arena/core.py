"""The arena's behaviour, independent of the transport: submissions, runs, queries, verification.

Every method runs on the server's event loop; blocking work (validation, model runs, hashing,
distances, commits) goes to worker threads. Errors are `arena.errors` exceptions, which
`arena.server` maps to gRPC status codes. Results are `arena.v1` messages.

Anti-leak design of verification (ARENA_RULES sections 4-5). SubmitAdversarials answers with the
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
import hashlib
import logging
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from arena import images as wire
from arena import validation
from arena.batching import FAILED_LABEL, BatchResult, MicroBatcher, Workers
from arena.digests import image_sha256, request_digest
from arena.errors import AlreadyExists, BadRequest, FinishedRun, NotFound
from arena.evaluation import EvaluationData
from arena.inference import DefenseModel, SessionCache, default_threads, make_session
from arena.ledger import RunState
from arena.store import (
    AdversarialRecord,
    Charge,
    DefenseRow,
    FinishRun,
    QueryRecord,
    RequestRecord,
    RunRow,
    Store,
    StoreError,
)
from arena.writer import GroupCommitWriter
from protos import arena_v1_pb2 as pb

log = logging.getLogger("arena.core")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ATTACK_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")
CONFIG_DIGEST_PATTERN = re.compile(r"^[0-9a-f]{64}$")
REQUEST_ID_MAX = 128
DESCRIPTION_MAX = 1000
DEFAULT_PAGE_BYTES = 4 << 20          # GetRunSamples(limit=0) fits gRPC's default receive limit
MESSAGE_SLACK = 1 << 20               # room for everything but the image bytes


@dataclass(frozen=True)
class ArenaConfig:
    budget: int = 1000                # queries per sample and run (ARENA_RULES section 4)
    max_batch: int = 256              # images per Predict / SubmitAdversarials (published)
    max_chunk: int = 64               # largest batch handed to ORT; a power of two (arena.inference)
    batch_wait_ms: float = 0.0        # how long a lone request waits for company in the batcher
    latency_ms: float = 100.0         # per-image latency budget of a submission
    max_upload_mb: float = 100.0      # ONNX size limit
    session_cache_mb: float = 2048.0  # memory budget of loaded sessions
    threads: int | None = None        # ORT intra-op threads (default: all cores)
    inference_timeout_s: float = 30.0  # a model run taking longer is a defense failure
    concurrent_runs: int = 2          # model runs in flight per defense

    @property
    def max_message_bytes(self) -> int:
        return self.max_batch * wire.IMAGE_BYTES + MESSAGE_SLACK

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * (1 << 20))


def l2_distances(images: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """l2 over all 12,288 values in [0, 1] scale, float64 accumulation."""
    diff = images.reshape(images.shape[0], -1).astype(np.float64) - clean.reshape(clean.shape[0], -1)
    return np.sqrt(np.einsum("ij,ij->i", diff, diff))


class Arena:
    def __init__(self, store: Store, evaluation: EvaluationData, config: ArenaConfig) -> None:
        self.store = store
        self.evaluation = evaluation
        self.config = config
        self._clean64 = evaluation.images.reshape(evaluation.num_samples, -1).astype(np.float64)
        self.writer = GroupCommitWriter(store)
        threads = config.threads or default_threads()
        self._threads = threads
        self.inference_pool = Workers(max(2, min(8, threads * 2)))
        self.validation_pool = ThreadPoolExecutor(1, thread_name_prefix="arena-validate")
        self.io_pool = ThreadPoolExecutor(4, thread_name_prefix="arena-io")
        self.sessions = SessionCache(self._load_defense, int(config.session_cache_mb * (1 << 20)))
        self._batchers: dict[str, MicroBatcher] = {}
        self._runs: dict[str, RunState] = {}
        self._submitting: set[str] = set()

    # ---------------------------------------------------------------- lifecycle

    async def drain(self) -> None:
        for batcher in list(self._batchers.values()):
            await batcher.drain()

    def close(self) -> None:
        self.inference_pool.shutdown()
        self.writer.close()
        for pool in (self.validation_pool, self.io_pool):
            pool.shutdown(wait=True, cancel_futures=True)

    async def _io(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.io_pool, fn, *args)

    # ---------------------------------------------------------------- defenses

    def _load_defense(self, name: str) -> DefenseModel:
        row = self.store.get_defense(name)
        if row is None or row.status != "accepted":
            raise StoreError(f"defense {name!r} is not served")
        data = self.store.blobs.get(row.sha256)
        return DefenseModel(name, make_session(data, self._threads), row.serving_mode, self.config.max_chunk, len(data))

    def _batcher(self, name: str) -> MicroBatcher:
        batcher = self._batchers.get(name)
        if batcher is None:
            batcher = self._batchers[name] = MicroBatcher(
                name, lambda: self.sessions.get(name), self.inference_pool, self.writer,
                run_images=self.config.max_chunk, max_inflight=self.config.concurrent_runs,
                max_wait_s=self.config.batch_wait_ms / 1e3, timeout_s=self.config.inference_timeout_s,
            )
        return batcher

    @staticmethod
    def defense_message(row: DefenseRow) -> pb.Defense:
        return pb.Defense(
            name=row.name, team=row.team,
            status=pb.DEFENSE_STATUS_ACCEPTED if row.status == "accepted" else pb.DEFENSE_STATUS_REJECTED,
            description=row.description, sha256=row.sha256, size_bytes=row.size_bytes,
            num_classes=row.num_classes, clean_accuracy=row.clean_accuracy,
            rejection_reasons=list(row.rejection_reasons), submitted_at=row.submitted_at,
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
        existing = await self._io(self.store.get_defense, name)
        if existing is not None and (existing.status == "accepted" or existing.team != team):
            raise AlreadyExists(f"metadata.name: a defense named {name!r} already exists")
        if name in self._submitting:
            raise AlreadyExists(f"metadata.name: a defense named {name!r} is being validated right now")
        self._submitting.add(name)
        try:
            return await self._receive_and_validate(team, name, meta.description, messages)
        finally:
            self._submitting.discard(name)

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
        result = await loop.run_in_executor(
            self.validation_pool, validation.validate, name, data, self.evaluation.images,
            self.evaluation.labels, limits)
        if not result.accepted:
            row = self._rejected(name, team, description, digest, len(data), result.reasons, now)
            await self._io(self.store.put_defense, row)
            raise BadRequest(_rejection_message(name, result.reasons))
        await self._io(self.store.blobs.put, data)
        row = DefenseRow(
            name=name, team=team, status="accepted", description=description, sha256=digest,
            size_bytes=len(data), num_classes=result.num_classes, clean_accuracy=result.clean_accuracy,
            clean_correct=result.clean_correct, rejection_reasons=(), serving_mode=result.serving_mode,
            submitted_at=now,
        )
        try:
            await self._io(self.store.put_defense, row)
        except StoreError as error:
            raise AlreadyExists(f"metadata.name: {error}") from None
        if result.model is not None:
            self.sessions.put(result.model)
        log.info("defense %s accepted (team %s, clean accuracy %.3f, %s)", name, team, row.clean_accuracy,
                 row.serving_mode)
        return row

    @staticmethod
    def _rejected(name, team, description, digest, size, reasons, now) -> DefenseRow:
        return DefenseRow(name=name, team=team, status="rejected", description=description, sha256=digest,
                          size_bytes=size, num_classes=0, clean_accuracy=0.0,
                          clean_correct=np.zeros(0, dtype=np.bool_), rejection_reasons=tuple(reasons),
                          serving_mode="", submitted_at=now)

    # ---------------------------------------------------------------- runs

    async def start_run(self, team: str, defense: str, attack: str, attack_config_digest: str = "") -> RunState:
        if not ATTACK_PATTERN.match(attack):
            raise BadRequest(f"attack: {attack!r} must be 1-64 characters of [A-Za-z0-9_.+-]")
        if attack_config_digest and not CONFIG_DIGEST_PATTERN.match(attack_config_digest):
            raise BadRequest(f"attack_config_digest: must be empty or 64 lowercase hex characters, got {attack_config_digest[:80]!r}")
        row = await self._io(self.store.get_defense, defense)
        if row is None:
            raise NotFound(f"defense: no defense {defense!r}")
        if row.status != "accepted":
            raise NotFound(f"defense: {defense!r} was rejected; nothing of it is served")
        run = RunRow(run_id=uuid.uuid4().hex, team=team, defense=defense, attack=attack,
                     num_samples=self.evaluation.num_samples, budget=self.config.budget,
                     started_at=time.time(), finished_at=None, attack_config_digest=attack_config_digest)
        await self._io(self.store.create_run, run)
        state = RunState(run, np.zeros(run.num_samples, np.int64), np.full(run.num_samples, np.inf))
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
                used = await self._io(self.store.usage, run_id, row.num_samples)
                best = await self._io(self.store.best_distances, run_id, row.num_samples)
                ids = None if row.finished else await self._io(self.store.request_ids, run_id)
                state = self._runs.get(run_id)
                if state is None:
                    state = self._runs[run_id] = RunState(row, used, best)
                    state.request_ids = ids
        if state.row.team != team:
            raise NotFound(f"{field}: no run {run_id!r} for team {team!r}")
        return state

    def run_info(self, state: RunState) -> pb.RunInfo:
        row = state.row
        if state.num_classes is None:
            defense = self.store.get_defense(row.defense)
            state.num_classes = defense.num_classes if defense else 0
        num_classes = state.num_classes
        return pb.RunInfo(
            run_id=row.run_id, defense=row.defense, attack=row.attack, team=row.team,
            num_samples=row.num_samples, budget_per_sample=row.budget, max_batch=self.config.max_batch,
            max_message_bytes=self.config.max_message_bytes, num_classes=num_classes, finished=row.finished,
            queries_used=[int(v) for v in state.used], best_distances=[float(v) for v in state.best],
            started_at=row.started_at, attack_config_digest=row.attack_config_digest,
        )

    def run_samples(self, state: RunState, offset: int, limit: int) -> pb.GetRunSamplesResponse:
        n = state.num_samples
        if offset > n:
            raise BadRequest(f"offset: {offset} is past the end of the evaluation set ({n} samples)")
        fit_default = max(1, (DEFAULT_PAGE_BYTES - (64 << 10)) // wire.IMAGE_BYTES)
        fit_max = max(1, (self.config.max_message_bytes - MESSAGE_SLACK) // wire.IMAGE_BYTES)
        count = fit_default if limit == 0 else min(limit, fit_max)
        stop = min(n, offset + count)
        return pb.GetRunSamplesResponse(
            offset=offset, images=wire.encode(self.evaluation.images[offset:stop]),
            labels=[int(v) for v in self.evaluation.labels[offset:stop]],
        )

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

    # ---------------------------------------------------------------- Predict

    async def predict(self, team: str, request: pb.PredictRequest) -> pb.PredictResponse:
        if getattr(request, "error", ""):
            raise BadRequest(request.error)
        state = await self.run(team, request.run_id)
        request_id = request.request_id
        if not request_id:
            raise BadRequest("request_id: required (a client-chosen id, unique per run, makes retries safe)")
        if len(request_id) > REQUEST_ID_MAX:
            raise BadRequest(f"request_id: at most {REQUEST_ID_MAX} characters, got {len(request_id)}")
        replay = await self._replay(state, request)
        if replay is not None:
            return replay
        if state.finishing:
            raise FinishedRun(f"run_id: run {state.row.run_id!r} is finished; it takes no more queries")
        images = wire.decode(request.images, "images", self.config.max_batch)
        indices = wire.check_sample_indices(request.sample_indices, images.shape[0], state.num_samples)
        counts = np.bincount(indices, minlength=state.num_samples)
        state.reserve(counts)
        state.enter()
        consumed = False
        answer: dict = {}
        run_id = state.row.run_id
        true_labels = self.evaluation.labels

        def prepare(result: BatchResult) -> list:  # on the worker thread, before the group commit
            nonlocal consumed
            with state.lock:
                state.consume(counts)
                consumed = True
                remaining = (state.budget - state.used[indices]).astype("<u4")
            labels = result.labels.astype("<i4")
            answer["remaining"] = remaining
            ops: list = [Charge(run_id, int(s), int(c)) for s, c in zip(np.flatnonzero(counts), counts[counts > 0])]
            ops.append(RequestRecord(run_id, request_id, request_digest(indices, images), labels.tobytes(),
                                     remaining.tobytes(), time.time()))
            # what verification may take for free: the images answered adversarial (see above)
            adversarial = np.flatnonzero(labels != true_labels[indices])
            ops += [QueryRecord(run_id, int(indices[i]), h, int(labels[i]))
                    for i, h in zip(adversarial, image_sha256(images, adversarial))]
            return ops

        def rollback() -> None:
            if consumed:
                state.unconsume(counts)
            else:
                state.release(counts)

        job = self._batcher(state.row.defense).submit(images, prepare, rollback)
        state.pending[request_id] = job

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
        # A point read on the loop thread (tens of microseconds): cheaper than a thread hop.
        stored = self.store.get_request(state.row.run_id, request_id)
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

        def measure():
            hashes = image_sha256(images)
            known = self.store.query_labels(run_id, list(zip(indices.tolist(), hashes)))
            return hashes, known, l2_distances(images, self._clean64[indices])

        hashes, known, distances = await loop.run_in_executor(self.io_pool, measure)
        if state.finishing:  # FinishRun came in meanwhile: nothing counts after it
            raise FinishedRun(f"run_id: run {state.row.run_id!r} is finished; it takes no more adversarials")
        free = np.array([(int(s), h) in known for s, h in zip(indices, hashes)], dtype=bool)
        counts = np.bincount(indices[~free], minlength=state.num_samples)
        state.reserve(counts)
        state.enter()
        consumed = False
        restore: dict[int, float] = {}
        verdicts: list[pb.Verdict] = []
        true_labels = self.evaluation.labels

        def prepare(result: BatchResult) -> list:  # on the worker thread, before the group commit
            with state.lock:
                return _prepare(result)

        def _prepare(result: BatchResult) -> list:
            nonlocal consumed
            state.consume(counts)
            consumed = True
            ops: list = [Charge(run_id, int(s), int(c)) for s, c in zip(np.flatnonzero(counts), counts[counts > 0])]
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
                                "not accepted (ARENA_RULES section 5)")
                elif adversarial:  # charged and answered adversarial: verifying it again is free
                    ops.append(QueryRecord(run_id, s, h, int(label)))
                if accepted and label == FAILED_LABEL:
                    note = "the defense failed on this image: counts as misclassified (ARENA_RULES section 5)"
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

        def rollback() -> None:
            with state.lock:
                if consumed:
                    state.unconsume(counts)
                    for s, value in restore.items():
                        state.best[s] = value
                else:
                    state.release(counts)

        job = self._batcher(state.row.defense).submit(images, prepare, rollback)
        job.when_finished(state.leave)
        await job.future
        for verdict in verdicts:
            verdict.best_distance = float(state.best[verdict.sample_index])
        return pb.SubmitAdversarialsResponse(verdicts=verdicts)


def _rejection_message(name: str, reasons: list[str]) -> str:
    return f"defense {name!r} rejected ({len(reasons)} failed rule{'s' if len(reasons) != 1 else ''}): " + "; ".join(reasons)


__all__ = ["Arena", "ArenaConfig", "l2_distances"]
