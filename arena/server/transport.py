"""The gRPC servicers: each request decoded into a plain value (`arena.server.calls`), handed to
one of the core's rooms, its plain answer encoded into the response; and the one mapping from
errors to status codes. Nothing below this module sees protobuf.

Status codes: INVALID_ARGUMENT malformed input (the message names the field), NOT_FOUND unknown
run / sample / defense (another team's run reads as unknown), FAILED_PRECONDITION a finished
run, closed submissions or a disqualified defense, PERMISSION_DENIED what the caller's role may
not do, RESOURCE_EXHAUSTED budget overdraw (and gRPC's own oversized-message refusal, and a team's
second submission while its first is being validated),
ALREADY_EXISTS a taken defense name, UNAUTHENTICATED missing, unknown or revoked token,
UNAVAILABLE only for what a client should retry (with the same request id). Messages never
carry logits, scores or timings.
"""

from __future__ import annotations

import asyncio
import logging
from functools import wraps

import grpc

from arena.server.auth import current_role, current_team
from arena.server.calls import (
    CompetitionInfo, DefenseUpload, DefenseView, PredictAnswer, PredictCall, RunInfo, Samples, SubmitCall, Verdict,
)
from arena.server.core import Arena
from arena.server.errors import ArenaError, BadRequest, BudgetExceeded, PermissionDenied
from arena.server.images import parse_with_images
from arena.server.leaderboard import compute, report_html
from arena.server.leaderboard_wire import SPLITS, to_proto
from arena.server.store import FINAL, OPEN, ORGANIZER, PRIVATE, PUBLIC, TEAM, StoreError
from arena.ground.wire import encode
from protos import arena_v1_pb2 as pb
from protos import arena_v1_pb2_grpc as pb_grpc

log = logging.getLogger("arena.server")

SPLIT_NAMES = {value: name for name, value in SPLITS.items()}
PHASE_NAMES = {pb.PHASE_OPEN: OPEN, pb.PHASE_FINAL: FINAL}
ROLE_NAMES = {pb.ROLE_TEAM: TEAM, pb.ROLE_ORGANIZER: ORGANIZER}


def _enum(value: int, names: dict, field: str, unspecified_ok: bool = True):
    if value == 0 and unspecified_ok:
        return None
    if value not in names:
        raise BadRequest(f"{field}: unknown value {value}")
    return names[value]


# ---------------------------------------------------------------- protobuf -> calls

def predict_call(request) -> PredictCall:
    """A PredictRequest (as `parse_with_images` parsed it: the images a zero-copy view) as a call."""
    if getattr(request, "error", ""):
        raise BadRequest(request.error)
    return PredictCall(request.run_id, request.request_id, request.images, request.sample_indices)


def submit_call(request) -> SubmitCall:
    if getattr(request, "error", ""):
        raise BadRequest(request.error)
    return SubmitCall(request.run_id, request.images, request.sample_indices)


async def defense_upload(messages) -> DefenseUpload:
    """A SubmitDefense stream: its metadata first, then its chunks (a stream that says otherwise
    is refused where it does)."""
    first = None
    async for first in messages:
        break
    if first is None or first.WhichOneof("part") != "metadata":
        raise BadRequest("metadata: the first message of SubmitDefense must carry the metadata")

    async def chunks():
        async for message in messages:
            if message.WhichOneof("part") != "chunk":
                raise BadRequest("chunk: only the first message may carry metadata; the others carry ONNX bytes")
            yield message.chunk

    return DefenseUpload(first.metadata.name, first.metadata.description, chunks())


# ---------------------------------------------------------------- answers -> protobuf

def defense_message(view: DefenseView) -> pb.Defense:
    return pb.Defense(
        name=view.name, team=view.team,
        status=pb.DEFENSE_STATUS_ACCEPTED if view.accepted else pb.DEFENSE_STATUS_REJECTED,
        description=view.description, sha256=view.sha256, size_bytes=view.size_bytes,
        num_classes=view.num_classes, clean_accuracy=view.clean_accuracy,
        clean_accuracy_private=view.clean_accuracy_private, rejection_reasons=list(view.rejection_reasons),
        submitted_at=view.submitted_at, disqualified_reason=view.disqualified_reason,
        serving_mode=view.serving_mode)


