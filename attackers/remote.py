"""The arena's RunService as an oracle: `RemoteOracle`, and the thin gRPC client under it.

`RunClient` makes the RunService calls with `authorization: Bearer <token>` metadata, images
as raw little-endian float32 bytes with an explicit shape, and retries UNAVAILABLE (the one
status the arena asks clients to retry) with backoff; Predict is retried with the same
request id, so the server replays the answer instead of charging twice. Any other error
surfaces as `RemoteError` with its status and the server's message; RESOURCE_EXHAUSTED on
Predict becomes `BudgetExceeded` naming the samples the server lists.

`RemoteOracle` behaves as `LocalOracle` does: labels only, a request that would take a sample
past its budget is refused whole before anything is sent (it keeps the server's per-sample
`remaining` from every answer), and batches larger than the server's published `max_batch`
are split. Request ids are deterministic (`<namespace>-<counter>`): an attack re-run with the
same seed on the same run sends the same requests under the same ids, which the server
replays free of charge; that is how `arena attack` resumes an interrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from attackers.oracle import IMAGE_SHAPE, BudgetExceeded, InvalidRequest, Oracle, OracleError, check_request

IMAGE_BYTES = int(np.prod(IMAGE_SHAPE)) * 4
MESSAGE_SLACK = 64 << 10
CLIENT_MESSAGE_LIMIT = 256 << 20


class RemoteError(OracleError):
    """A RunService call failed; `code` is the gRPC status name (e.g. 'NOT_FOUND')."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.details = message


class ReplayMismatch(RemoteError):
    """The server holds another request under this request id (a resumed attack diverged)."""


