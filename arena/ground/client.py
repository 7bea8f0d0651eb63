"""The one client of the arena's gRPC API, used by the CLI, the demo, the referee, `RemoteOracle`
and the benchmarks.

    from arena.ground.client import ArenaClient
    with ArenaClient("127.0.0.1:50051", token) as client:      # token=None -> $ARENA_TOKEN
        client.submit_defense(Path("model.onnx").read_bytes(), name="mine")
        run = client.start_run("mine", attack="my-attack")
        x, y = client.samples(run.run_id)
        labels, remaining = client.predict(run.run_id, x[:4], [0, 1, 2, 3], request_id="mine-0")

- Every call carries `authorization: Bearer <token>`.
- Several replicas: `address` may list them, comma-separated ("10.0.0.1:50051,10.0.0.2:50051");
  gRPC's round_robin policy spreads the calls and routes around a replica that goes away.
- Limits: the channel accepts messages up to CLIENT_MESSAGE_LIMIT; image batches are sent as
  raw little-endian float32 (`arena.ground.wire`), with one copy of the pixels.
- Retries: UNAVAILABLE (the one status the arena asks clients to retry) is retried with
  exponential backoff on every call that is safe to repeat. Predict is retried with the same
  request id, so the server replays its answer instead of charging twice; StartRun and
  SubmitDefense are never retried (a retry could start a second run).
- Errors are typed: every failed call raises `ArenaCallError` (a `grpc.RpcError`, so `.code()`
  and `.details()` work as usual); a budget refusal is `BudgetRefused` (with the samples the
  server names), a request id reused for another request is `ReplayMismatch`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator

import grpc
import numpy as np

from arena.ground.contract import IMAGE_BYTES, IMAGE_SHAPE
from arena.ground.wire import decode_batch, predict_request_bytes, submit_request_bytes
from protos import arena_v1_pb2 as pb
from protos import arena_v1_pb2_grpc as pb_grpc

CHUNK_BYTES = 1 << 20                 # SubmitDefense stream chunks
CLIENT_MESSAGE_LIMIT = 256 << 20
MESSAGE_SLACK = 1 << 20               # room for a request's fields besides its image bytes
EXHAUSTED_SAMPLES_KEY = "arena-exhausted-samples"   # trailing metadata of a budget refusal


class ArenaCallError(grpc.RpcError):
    """A call the arena refused or could not answer. `.code()` is the gRPC status, `.details()`
    the server's message (it names the offending field), `.status` the status name."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing=()) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details
        self._trailing = tuple(trailing or ())

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:
        return self._trailing

    @property
    def status(self) -> str:
        return self._code.name

    def __str__(self) -> str:
        return f"{self._code.name}: {self._details}"


class BudgetRefused(ArenaCallError):
    """RESOURCE_EXHAUSTED: the request would take `samples` past their budget; nothing was charged."""

    def __init__(self, code: grpc.StatusCode, details: str, samples=(), trailing=()) -> None:
        super().__init__(code, details, trailing)
        self.samples = tuple(int(s) for s in samples)


class ReplayMismatch(ArenaCallError):
    """The server holds another request under this request id (a resumed attack diverged)."""


def token_from(value: str | None) -> str:
    token = value or os.environ.get("ARENA_TOKEN")
    if not token:
        raise ValueError("no token: pass --token or set ARENA_TOKEN")
    return token


def channel_target(address: str) -> tuple[str, list[tuple[str, object]]]:
    """gRPC target and options for one address or a comma-separated list of replicas."""
    addresses = [a.strip() for a in address.split(",") if a.strip()]
    if not addresses:
        raise ValueError(f"no arena address in {address!r}")
    options: list[tuple[str, object]] = [("grpc.max_receive_message_length", CLIENT_MESSAGE_LIMIT),
                                         ("grpc.max_send_message_length", CLIENT_MESSAGE_LIMIT)]
    if len(addresses) == 1:
        return addresses[0], options
    options.append(("grpc.lb_policy_name", "round_robin"))
    return "ipv4:" + ",".join(addresses), options


def submit_requests(data: bytes, name: str, description: str = "",
                    chunk_bytes: int = CHUNK_BYTES) -> Iterator[pb.SubmitDefenseRequest]:
    """The client stream of SubmitDefense: metadata, then the ONNX bytes in chunks."""
    yield pb.SubmitDefenseRequest(metadata=pb.DefenseMetadata(name=name, description=description))
    view = memoryview(data)
    for start in range(0, len(view), chunk_bytes):
        yield pb.SubmitDefenseRequest(chunk=bytes(view[start:start + chunk_bytes]))