def run_message(info: RunInfo) -> pb.RunInfo:
    return pb.RunInfo(
        run_id=info.run_id, defense=info.defense, attack=info.attack, team=info.team,
        num_samples=info.num_samples, budget_per_sample=info.budget_per_sample, finished=info.finished,
        started_at=info.started_at, split=SPLITS[info.split], attack_config_digest=info.attack_config_digest,
        disqualified_reason=info.disqualified_reason, max_batch=info.max_batch,
        max_message_bytes=info.max_message_bytes, num_classes=info.num_classes,
        queries_used=info.queries_used, remaining=info.remaining, run_queries=info.run_queries,
        best_distances=info.best_distances)


def predict_response(answer: PredictAnswer) -> pb.PredictResponse:
    return pb.PredictResponse(labels=answer.labels.tolist(), remaining=answer.remaining.tolist(),
                              replayed=answer.replayed, charged_samples=answer.charged_samples.tolist())


def verdict_message(v: Verdict) -> pb.Verdict:
    return pb.Verdict(sample_index=v.sample_index, label=v.label, adversarial=v.adversarial, distance=v.distance,
                      best_distance=v.best_distance, accepted=v.accepted, charged=v.charged, note=v.note,
                      charged_sample=v.charged_sample)


def samples_response(samples: Samples) -> pb.GetRunSamplesResponse:
    return pb.GetRunSamplesResponse(offset=samples.offset, images=encode(samples.images),
                                    labels=[int(v) for v in samples.labels])


def competition_message(info: CompetitionInfo) -> pb.Competition:
    return pb.Competition(
        phase=pb.PHASE_OPEN if info.phase == OPEN else pb.PHASE_FINAL, budget_per_sample=info.budget_per_sample,
        public_samples=info.public_samples, private_samples=info.private_samples, team=info.team,
        role=pb.ROLE_ORGANIZER if info.role == ORGANIZER else pb.ROLE_TEAM,
        private_split_source=info.private_split_source, demo=info.demo)


# ---------------------------------------------------------------- errors -> status codes