class RunClient:
    """The RunService calls an attack client needs (and ListDefenses, for clear messages)."""

    def __init__(self, address: str, token: str, *, timeout: float = 120.0, retries: int = 6,
                 backoff: float = 0.25, connect_timeout: float = 10.0) -> None:
        import grpc

        from protos import arena_v1_pb2 as pb
        from protos import arena_v1_pb2_grpc as pb_grpc

        if not token:
            raise ValueError("a token is needed to talk to the arena (--token or $ARENA_TOKEN)")
        self._grpc, self._pb = grpc, pb
        self.address = address
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        options = [("grpc.max_receive_message_length", CLIENT_MESSAGE_LIMIT),
                   ("grpc.max_send_message_length", CLIENT_MESSAGE_LIMIT)]
        self.channel = grpc.insecure_channel(address, options=options)
        try:
            grpc.channel_ready_future(self.channel).result(timeout=connect_timeout)
        except grpc.FutureTimeoutError:
            self.channel.close()
            raise RemoteError("UNAVAILABLE", f"cannot reach the arena at {address} (no answer within {connect_timeout:g}s)") from None
        self.runs = pb_grpc.RunServiceStub(self.channel)
        self.defenses = pb_grpc.DefenseServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ calls
    def _call(self, method, request, *, retry: bool = True, on_error: Callable | None = None):
        grpc = self._grpc
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return method(request, metadata=self.metadata, timeout=self.timeout)
            except grpc.RpcError as error:
                code = error.code()
                if retry and code == grpc.StatusCode.UNAVAILABLE and attempt < self.retries:
                    time.sleep(delay)
                    delay = min(delay * 2, 8.0)
                    continue
                if on_error is not None:
                    on_error(error)
                if code == grpc.StatusCode.UNAVAILABLE:
                    raise RemoteError(code.name, f"the arena at {self.address} is unavailable: {error.details()}") from None
                raise RemoteError(code.name, error.details() or code.name) from None
        raise AssertionError("unreachable")

    def start_run(self, defense: str, attack: str, attack_config_digest: str = ""):
        """RunInfo of a new run (not retried: a retry could start a second run). The digest of
        the attack's configuration (`Attack.config_digest()`) is recorded with the run."""
        request = self._pb.StartRunRequest(defense=defense, attack=attack, attack_config_digest=attack_config_digest)
        return self._call(self.runs.StartRun, request, retry=False).run

    def get_run(self, run_id: str):
        return self._call(self.runs.GetRun, self._pb.GetRunRequest(run_id=run_id)).run

    def get_defense(self, name: str):
        return self._call(self.defenses.GetDefense, self._pb.GetDefenseRequest(name=name)).defense

    def list_defenses(self) -> list:
        return list(self._call(self.defenses.ListDefenses, self._pb.ListDefensesRequest()).defenses)

    def samples(self, run_id: str, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The run's first `count` (default all) evaluation images and labels, paged."""
        xs, ys, offset = [], [], 0
        while count is None or offset < count:
            limit = 0 if count is None else count - offset
            page = self._call(self.runs.GetRunSamples,
                              self._pb.GetRunSamplesRequest(run_id=run_id, offset=offset, limit=limit))
            n = len(page.labels)
            if n == 0:
                break
            xs.append(decode(page.images))
            ys.append(np.asarray(page.labels, dtype=np.int64))
            offset += n
        x = np.concatenate(xs) if xs else np.zeros((0, *IMAGE_SHAPE), np.float32)
        y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
        return x, y

    def predict(self, run_id: str, request_id: str, images: np.ndarray, sample_ids: np.ndarray):
        """PredictResponse; UNAVAILABLE is retried with the same request id (the server replays)."""
        request = self._pb.PredictRequest(run_id=run_id, request_id=request_id,
                                          sample_indices=[int(i) for i in sample_ids], images=encode(images))
        return self._call(self.runs.Predict, request, on_error=self._predict_error)

    def _predict_error(self, error) -> None:
        grpc = self._grpc
        code = error.code()
        details = error.details() or ""
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            samples: list[int] = []
            for key, value in error.trailing_metadata() or ():
                if key == "arena-exhausted-samples" and value:
                    samples = [int(s) for s in value.split(",")]
            raise BudgetExceeded(f"the arena refused the request: {details}", samples) from None
        if code == grpc.StatusCode.INVALID_ARGUMENT and "already used for a different request" in details:
            raise ReplayMismatch(code.name, details) from None

    def submit(self, run_id: str, images: np.ndarray, sample_ids: np.ndarray) -> list:
        """Verdicts of the arena on the submitted images (retried on UNAVAILABLE: verifying again is harmless)."""
        request = self._pb.SubmitAdversarialsRequest(run_id=run_id, sample_indices=[int(i) for i in sample_ids],
                                                     images=encode(images))
        return list(self._call(self.runs.SubmitAdversarials, request).verdicts)

    def finish(self, run_id: str):
        return self._call(self.runs.FinishRun, self._pb.FinishRunRequest(run_id=run_id)).run


def encode(images: np.ndarray):
    from protos import arena_v1_pb2 as pb

    array = np.ascontiguousarray(images, dtype="<f4")
    return pb.ImageBatch(shape=list(array.shape), data=array.tobytes())


def decode(batch) -> np.ndarray:
    shape = tuple(int(s) for s in batch.shape)
    if len(shape) != 4 or shape[1:] != IMAGE_SHAPE or len(batch.data) != int(np.prod(shape)) * 4:
        raise OracleError(f"the arena sent a malformed image batch (shape {list(shape)}, {len(batch.data)} bytes)")
    return np.frombuffer(batch.data, dtype="<f4").reshape(shape).astype(np.float32)


class RequestIds:
    """Deterministic request ids `<namespace>-<counter>`. `fork()` moves to a fresh namespace
    (after a replay mismatch), so no id is ever reused for a different request."""

    def __init__(self, namespace: str, counter: int = 0, on_issue: Callable[[int], None] | None = None) -> None:
        self.namespace = namespace
        self.counter = counter
        self.forks = 0
        self.on_issue = on_issue

    def next(self) -> str:
        rid = f"{self.namespace}{'~' + str(self.forks) if self.forks else ''}-{self.counter}"
        self.counter += 1
        if self.on_issue is not None:
            self.on_issue(self.counter)
        return rid

    def fork(self) -> None:
        self.forks += 1


class RemoteOracle(Oracle):
    """Predict on one arena run. `run` is the run's RunInfo (from StartRun or GetRun)."""

    def __init__(self, client: RunClient, run, request_ids: RequestIds, *, replay_until: int = 0) -> None:
        self.client = client
        self.run_id = run.run_id
        self._num_classes = int(run.num_classes)
        self.budget = int(run.budget_per_sample)
        self.num_samples = int(run.num_samples)
        by_bytes = max(1, (int(run.max_message_bytes or CLIENT_MESSAGE_LIMIT) - MESSAGE_SLACK) // IMAGE_BYTES)
        self._max_batch = max(1, min(int(run.max_batch or by_bytes), by_bytes))
        used = np.zeros(self.num_samples, dtype=np.int64)
        used[: len(run.queries_used)] = np.asarray(run.queries_used, dtype=np.int64)
        self.remaining = self.budget - used        # per sample, as the server last told us
        self.ids = request_ids
        # Requests numbered below this were sent before an interruption: the server replays them
        # free, so they skip the local budget check (the remaining counts already include them).
        self.replay_until = int(replay_until)
        self.replayed = 0                           # requests answered from the server's replay store
        self.calls = 0

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def labels(self, images: np.ndarray, sample_ids: np.ndarray) -> np.ndarray:
        images, ids = check_request(images, sample_ids, self.image_shape, self.bounds)
        if ids.size and ids.max() >= self.num_samples:
            raise InvalidRequest(f"sample id {int(ids.max())} out of range: the run has {self.num_samples} samples")
        if ids.size == 0:
            return np.zeros(0, dtype=np.int64)
        wanted = np.bincount(ids, minlength=self.num_samples)
        over = np.flatnonzero(wanted > self.remaining)
        if over.size and self.ids.counter >= self.replay_until:
            raise BudgetExceeded(
                f"request refused: it would take {over.size} sample(s) past the budget of {self.budget} "
                f"(e.g. sample {int(over[0])}: {int(self.remaining[over[0]])} left, {int(wanted[over[0]])} asked)",
                over.tolist(),
            )
        out = np.empty(ids.size, dtype=np.int64)
        for start in range(0, ids.size, self._max_batch):
            stop = min(ids.size, start + self._max_batch)
            while True:
                try:
                    response = self.client.predict(self.run_id, self.ids.next(), images[start:stop], ids[start:stop])
                    break
                except ReplayMismatch:
                    self.ids.fork()  # a diverged resume: fresh ids, paid anew from here on
            labels = np.asarray(response.labels, dtype=np.int64)
            if labels.shape != (stop - start,):
                raise OracleError(f"the arena answered {labels.size} labels for {stop - start} images")
            out[start:stop] = labels
            remaining = np.asarray(response.remaining, dtype=np.int64)
            if remaining.shape == labels.shape:
                chunk = ids[start:stop]
                # A replayed answer tells the budget of its time, which can only have shrunk since.
                self.remaining[chunk] = np.minimum(self.remaining[chunk], remaining) if response.replayed else remaining
            self.replayed += int(response.replayed)
            self.calls += 1
        return out

    def close(self) -> None:
        pass  # the client belongs to the caller
