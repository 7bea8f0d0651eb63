"""The gRPC servicers: requests in, `Arena` calls, responses out, and the one mapping from errors
to status codes.

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
from arena.server.core import Arena
from arena.server.errors import ArenaError, BadRequest, BudgetExceeded, PermissionDenied
from arena.server.images import parse_with_images
from arena.server.leaderboard import compute, report_html
from arena.server.leaderboard_wire import SPLITS, to_proto
from arena.server.store import FINAL, OPEN, ORGANIZER, PRIVATE, PUBLIC, TEAM, StoreError
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
        row = await self.arena.submit_defense(current_team.get(), request_iterator)
        return pb.SubmitDefenseResponse(defense=self.arena.defense_message(row, current_role.get()))

    @_status
    async def ListDefenses(self, request, context):
        rows = await self.arena.list_defenses()
        role = current_role.get()
        return pb.ListDefensesResponse(defenses=[self.arena.defense_message(r, role) for r in rows])

    @_status
    async def GetDefense(self, request, context):
        row = await self.arena.get_defense(request.name)
        return pb.GetDefenseResponse(defense=self.arena.defense_message(row, current_role.get()))


class RunServicer(pb_grpc.RunServiceServicer):
    """StartRun, GetRun, GetRunSamples, Predict, SubmitAdversarials, FinishRun, ListRuns."""
    def __init__(self, arena: Arena) -> None:
        self.arena = arena

    @_status
    async def StartRun(self, request, context):
        split = _enum(request.split, SPLIT_NAMES, "split")
        state = await self.arena.start_run(current_team.get(), request.defense, request.attack,
                                           role=current_role.get(), split=split,
                                           config_digest=request.attack_config_digest)
        return pb.StartRunResponse(run=self.arena.run_info(state))

    @_status
    async def GetRun(self, request, context):
        state = await self.arena.run(current_team.get(), request.run_id)
        return pb.GetRunResponse(run=await self.arena.current_info(state))

    @_status
    async def GetRunSamples(self, request, context):
        state = await self.arena.run(current_team.get(), request.run_id)
        return self.arena.run_samples(state, request.offset, request.limit)

    @_status
    async def Predict(self, request, context):
        return await self.arena.predict(current_team.get(), request)

    @_status
    async def SubmitAdversarials(self, request, context):
        return await self.arena.submit_adversarials(current_team.get(), request)

    @_status
    async def FinishRun(self, request, context):
        state = await self.arena.run(current_team.get(), request.run_id)
        state = await self.arena.finish_run(state)
        return pb.FinishRunResponse(run=await self.arena.current_info(state))

    @_status
    async def ListRuns(self, request, context):
        return pb.ListRunsResponse(runs=await self.arena.list_runs(current_team.get(), current_role.get()))


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
        return pb.GetCompetitionResponse(competition=self.arena.competition(current_team.get(), current_role.get()))


class AdminServicer(pb_grpc.AdminServiceServicer):
    """Organizer-only (the auth interceptor refuses every other role before these run)."""

    def __init__(self, arena: Arena, forget_tokens) -> None:
        self.arena = arena
        self._forget_tokens = forget_tokens

    def _competition(self):
        return self.arena.competition(current_team.get(), current_role.get())

    @_status
    async def SetPhase(self, request, context):
        phase = _enum(request.phase, PHASE_NAMES, "phase", unspecified_ok=False)
        await self.arena.set_phase(current_team.get(), phase, request.reason)
        return pb.SetPhaseResponse(competition=self._competition())

    @_status
    async def SetBudget(self, request, context):
        await self.arena.set_budget(current_team.get(), int(request.budget_per_sample), request.reason)
        return pb.SetBudgetResponse(competition=self._competition())

    @_status
    async def CreateToken(self, request, context):
        role = _enum(request.role, ROLE_NAMES, "role") or TEAM
        token = await self.arena.create_token(current_team.get(), request.team, role, request.reason)
        return pb.CreateTokenResponse(token=token)

    @_status
    async def RevokeTokens(self, request, context):
        count = await self.arena.revoke_tokens(current_team.get(), request.team, request.reason)
        self._forget_tokens()
        return pb.RevokeTokensResponse(revoked=count)

    @_status
    async def Disqualify(self, request, context):
        target = request.WhichOneof("target")
        if target is None:
            raise BadRequest("target: name a defense or a run_id")
        kind = "defense" if target == "defense" else "run"
        await self.arena.disqualify(current_team.get(), kind, getattr(request, target), request.reason)
        return pb.DisqualifyResponse()

    @_status
    async def ListActions(self, request, context):
        actions = await self.arena.actions()
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
