"""The queries room: Predict and SubmitAdversarials, top to bottom (docs/rules.md sections 4-5).

Predict: the run, a replay of a repeated request id (its stored answer), the image checks, the
sample each image is charged to (`arena.ground.charging`), the team's room on the defense
(`arena.server.admission`), the reservation of the charge (`arena.server.ledger`), then the
defense's micro-batcher (`arena.server.batching`) whose group commit writes the charge, the
request's record and the hashes of the images answered adversarial before a label is released.

SubmitAdversarials: an image whose exact bytes Predict answered adversarial for the same run and
sample is verified free; any other is charged one query like Predict, and the whole request is
refused when over budget. A label that changed since the query is not accepted.
"""

from __future__ import annotations

import asyncio
import functools
import time

import numpy as np

from arena.ground.contract import FAILED_LABEL, l2_distances
from arena.server import images as wire
from arena.server.batching import BatchResult
from arena.server.calls import PredictAnswer, PredictCall, SubmitCall, Verdict
from arena.server.digests import image_digests, request_digest
from arena.server.errors import BadRequest, FinishedRun, Unavailable
from arena.server.ledger import AlreadyAnswered, Charging, RunState
from arena.server.store import AdversarialRecord, QueryRecord, RequestRecord

REQUEST_ID_MAX = 128


