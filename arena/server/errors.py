"""Domain errors of the arena, each mapped to one gRPC status code (see `arena.server`).

Messages name the offending field and never carry logits, scores or timings.
"""

from __future__ import annotations

import grpc


class ArenaError(Exception):
    """Base of the domain errors; `code` is the gRPC status the transport answers with."""

    code = grpc.StatusCode.INTERNAL


class BadRequest(ArenaError, ValueError):
    """Malformed client input (the message names the field)."""
    code = grpc.StatusCode.INVALID_ARGUMENT


class Rejected(BadRequest):
    """A submission that broke a rule: recorded as rejected, every failed rule in the message."""


class NotFound(ArenaError, LookupError):
    """An unknown run, sample or defense (another team's run reads as unknown)."""
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ArenaError):
    """A defense name that is taken (or being validated right now)."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FinishedRun(ArenaError):
    """A query or verification on a run that is finished."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class BudgetExceeded(ArenaError):
    """Refused whole, nothing charged. `samples` (also sent as trailing metadata
    `arena-exhausted-samples: 3,7`) are the samples that would go past their budget."""
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, samples=()) -> None:
        super().__init__(message)
        self.samples = tuple(int(s) for s in samples)


class Busy(ArenaError):
    """The caller already has one of these in progress (a team validates one submission at a time)."""
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class OverCap(ArenaError):
    """A team is at a cap the organizer set (accepted defenses, submissions per UTC day); the
    message names the cap and its flag."""
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ArenaError):
    """Transient: the client may retry (with the same request id)."""
    code = grpc.StatusCode.UNAVAILABLE


class PermissionDenied(ArenaError):
    """The caller's role may not do this (a team calling an organizer-only method, or asking for
    the private split before the final phase)."""
    code = grpc.StatusCode.PERMISSION_DENIED


class FailedPrecondition(ArenaError):
    """The competition's state forbids it now (submissions after the final phase began, a
    disqualified defense, an empty split)."""
    code = grpc.StatusCode.FAILED_PRECONDITION
