"""Bearer tokens per team, stored hashed (sha256), roles, and the server interceptor that checks them.

Clients send `authorization: Bearer <token>` metadata on every call. Health checks and server
reflection need no token; every other call without a known, unrevoked token ends
UNAUTHENTICATED. A token has a role (docs/rules.md section 8): `team`, or `organizer`, the only
role AdminService answers (PERMISSION_DENIED otherwise). The handler runs with `current_team`
and `current_role` set.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import re
import secrets
import time

import grpc

from arena.server.store import ORGANIZER, ROLES, TEAM, Action, Store

TEAM_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TOKEN_PREFIX = "arena_"
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/")

ORGANIZER_SERVICES = ("/arena.v1.AdminService/",)
TOKEN_CACHE_SECONDS = 5.0   # a revoked token stops working within this time on every replica

current_team: contextvars.ContextVar[str] = contextvars.ContextVar("current_team")
current_role: contextvars.ContextVar[str] = contextvars.ContextVar("current_role", default=TEAM)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(store: Store, team: str, role: str = TEAM, action: Action | None = None) -> str:
    """A new random token for `team` with `role`; only its sha256 is stored, so this is the one
    chance to see it."""
    if not TEAM_PATTERN.match(team):
        raise ValueError(f"team name {team!r}: use 1-64 characters of [A-Za-z0-9_.-]")
    if role not in ROLES:
        raise ValueError(f"role {role!r}: one of {', '.join(ROLES)}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    store.add_token(team, hash_token(token), role, action)
    return token



class TokenCache:
    """token -> (team, role), read through to the store (tokens made while the server runs work).
    Known tokens are kept by value for TOKEN_CACHE_SECONDS, so a call costs a dict lookup, not a
    sha256, and a revocation (by any replica) takes effect within that time; unknown ones are not
    kept (a flood of wrong tokens cannot grow the cache)."""

    def __init__(self, store: Store, ttl: float = TOKEN_CACHE_SECONDS) -> None:
        self._store = store
        self._ttl = ttl
        self._known: dict[str, tuple[str, str, float]] = {}

    def cached(self, token: str) -> tuple[str, str] | None:
        """The identity if it was read from the store less than the TTL ago (no I/O), else None."""
        known = self._known.get(token)
        if known is not None and time.monotonic() - known[2] < self._ttl:
            return known[0], known[1]
        return None

    def identity(self, token: str) -> tuple[str, str] | None:
        """The token's identity, from the store when not cached (blocking: off the event loop)."""
        cached = self.cached(token)
        if cached is not None:
            return cached
        now = time.monotonic()
        identity = self._store.token_identity(hash_token(token))
        if identity is None:
            self._known.pop(token, None)
            return None
        self._known[token] = (identity[0], identity[1], now)
        return identity

    def team(self, token: str) -> str | None:
        identity = self.identity(token)
        return None if identity is None else identity[0]

    def forget(self) -> None:
        """Drops every cached token (this replica revoked some)."""
        self._known.clear()


def _token_from(metadata) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Resolves the bearer token to a team before the handler runs; UNAUTHENTICATED otherwise."""

    def __init__(self, tokens: TokenCache) -> None:
        self._tokens = tokens

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_SERVICES):
            return handler
        token = _token_from(handler_call_details.invocation_metadata)
        identity = self._tokens.cached(token) if token else None
        if token and identity is None:
            # a store read (a network round trip with PostgreSQL): off the event loop, so that a
            # flood of unknown tokens cannot stall every other call
            identity = await asyncio.get_running_loop().run_in_executor(None, self._tokens.identity, token)
        if identity is None:
            reason = ("missing bearer token: send metadata 'authorization: Bearer <token>'" if token is None
                      else "unknown or revoked token")
            return _deny(handler, reason)
        team, role = identity
        if handler_call_details.method.startswith(ORGANIZER_SERVICES) and role != ORGANIZER:
            return _deny(handler, "this call is the organizer's: a team token may not make it",
                         grpc.StatusCode.PERMISSION_DENIED)
        return _bind_team(handler, team, role)


def _deny(handler: grpc.RpcMethodHandler, reason: str,
          code: grpc.StatusCode = grpc.StatusCode.UNAUTHENTICATED) -> grpc.RpcMethodHandler:
    async def abort(request_or_iterator, context):
        await context.abort(code, reason)

    return _replace(handler, abort)


def _bind_team(handler: grpc.RpcMethodHandler, team: str, role: str) -> grpc.RpcMethodHandler:
    inner = handler.unary_unary or handler.stream_unary
    if inner is None:  # the arena has no streaming responses
        return _deny(handler, "this method is not served")

    async def behaviour(request_or_iterator, context):
        current_team.set(team)
        current_role.set(role)
        return await inner(request_or_iterator, context)

    return _replace(handler, behaviour)


def _replace(handler: grpc.RpcMethodHandler, behaviour) -> grpc.RpcMethodHandler:
    kwargs = dict(request_deserializer=handler.request_deserializer,
                  response_serializer=handler.response_serializer)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(behaviour, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(behaviour, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(behaviour, **kwargs)
    return grpc.unary_unary_rpc_method_handler(behaviour, **kwargs)
