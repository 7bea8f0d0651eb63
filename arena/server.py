"""The arena's gRPC server (grpc.aio): the three arena.v1 services, health, reflection, auth.

In-process use (tests, `arena demo`, `arena bench serve`):

    from arena.server import ServerConfig, start_server
    server = start_server(ServerConfig(store="arena-store", data="demo", port=0))
    server.address          # "127.0.0.1:PORT"
    token = server.create_token("my-team")
    ...
    server.stop()           # graceful: health NOT_SERVING, in-flight calls finish, store closed

`start_server` runs the server on its own event loop in a background thread; `serve(config)`
runs it in the foreground until SIGTERM/SIGINT (`arena serve`).

Status codes: INVALID_ARGUMENT malformed input (the message names the field), NOT_FOUND unknown
run / sample / defense (another team's run reads as unknown), FAILED_PRECONDITION finished run,
RESOURCE_EXHAUSTED budget overdraw (and gRPC's own oversized-message refusal), ALREADY_EXISTS a
taken defense name, UNAUTHENTICATED missing or unknown token, UNAVAILABLE only for what a client
should retry (with the same request id). Messages never carry logits, scores or timings.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from arena import evaluation as evaluation_module
from arena.auth import AuthInterceptor, TokenCache, current_team
from arena.core import Arena, ArenaConfig
from arena.errors import ArenaError, BudgetExceeded
from arena.evaluation import EvaluationData
from arena.images import parse_with_images
from arena.leaderboard import compute, report_html
from arena.leaderboard_wire import to_proto
from arena.store import Store, StoreError, open_store
from arena.tuning import tune_malloc
from protos import arena_v1_pb2 as pb
from protos import arena_v1_pb2_grpc as pb_grpc

log = logging.getLogger("arena.server")

SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["DefenseService"].full_name,
    pb.DESCRIPTOR.services_by_name["RunService"].full_name,
    pb.DESCRIPTOR.services_by_name["LeaderboardService"].full_name,
)
REPORT_SEND_LIMIT = 256 << 20


@dataclass
class ServerConfig:
    store: str | Path = "arena-store"
    data: str = "demo"
    eval_samples: int | None = 100
    evaluation: EvaluationData | None = None   # given arrays instead of --data (tests)
    database_url: str | None = None            # default: sqlite:///<store>/arena.db
    host: str = "127.0.0.1"
    port: int = 50051                          # 0: an ephemeral port
    http_port: int | None = None               # serve the HTML report live on this port
    durability: str = "full"
    grace_s: float = 10.0
    arena: ArenaConfig = field(default_factory=ArenaConfig)


def _status(method):
    """Maps arena errors to status codes; everything else is INTERNAL without details."""
    @wraps(method)
    async def wrapper(self, request, context):
        try:
            return await method(self, request, context)
        except ArenaError as error:
            if isinstance(error, BudgetExceeded) and error.samples:
                context.set_trailing_metadata((("arena-exhausted-samples", ",".join(map(str, error.samples))),))
            await context.abort(error.code, str(error))
        except StoreError as error:
            log.error("store error in %s: %s", method.__name__, error)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the arena's store is not available; retry")
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception:  # a bug: logged here, nothing internal goes to the client
            log.exception("internal error in %s", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
    return wrapper


class DefenseServicer(pb_grpc.DefenseServiceServicer):
    def __init__(self, arena: Arena) -> None:
        self.arena = arena

    @_status
    async def SubmitDefense(self, request_iterator, context):
        row = await self.arena.submit_defense(current_team.get(), request_iterator)
        return pb.SubmitDefenseResponse(defense=Arena.defense_message(row))

    @_status
    async def ListDefenses(self, request, context):
        rows = await self.arena.list_defenses()
        return pb.ListDefensesResponse(defenses=[Arena.defense_message(r) for r in rows])

    @_status
    async def GetDefense(self, request, context):
        return pb.GetDefenseResponse(defense=Arena.defense_message(await self.arena.get_defense(request.name)))


class RunServicer(pb_grpc.RunServiceServicer):
    def __init__(self, arena: Arena) -> None:
        self.arena = arena

    @_status
    async def StartRun(self, request, context):
        state = await self.arena.start_run(current_team.get(), request.defense, request.attack,
                                           request.attack_config_digest)
        return pb.StartRunResponse(run=self.arena.run_info(state))

    @_status
    async def GetRun(self, request, context):
        state = await self.arena.run(current_team.get(), request.run_id)
        return pb.GetRunResponse(run=self.arena.run_info(state))

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
        return pb.FinishRunResponse(run=self.arena.run_info(state))


class LeaderboardServicer(pb_grpc.LeaderboardServiceServicer):
    def __init__(self, arena: Arena) -> None:
        self.arena = arena

    @_status
    async def GetLeaderboard(self, request, context):
        board = await asyncio.get_running_loop().run_in_executor(self.arena.io_pool, compute, self.arena.store)
        return to_proto(board)

    @_status
    async def GetReport(self, request, context):
        html = await asyncio.get_running_loop().run_in_executor(self.arena.io_pool, report_html, self.arena.store)
        return pb.GetReportResponse(html=html)


def add_run_service(servicer: RunServicer, server) -> None:
    """Registers RunService like the generated add_RunServiceServicer_to_server, except that
    Predict and SubmitAdversarials parse their requests without copying the pixels
    (arena.images.parse_with_images)."""
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


class ArenaServer:
    """One server: build with a config, `await start()`, `await stop()`."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store: Store | None = None
        self.arena: Arena | None = None
        self.address: str = ""
        self.http_address: str = ""
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        self._http = None
        self._stopped = asyncio.Event()

    async def start(self) -> str:
        cfg = self.config
        tune_malloc()
        evaluation = cfg.evaluation
        loop = asyncio.get_running_loop()
        if evaluation is None:
            evaluation = await loop.run_in_executor(None, evaluation_module.load, cfg.data, cfg.eval_samples)
        source = cfg.data if cfg.evaluation is None else "arrays given in-process"
        self.store = open_store(cfg.database_url or cfg.store, durability=cfg.durability)
        try:
            evaluation_module.pin(self.store, evaluation, source)
        except BaseException:
            self.store.close()
            raise
        self.arena = Arena(self.store, evaluation, cfg.arena)
        try:
            await self._listen(evaluation)
        except BaseException:
            if self._server is not None:
                await self._server.stop(0)
                self._server = None
            self.arena.close()
            self.store.close()
            raise
        return self.address

    async def _listen(self, evaluation: EvaluationData) -> None:
        cfg = self.config
        limit = cfg.arena.max_message_bytes
        server = grpc.aio.server(
            interceptors=[AuthInterceptor(TokenCache(self.store))],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", max(limit, REPORT_SEND_LIMIT)),
                ("grpc.so_reuseport", 0),
            ],
        )
        pb_grpc.add_DefenseServiceServicer_to_server(DefenseServicer(self.arena), server)
        add_run_service(RunServicer(self.arena), server)
        pb_grpc.add_LeaderboardServiceServicer_to_server(LeaderboardServicer(self.arena), server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            SERVICE_NAMES + (health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
        try:
            port = server.add_insecure_port(f"{cfg.host}:{cfg.port}")
        except RuntimeError:
            port = 0
        if port == 0:
            raise OSError(f"cannot listen on {cfg.host}:{cfg.port} (address in use?)")
        self._server = server
        await server.start()
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        self.address = f"{host}:{port}"
        for name in ("",) + SERVICE_NAMES:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if cfg.http_port is not None:
            from arena.http_report import ReportServer

            self._http = ReportServer(self.store, cfg.host, cfg.http_port)
            self.http_address = self._http.address
        log.info("arena serving on %s (%d evaluation samples)", self.address, evaluation.num_samples)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful: health NOT_SERVING, no new calls, in-flight calls finish, commits land."""
        if self._server is None:
            return
        grace = self.config.grace_s if grace is None else grace
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)
        if self.arena is not None:
            await self.arena.drain()
        if self._http is not None:
            self._http.close()
        self.arena.close()
        self.store.close()
        self._server = None
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


class RunningServer:
    """A server on its own event loop in a background thread (see `start_server`)."""

    def __init__(self, server: ArenaServer, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self.server = server
        self._loop = loop
        self._thread = thread

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def http_address(self) -> str:
        return self.server.http_address

    @property
    def arena(self) -> Arena:
        return self.server.arena

    def create_token(self, team: str) -> str:
        """A bearer token for `team` on this server's store (see arena.auth.create_token)."""
        from arena.auth import create_token

        return create_token(self.server.store, team)

    def call(self, coroutine, timeout: float | None = None):
        """Runs a coroutine on the server's loop and returns its result (for tests)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def stop(self, grace: float | None = None) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(grace), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_server(config: ServerConfig, timeout: float = 120.0) -> RunningServer:
    """Starts a server in-process (own event loop, background thread); returns once it listens."""
    loop = asyncio.new_event_loop()
    server = ArenaServer(config)
    started = threading.Event()
    box: list[BaseException | None] = [None]

    def main() -> None:
        asyncio.set_event_loop(loop)

        async def boot():
            try:
                await server.start()
            except BaseException as error:
                box[0] = error
            finally:
                started.set()

        loop.create_task(boot())
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    thread = threading.Thread(target=main, name="arena-server", daemon=True)
    thread.start()
    if not started.wait(timeout):
        raise TimeoutError(f"the arena server did not start within {timeout} s")
    if box[0] is not None:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        raise box[0]
    return RunningServer(server, loop, thread)


def serve(config: ServerConfig, ready=None) -> None:
    """Runs the server in the foreground until SIGTERM or SIGINT, then shuts down gracefully."""

    async def main() -> None:
        server = ArenaServer(config)
        await server.start()
        if ready is not None:
            ready(server)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down (grace %.0f s)", config.grace_s)
        await server.stop()

    asyncio.run(main())