def _status(method):
    """Maps arena errors to status codes; everything else is INTERNAL without details."""
    @wraps(method)
    async def wrapper(self, request, context):
        # the call is counted before the client can see its status (a scrape right after it
        # returns must find it)
        def observe(code: str, response=None) -> None:
            _observe(self.arena.metrics, method.__name__, request, code, response)

        try:
            response = await method(self, request, context)
        except ArenaError as error:
            observe(error.code.name)
            if isinstance(error, BudgetExceeded) and error.samples:
                context.set_trailing_metadata((("arena-exhausted-samples", ",".join(map(str, error.samples))),))
            await context.abort(error.code, str(error))
        except StoreError as error:
            observe("UNAVAILABLE")
            log.error("store error in %s: %s", method.__name__, error)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the arena's store is not available; retry")
        except asyncio.CancelledError:
            observe("CANCELLED")
            raise
        except grpc.aio.AbortError:
            raise
        except Exception:  # a bug: logged here, nothing internal goes to the client
            observe("INTERNAL")
            log.exception("internal error in %s", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        else:
            observe("OK", response)
            return response
    return wrapper


def _observe(metrics, call: str, request, code: str, response) -> None:
    """One RPC into the replica's metrics: its status, images, and the queries it charged."""
    images = len(getattr(request, "sample_indices", ()))
    charged, replayed = 0, False
    if isinstance(response, pb.PredictResponse):
        replayed = response.replayed
        charged = 0 if replayed else len(response.labels)
    elif isinstance(response, pb.SubmitAdversarialsResponse):
        charged = sum(1 for v in response.verdicts if v.charged)
    metrics.call(call, code, images, charged, replayed)


class DefenseServicer(pb_grpc.DefenseServiceServicer):
    """SubmitDefense, ListDefenses, GetDefense."""
    def __init__(self, arena: Arena) -> None:
        self.arena = arena

    @_status
    async def SubmitDefense(self, request_iterator, context):
        upload = await defense_upload(request_iterator)
        row = await self.arena.submissions.submit(current_team.get(), upload, role=current_role.get())
        return pb.SubmitDefenseResponse(defense=defense_message(self.arena.submissions.view(row, current_role.get())))

    @_status
    async def ListDefenses(self, request, context):
        rows = await self.arena.submissions.list()
        role = current_role.get()
        return pb.ListDefensesResponse(defenses=[defense_message(self.arena.submissions.view(r, role)) for r in rows])

    @_status
    async def GetDefense(self, request, context):
        row = await self.arena.submissions.get(request.name)
        return pb.GetDefenseResponse(defense=defense_message(self.arena.submissions.view(row, current_role.get())))


class RunServicer(pb_grpc.RunServiceServicer):
    """StartRun, GetRun, GetRunSamples, Predict, SubmitAdversarials, FinishRun, ListRuns."""
    def __init__(self, arena: Arena) -> None:
        self.arena = arena

    @_status
    async def StartRun(self, request, context):
        split = _enum(request.split, SPLIT_NAMES, "split")
        runs = self.arena.runs
        state = await runs.start(current_team.get(), request.defense, request.attack,
                                 role=current_role.get(), split=split, config_digest=request.attack_config_digest)
        return pb.StartRunResponse(run=run_message(runs.info(state)))

    @_status
    async def GetRun(self, request, context):
        state = await self.arena.runs.get(current_team.get(), request.run_id)
        return pb.GetRunResponse(run=run_message(await self.arena.runs.current_info(state)))

    @_status
    async def GetRunSamples(self, request, context):
        state = await self.arena.runs.get(current_team.get(), request.run_id)
        return samples_response(self.arena.runs.samples(state, request.offset, request.limit))

    @_status
    async def Predict(self, request, context):
        return predict_response(await self.arena.queries.predict(current_team.get(), predict_call(request)))

    @_status
    async def SubmitAdversarials(self, request, context):
        verdicts = await self.arena.queries.submit_adversarials(current_team.get(), submit_call(request))
        return pb.SubmitAdversarialsResponse(verdicts=[verdict_message(v) for v in verdicts])

    @_status
    async def FinishRun(self, request, context):
        runs = self.arena.runs
        state = await runs.finish(await runs.get(current_team.get(), request.run_id))
        return pb.FinishRunResponse(run=run_message(await runs.current_info(state)))

    @_status
    async def ListRuns(self, request, context):
        runs = await self.arena.runs.list(current_team.get(), current_role.get())
        return pb.ListRunsResponse(runs=[run_message(info) for info in runs])


class LeaderboardServicer(pb_grpc.LeaderboardServiceServicer):
    """Boards per split. A team sees the private (official) board only in the final phase."""

    def __init__(self, arena: Arena) -> None:
        self.arena = arena

    def _split(self, value: int) -> str:
        self.arena.sync()
        split = _enum(value, SPLIT_NAMES, "split") or (PUBLIC if self.arena.phase == OPEN else PRIVATE)
        if split == PRIVATE and self.arena.phase == OPEN and current_role.get() != ORGANIZER:
            raise PermissionDenied("split: the private board is shown from the final phase on")
        return split

    @_status
    async def GetLeaderboard(self, request, context):
        split = self._split(request.split)
        def board():
            return to_proto(compute(self.arena.store, split, attack_board_top_k=self.arena.config.attack_board_top_k))

        return await asyncio.get_running_loop().run_in_executor(self.arena.io_pool, board)

    @_status
    async def GetReport(self, request, context):
        split = self._split(request.split)
        html = await asyncio.get_running_loop().run_in_executor(
            self.arena.io_pool, lambda: report_html(self.arena.store, split,
                                                    attack_board_top_k=self.arena.config.attack_board_top_k))
        return pb.GetReportResponse(html=html)


class CompetitionServicer(pb_grpc.CompetitionServiceServicer):
    """GetCompetition: the phase, the budget, the split sizes and the caller's role."""
    def __init__(self, arena: Arena) -> None:
        self.arena = arena

    @_status
    async def GetCompetition(self, request, context):
        info = self.arena.competition.info(current_team.get(), current_role.get())
        return pb.GetCompetitionResponse(competition=competition_message(info))


class AdminServicer(pb_grpc.AdminServiceServicer):
    """Organizer-only (the auth interceptor refuses every other role before these run)."""

    def __init__(self, arena: Arena, forget_tokens) -> None:
        self.arena = arena
        self.competition = arena.competition
        self._forget_tokens = forget_tokens

    def _competition(self):
        return competition_message(self.competition.info(current_team.get(), current_role.get()))

    @_status
    async def SetPhase(self, request, context):
        phase = _enum(request.phase, PHASE_NAMES, "phase", unspecified_ok=False)
        await self.competition.set_phase(current_team.get(), phase, request.reason)
        return pb.SetPhaseResponse(competition=self._competition())

    @_status
    async def SetBudget(self, request, context):
        await self.competition.set_budget(current_team.get(), int(request.budget_per_sample), request.reason)
        return pb.SetBudgetResponse(competition=self._competition())

    @_status
    async def CreateToken(self, request, context):
        role = _enum(request.role, ROLE_NAMES, "role") or TEAM
        token = await self.competition.create_token(current_team.get(), request.team, role, request.reason)
        return pb.CreateTokenResponse(token=token)

    @_status
    async def RevokeTokens(self, request, context):
        count = await self.competition.revoke_tokens(current_team.get(), request.team, request.reason)
        self._forget_tokens()
        return pb.RevokeTokensResponse(revoked=count)

    @_status
    async def Disqualify(self, request, context):
        target = request.WhichOneof("target")
        if target is None:
            raise BadRequest("target: name a defense or a run_id")
        kind = "defense" if target == "defense" else "run"
        await self.competition.disqualify(current_team.get(), kind, getattr(request, target), request.reason)
        return pb.DisqualifyResponse()

    @_status
    async def ListActions(self, request, context):
        actions = await self.competition.actions()
        return pb.ListActionsResponse(actions=[
            pb.Action(at=a.at, organizer=a.organizer, action=a.action, target=a.target, reason=a.reason)
            for a in actions])


def add_run_service(servicer: RunServicer, server) -> None:
    """Registers RunService like the generated add_RunServiceServicer_to_server, except that
    Predict and SubmitAdversarials parse their requests without copying the pixels
    (arena.server.images.parse_with_images)."""
    service = pb.DESCRIPTOR.services_by_name["RunService"]
    special = {"Predict": parse_with_images(pb.PredictRequest, 4),
               "SubmitAdversarials": parse_with_images(pb.SubmitAdversarialsRequest, 3)}
    handlers = {}
    for method in service.methods:
        request_type = getattr(pb, method.input_type.name)
        response_type = getattr(pb, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=special.get(method.name, request_type.FromString),
            response_serializer=response_type.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


def add_services(arena: Arena, server, forget_tokens) -> tuple[str, ...]:
    """Registers every arena.v1 service on `server`; returns their full names (for health and
    reflection)."""
    pb_grpc.add_DefenseServiceServicer_to_server(DefenseServicer(arena), server)
    add_run_service(RunServicer(arena), server)
    pb_grpc.add_LeaderboardServiceServicer_to_server(LeaderboardServicer(arena), server)
    pb_grpc.add_CompetitionServiceServicer_to_server(CompetitionServicer(arena), server)
    pb_grpc.add_AdminServiceServicer_to_server(AdminServicer(arena, forget_tokens), server)
    return tuple(service.full_name for service in pb.DESCRIPTOR.services_by_name.values())
