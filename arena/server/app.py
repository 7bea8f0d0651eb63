"""The arena server's lifecycle (grpc.aio): the arena.v1 services (`arena.server.transport`),
health, reflection, auth.

In-process use (tests, `arena demo`, `arena bench serve`):

    from arena.server import ServerConfig, start_server
    server = start_server(ServerConfig(store="arena-store", data="demo", port=0))
    server.address          # "127.0.0.1:PORT"
    token = server.create_token("my-team")
    ...
    server.stop()           # graceful: health NOT_SERVING, in-flight calls finish, store closed

`start_server` runs the server on its own event loop in a background thread; `serve(config)`
runs it in the foreground until SIGTERM/SIGINT (`arena serve`).

Status codes: see `arena.server.transport`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from arena.server import evaluation as evaluation_module
from arena.server.auth import AuthInterceptor, TokenCache
from arena.server.core import Arena
from arena.server.evaluation import EvaluationData
from arena.server.settings import ServerConfig
from arena.server.store import Store, open_store
from arena.server.transport import add_services
from arena.ground.tuning import tune_malloc
from protos import arena_v1_pb2 as pb

log = logging.getLogger("arena.server")

SERVICE_NAMES = tuple(service.full_name for service in pb.DESCRIPTOR.services_by_name.values())
REPORT_SEND_LIMIT = 256 << 20
SHUTDOWN_MARGIN_S = 2.0                        # of the grace period, kept for closing after children end


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
        self.store = open_store(cfg.database_url or cfg.store, durability=cfg.durability)
        try:
            self.store.claim_serving()
            if evaluation is None:
                source = evaluation_module.Source(cfg.data, cfg.public_samples, cfg.private_samples,
                                                  cfg.private_data, cfg.private_from_public)
                evaluation = await loop.run_in_executor(None, evaluation_module.for_store, self.store, source)
            else:
                evaluation_module.pin(self.store, evaluation, "arrays given in-process")
        except BaseException:
            self.store.close()
            raise
        self.arena = Arena(self.store, evaluation, cfg.arena)
        try:
            await self._listen(evaluation)
            self.arena.private.resume()
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
        tokens = TokenCache(self.store)
        server = grpc.aio.server(
            interceptors=[AuthInterceptor(tokens)],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", max(limit, REPORT_SEND_LIMIT)),
                ("grpc.so_reuseport", 0),
            ],
        )
        add_services(self.arena, server, tokens.forget)
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
            from arena.server.http_report import ReportServer

            self._http = ReportServer(self.store, cfg.host, cfg.http_port, metrics=self.arena.metrics, tokens=tokens,
                                      attack_board_top_k=cfg.arena.attack_board_top_k)
            self.http_address = self._http.address
        log.info("arena serving on %s (public split %d samples, private %d from %s; phase %s)", self.address,
                 evaluation.split_size("public"), evaluation.split_size("private"), evaluation.private_source,
                 self.arena.phase)
        if evaluation.demo:
            log.warning("the private split comes from public data (--private-from-public): this is a demo, "
                        "not a competition, and every board says so")

    async def stop(self, grace: float | None = None) -> None:
        """Graceful: health NOT_SERVING, no new calls, in-flight calls finish, commits land."""
        if self._server is None:
            return
        grace = self.config.grace_s if grace is None else grace
        # Whatever a child is doing, the grace period holds: children still running when it is
        # nearly over are ended (their calls answer UNAVAILABLE at once), leaving time to close.
        cutoff = max(0.0, grace - min(SHUTDOWN_MARGIN_S, grace / 3))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cutoff

        def end_children() -> None:
            if self.arena is not None and (len(self.arena.children) or self.arena.sessions.loaded()):
                log.warning("grace period nearly over: ending the arena's child processes")
                self.arena.kill_children()

        timer = loop.call_at(deadline, end_children)
        if self.arena is not None:
            self.arena.private.cancel()
        try:
            await self._health.enter_graceful_shutdown()
            await self._server.stop(grace)
            if self.arena is not None:
                try:
                    await asyncio.wait_for(self.arena.drain(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    end_children()
                    await self.arena.drain()
        finally:
            timer.cancel()
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

    def create_token(self, team: str, role: str = "team") -> str:
        """A bearer token for `team` on this server's store (see arena.server.auth.create_token)."""
        from arena.server.auth import create_token

        return create_token(self.server.store, team, role)

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