class Queries:
    """Predict and SubmitAdversarials on a run."""

    def __init__(self, arena) -> None:
        self.arena = arena   # arena.server.core.Arena: the state the rooms share

    def _decode(self, state: RunState, images, sample_indices) -> tuple[np.ndarray, np.ndarray]:
        """The request's images (a checked, read-only view of its bytes) and sample indices."""
        array = wire.decode(images, "images", self.arena.config.max_batch)
        return array, wire.check_sample_indices(sample_indices, array.shape[0], state.num_samples)

    def _true_labels(self, state: RunState) -> np.ndarray:
        evaluation = self.arena.evaluation
        return evaluation.labels[evaluation.split_slice(state.row.split)]

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
                await self.arena.io(charging.reserve_shared, digest)
            else:
                charging.reserve()
        except BaseException:
            state.leave()
            raise

    # ---------------------------------------------------------------- Predict

    async def predict(self, team: str, call: PredictCall) -> PredictAnswer:
        arena = self.arena
        state = await arena.runs.get(team, call.run_id)
        arena.sync(1.0)
        request_id = call.request_id
        if not request_id:
            raise BadRequest("request_id: required (a client-chosen id, unique per run, makes retries safe)")
        if len(request_id) > REQUEST_ID_MAX:
            raise BadRequest(f"request_id: at most {REQUEST_ID_MAX} characters, got {len(request_id)}")
        while True:
            replay = await self._replay(state, call)
            if replay is not None:
                return replay
            if request_id not in state.pending:  # a duplicate claimed it while _replay awaited
                break
        if state.finishing:
            raise FinishedRun(f"run_id: run {state.row.run_id!r} is finished; it takes no more queries")
        images, indices = self._decode(state, call.images, call.sample_indices)
        digest = functools.cache(lambda: request_digest(indices, images))   # shared claim and replay record
        claim = state.pending[request_id] = _Claim()   # duplicates wait for this attempt from here on
        defense, n = state.row.defense, images.shape[0]
        admitted = False
        try:
            await arena.admission.enter(team, defense, n)   # one team cannot starve the defense
            admitted = True
            charged = await self._charged_samples(state, images, indices)
            charging = Charging(state, np.bincount(charged, minlength=state.num_samples), request_id=request_id)
            await self._reserve(charging, digest)
        except BaseException as error:
            if admitted:
                arena.admission.leave(team, defense, n)
            state.pending.pop(request_id, None)
            claim.settle(None)
            if isinstance(error, AlreadyAnswered):   # by another replica, or by this one meanwhile
                stored = await arena.io(arena.store.get_request, state.row.run_id, request_id)
                replay = self._stored_answer(state, call, stored)
                if replay is None:  # answers are never deleted: a store out of step with itself
                    raise Unavailable("the arena could not read this request's stored answer; retry") from None
                return replay
            raise
        answer: dict = {}
        run_id = state.row.run_id
        true_labels = self._true_labels(state)
        digest_kind = arena.store.image_digest

        def prepare(result: BatchResult) -> list:  # on the worker thread, before the group commit
            with state.lock:
                charging.consume()
                remaining = charging.remaining(charged).astype("<u4")
            labels = result.labels.astype("<i4")
            answer["remaining"] = remaining
            ops: list = charging.ops()
            ops.append(RequestRecord(run_id, request_id, digest(), labels.tobytes(),
                                     remaining.tobytes(), time.time()))
            # what verification may take for free: the images answered adversarial
            adversarial = np.flatnonzero(labels != true_labels[indices])
            ops += [QueryRecord(run_id, int(indices[i]), h, int(labels[i]))
                    for i, h in zip(adversarial, image_digests(images, adversarial, digest_kind))]
            return ops

        job = arena.registry.batcher(defense).submit(images, prepare, charging.rollback)
        state.pending[request_id] = job
        claim.settle(job)

        def finished() -> None:
            arena.admission.leave(team, defense, n)
            state.pending.pop(request_id, None)
            if job.error is None and state.request_ids is not None:
                state.request_ids.add(request_id)
            state.leave()

        job.when_finished(finished)
        # if this caller goes away, the job still completes and is charged; a retry replays it
        result = await job.future
        return PredictAnswer(labels=result.labels, remaining=answer["remaining"], charged_samples=charged,
                             replayed=False)

    async def _charged_samples(self, state: RunState, images: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """The sample each image is charged to (`arena.ground.charging`): one distance per image on
        the loop; the search over the split, for the images outside their named sample's ball, off it."""
        charger = self.arena.chargers[state.row.split]
        charged, rest = charger.fast_path(images, indices)
        if rest.size:
            charged[rest] = await self.arena.io(charger.slow, images[rest], indices[rest])
        return charged

    async def _replay(self, state: RunState, call: PredictCall) -> PredictAnswer | None:
        """The stored answer of a repeated request id (waiting for it if still in flight)."""
        request_id = call.request_id
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
        store = self.arena.store
        if state.shared:  # a finished run: a read on the database server, off the loop
            stored = await self.arena.io(store.get_request, state.row.run_id, request_id)
        else:  # a point read on the loop thread (tens of microseconds): cheaper than a thread hop
            stored = store.get_request(state.row.run_id, request_id)
        return self._stored_answer(state, call, stored)

    def _stored_answer(self, state: RunState, call: PredictCall, stored) -> PredictAnswer | None:
        if stored is None:
            return None
        images, indices = self._decode(state, call.images, call.sample_indices)
        if request_digest(indices, images) != stored.digest:
            raise BadRequest(f"request_id: {call.request_id!r} was already used for a different request in this run")
        charged = self.arena.chargers[state.row.split].charged(images, indices)   # a function of the bytes
        return PredictAnswer(labels=stored.labels, remaining=stored.remaining, charged_samples=charged,
                             replayed=True)

    # ---------------------------------------------------------------- SubmitAdversarials

    async def submit_adversarials(self, team: str, call: SubmitCall) -> list[Verdict]:
        arena = self.arena
        state = await arena.runs.get(team, call.run_id)
        if state.finishing:
            raise FinishedRun(f"run_id: run {state.row.run_id!r} is finished; it takes no more adversarials")
        images, indices = self._decode(state, call.images, call.sample_indices)
        defense, n = state.row.defense, images.shape[0]
        await arena.admission.enter(team, defense, n)   # one team cannot starve the defense
        try:
            job, verdicts = await self._verify(state, images, indices)
        except BaseException:
            arena.admission.leave(team, defense, n)
            raise
        job.when_finished(lambda: arena.admission.leave(team, defense, n))
        await job.future
        if state.shared:  # another replica may hold a closer one
            best = await arena.io(arena.store.best_distances, state.row.run_id, state.num_samples)
            with state.lock:
                state.best = np.minimum(state.best, best)
        for verdict in verdicts:
            verdict.best_distance = float(state.best[verdict.sample_index])
        return verdicts

    async def _verify(self, state: RunState, images: np.ndarray, indices: np.ndarray):
        """Measures, charges and queues the verification: (its batcher job, its verdicts once done)."""
        arena, run_id = self.arena, state.row.run_id
        base = arena.evaluation.split_slice(state.row.split).start

        def measure():
            hashes = image_digests(images, algorithm=arena.store.image_digest)
            known = arena.store.query_labels(run_id, list(zip(indices.tolist(), hashes)))
            charged = arena.chargers[state.row.split].charged(images, indices)
            return hashes, known, l2_distances(images, arena.clean64[base + indices]), charged

        hashes, known, distances, charged = await arena.io(measure)
        if state.finishing:  # FinishRun came in meanwhile: nothing counts after it
            raise FinishedRun(f"run_id: run {state.row.run_id!r} is finished; it takes no more adversarials")
        # free: exact bytes Predict answered adversarial for this run and named sample; any other
        # image is charged like a query, to the sample it is about (docs/rules.md section 4)
        free = np.array([(int(s), h) in known for s, h in zip(indices, hashes)], dtype=bool)
        counts = np.bincount(charged[~free], minlength=state.num_samples)
        restore: dict[int, float] = {}

        def restore_best() -> None:
            for s, value in restore.items():
                state.best[s] = value

        charging = Charging(state, counts, on_rollback=restore_best)
        await self._reserve(charging)
        verdicts: list[Verdict] = []
        true_labels = self._true_labels(state)

        def prepare(result: BatchResult) -> list:  # on the worker thread, before the group commit
            with state.lock:
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
                    verdicts.append(Verdict(
                        sample_index=s, label=int(label), adversarial=adversarial, distance=float(distances[i]),
                        accepted=accepted, charged=not bool(free[i]), note=note,
                        charged_sample=0 if free[i] else int(charged[i]),
                    ))
                now = time.time()
                for s, i in best_here.items():
                    ops.append(AdversarialRecord(run_id, s, float(distances[i]), int(result.labels[i]),
                                                 images[i].tobytes(), now))
                return ops

        job = arena.registry.batcher(state.row.defense).submit(images, prepare, charging.rollback)
        job.when_finished(state.leave)
        return job, verdicts


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
