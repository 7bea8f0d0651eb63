"""Bearer tokens per team, stored hashed (sha256), and the server interceptor that checks them.

Clients send `authorization: Bearer <token>` metadata on every call. Health checks and server
reflection need no token; every other call without a known token ends UNAUTHENTICATED. The
handler runs with `current_team` set to the token's team.
"""

from __future__ import annotations

import contextvars
import hashlib
import re
import secrets

import grpc

from arena.server.store import Store

TEAM_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TOKEN_PREFIX = "arena_"
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/")

current_team: contextvars.ContextVar[str] = contextvars.ContextVar("current_team")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(store: Store, team: str) -> str:
    """A new random token for `team`; only its sha256 is stored, so this is the one chance to see it."""
    if not TEAM_PATTERN.match(team):
        raise ValueError(f"team name {team!r}: use 1-64 characters of [A-Za-z0-9_.-]")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    store.add_token(team, hash_token(token))
    return token



class TokenCache:
    """token -> team, read through to the store (tokens made while the server runs work). Known
    tokens are kept by value, so a call costs a dict lookup, not a sha256; unknown ones are not
    kept (a flood of wrong tokens cannot grow the cache)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._teams: dict[str, str] = {}

    def team(self, token: str) -> str | None:
        team = self._teams.get(token)
        if team is None:
            team = self._store.team_for_token(hash_token(token))
            if team is not None:
                self._teams[token] = team
        return team


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
        team = self._tokens.team(token) if token else None
        if team is None:
            reason = ("missing bearer token: send metadata 'authorization: Bearer <token>'" if token is None
                      else "unknown token")
            return _deny(handler, reason)
        return _bind_team(handler, team)


def _deny(handler: grpc.RpcMethodHandler, reason: str) -> grpc.RpcMethodHandler:
    async def abort(request_or_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    return _replace(handler, abort)


def _bind_team(handler: grpc.RpcMethodHandler, team: str) -> grpc.RpcMethodHandler:
    inner = handler.unary_unary or handler.stream_unary
    if inner is None:  # the arena has no streaming responses
        return _deny(handler, "this method is not served")

    async def behaviour(request_or_iterator, context):
        current_team.set(team)
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