def max_batch_of(run: pb.RunInfo) -> int:
    """The most images one Predict may carry on this run: the server's max_batch, within its
    message limit."""
    by_bytes = max(1, (int(run.max_message_bytes or CLIENT_MESSAGE_LIMIT) - MESSAGE_SLACK) // IMAGE_BYTES)
    return max(1, min(int(run.max_batch or by_bytes), by_bytes))


class ArenaClient:
    """A synchronous client of the arena's three services (see the module docstring)."""

    def __init__(self, address: str, token: str | None = None, *, timeout: float | None = 600.0,
                 retries: int = 6, backoff: float = 0.25, connect_timeout: float | None = None) -> None:
        self.address = address
        self.metadata = (("authorization", f"Bearer {token_from(token)}"),)
        self.timeout, self.retries, self.backoff = timeout, int(retries), float(backoff)
        target, options = channel_target(address)
        self.channel = grpc.insecure_channel(target, options=options)
        if connect_timeout is not None:
            try:
                grpc.channel_ready_future(self.channel).result(timeout=connect_timeout)
            except grpc.FutureTimeoutError:
                self.channel.close()
                raise ArenaCallError(grpc.StatusCode.UNAVAILABLE,
                                     f"cannot reach the arena at {address} (no answer within {connect_timeout:g}s)") from None
        self.defenses = pb_grpc.DefenseServiceStub(self.channel)
        self.runs = pb_grpc.RunServiceStub(self.channel)
        self.leaderboard = pb_grpc.LeaderboardServiceStub(self.channel)
        self.competition = pb_grpc.CompetitionServiceStub(self.channel)
        self.admin = pb_grpc.AdminServiceStub(self.channel)
        # Predict / SubmitAdversarials take requests serialised by arena.ground.wire (one pixel copy).
        self._predict = self.channel.unary_unary(
            "/arena.v1.RunService/Predict", request_serializer=None,
            response_deserializer=pb.PredictResponse.FromString)
        self._submit = self.channel.unary_unary(
            "/arena.v1.RunService/SubmitAdversarials", request_serializer=None,
            response_deserializer=pb.SubmitAdversarialsResponse.FromString)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- the call loop
    def _call(self, method: Callable, request, *, retry: bool = True):
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return method(request, metadata=self.metadata, timeout=self.timeout)
            except ArenaCallError:
                raise
            except grpc.RpcError as error:
                code = error.code()
                if retry and code == grpc.StatusCode.UNAVAILABLE and attempt < self.retries:
                    time.sleep(delay)
                    delay = min(delay * 2, 8.0)
                    continue
                raise _typed(error, self.address) from None
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- defenses
    def submit_defense(self, data: bytes, name: str, description: str = "",
                       chunk_bytes: int = CHUNK_BYTES) -> pb.Defense:
        stream = submit_requests(data, name, description, chunk_bytes)
        return self._call(self.defenses.SubmitDefense, stream, retry=False).defense

    def list_defenses(self) -> list[pb.Defense]:
        return list(self._call(self.defenses.ListDefenses, pb.ListDefensesRequest()).defenses)

    def get_defense(self, name: str) -> pb.Defense:
        return self._call(self.defenses.GetDefense, pb.GetDefenseRequest(name=name)).defense

    # ---------------------------------------------------------------- runs
    def start_run(self, defense: str, attack: str, *, split: str | None = None,
                  config_digest: str = "") -> pb.RunInfo:
        """A new run (never retried: a retry could start a second one). `split` None: the current
        phase's; "public" or "private" otherwise (another split than the phase's: organizer only)."""
        request = pb.StartRunRequest(defense=defense, attack=attack, split=split_value(split),
                                     attack_config_digest=config_digest)
        return self._call(self.runs.StartRun, request, retry=False).run

    def list_runs(self) -> list[pb.RunInfo]:
        """The caller's runs (the organizer's: all), without per-sample arrays."""
        return list(self._call(self.runs.ListRuns, pb.ListRunsRequest()).runs)

    def get_run(self, run_id: str) -> pb.RunInfo:
        return self._call(self.runs.GetRun, pb.GetRunRequest(run_id=run_id)).run

    def samples(self, run_id: str, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The run's first `count` (default: all) evaluation images and labels, paged."""
        xs, ys, offset = [], [], 0
        while count is None or offset < count:
            limit = 0 if count is None else count - offset
            page = self._call(self.runs.GetRunSamples,
                              pb.GetRunSamplesRequest(run_id=run_id, offset=offset, limit=limit))
            n = len(page.labels)
            if n == 0:
                break
            try:
                xs.append(decode_batch(page.images))
            except ValueError as error:
                raise ArenaCallError(grpc.StatusCode.DATA_LOSS, f"GetRunSamples: the arena sent a {error}") from None
            ys.append(np.asarray(page.labels, dtype=np.int64))
            offset += n
        x = np.concatenate(xs) if xs else np.zeros((0, *IMAGE_SHAPE), np.float32)
        y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
        return x, y

    def predict_raw(self, run_id: str, images: np.ndarray, sample_indices,
                    request_id: str | None = None) -> pb.PredictResponse:
        """PredictResponse. A retried request keeps its id: the server replays, never charges twice."""
        request = predict_request_bytes(run_id, request_id or uuid.uuid4().hex, sample_indices, images)
        return self._call(self._predict, request)

    def predict(self, run_id: str, images: np.ndarray, sample_indices,
                request_id: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(labels, remaining budget of each image's sample), both int64 [n]."""
        response = self.predict_raw(run_id, images, sample_indices, request_id)
        return np.asarray(response.labels, dtype=np.int64), np.asarray(response.remaining, dtype=np.int64)

    def submit_adversarials(self, run_id: str, images: np.ndarray, sample_indices) -> list[pb.Verdict]:
        """The arena's verdict on each image (retried on UNAVAILABLE: a free verification replays,
        and a charged one was refused whole if it failed)."""
        request = submit_request_bytes(run_id, sample_indices, images)
        return list(self._call(self._submit, request).verdicts)

    def finish_run(self, run_id: str) -> pb.RunInfo:
        return self._call(self.runs.FinishRun, pb.FinishRunRequest(run_id=run_id)).run

    # ---------------------------------------------------------------- leaderboard
    def get_leaderboard(self, split: str | None = None) -> pb.GetLeaderboardResponse:
        """The board of `split` (None: the current phase's)."""
        return self._call(self.leaderboard.GetLeaderboard, pb.GetLeaderboardRequest(split=split_value(split)))

    def get_report(self, split: str | None = None) -> str:
        return self._call(self.leaderboard.GetReport, pb.GetReportRequest(split=split_value(split))).html

    # ---------------------------------------------------------------- the competition (rules v2)
    def get_competition(self) -> pb.Competition:
        return self._call(self.competition.GetCompetition, pb.GetCompetitionRequest()).competition

    # organizer-only calls (PERMISSION_DENIED for a team token); none is retried
    def set_phase(self, phase: str, reason: str) -> pb.Competition:
        value = {"open": pb.PHASE_OPEN, "final": pb.PHASE_FINAL}.get(phase)
        if value is None:
            raise ValueError(f"phase must be 'open' or 'final', got {phase!r}")
        return self._call(self.admin.SetPhase, pb.SetPhaseRequest(phase=value, reason=reason), retry=False).competition

    def set_budget(self, budget: int, reason: str) -> pb.Competition:
        request = pb.SetBudgetRequest(budget_per_sample=int(budget), reason=reason)
        return self._call(self.admin.SetBudget, request, retry=False).competition

    def create_token(self, team: str, reason: str, *, organizer: bool = False) -> str:
        request = pb.CreateTokenRequest(team=team, reason=reason,
                                        role=pb.ROLE_ORGANIZER if organizer else pb.ROLE_TEAM)
        return self._call(self.admin.CreateToken, request, retry=False).token

    def revoke_tokens(self, team: str, reason: str) -> int:
        return self._call(self.admin.RevokeTokens, pb.RevokeTokensRequest(team=team, reason=reason),
                          retry=False).revoked

    def disqualify(self, reason: str, *, defense: str | None = None, run_id: str | None = None) -> None:
        if (defense is None) == (run_id is None):
            raise ValueError("disqualify one defense or one run")
        request = (pb.DisqualifyRequest(defense=defense, reason=reason) if defense is not None
                   else pb.DisqualifyRequest(run_id=run_id, reason=reason))
        self._call(self.admin.Disqualify, request, retry=False)

    def list_actions(self) -> list[pb.Action]:
        return list(self._call(self.admin.ListActions, pb.ListActionsRequest()).actions)


def is_rejected(defense: pb.Defense) -> bool:
    """Whether the arena rejected this defense (its record's status), so that callers above the
    client ask it rather than compare protobuf enum values themselves."""
    return defense.status == pb.DEFENSE_STATUS_REJECTED


def split_value(split: str | None) -> int:
    """"public" / "private" / None (the current phase's) -> arena.v1.Split."""
    values = {None: pb.SPLIT_UNSPECIFIED, "public": pb.SPLIT_PUBLIC, "private": pb.SPLIT_PRIVATE}
    if split not in values:
        raise ValueError(f"split must be 'public' or 'private', got {split!r}")
    return values[split]


def split_name(value: int) -> str:
    return {pb.SPLIT_PUBLIC: "public", pb.SPLIT_PRIVATE: "private"}.get(value, "unspecified")


def _typed(error: grpc.RpcError, address: str) -> ArenaCallError:
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    details = (error.details() if callable(getattr(error, "details", None)) else "") or code.name
    trailing = tuple(error.trailing_metadata() or ()) if callable(getattr(error, "trailing_metadata", None)) else ()
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        samples: list[int] = []
        for key, value in trailing:
            if key == EXHAUSTED_SAMPLES_KEY and value:
                samples = [int(s) for s in value.split(",")]
        return BudgetRefused(code, details, samples, trailing)
    if code == grpc.StatusCode.INVALID_ARGUMENT and "already used for a different request" in details:
        return ReplayMismatch(code, details, trailing)
    if code == grpc.StatusCode.UNAVAILABLE:
        return ArenaCallError(code, f"the arena at {address} is unavailable: {details}", trailing)
    return ArenaCallError(code, details, trailing)
