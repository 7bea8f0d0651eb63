"""A thin synchronous client for the arena (used by the CLI, the tests and the serving bench).

    client = ArenaClient("127.0.0.1:50051", token)           # or token=None -> $ARENA_TOKEN
    client.submit_defense(Path("model.onnx").read_bytes(), name="mine")
    run = client.start_run("mine", attack="my-attack")
    labels, remaining = client.predict(run.run_id, images, sample_indices)

Every call carries `authorization: Bearer <token>`. The channel's message limits are set high
enough for the server's published `max_message_bytes`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import grpc
import numpy as np

from arena.auth import bearer_metadata
from arena.images import predict_request_bytes, submit_request_bytes
from protos import arena_v1_pb2 as pb
from protos import arena_v1_pb2_grpc as pb_grpc

CHUNK_BYTES = 1 << 20
CLIENT_MESSAGE_LIMIT = 256 << 20


def channel_options(limit: int = CLIENT_MESSAGE_LIMIT) -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]


def token_from(value: str | None) -> str:
    token = value or os.environ.get("ARENA_TOKEN")
    if not token:
        raise ValueError("no token: pass --token or set ARENA_TOKEN")
    return token


def submit_requests(data: bytes, name: str, description: str = "", chunk_bytes: int = CHUNK_BYTES) -> Iterator[pb.SubmitDefenseRequest]:
    """The client stream of SubmitDefense: metadata, then the ONNX bytes in chunks."""
    yield pb.SubmitDefenseRequest(metadata=pb.DefenseMetadata(name=name, description=description))
    view = memoryview(data)
    for start in range(0, len(view), chunk_bytes):
        yield pb.SubmitDefenseRequest(chunk=bytes(view[start:start + chunk_bytes]))


class ArenaClient:
    def __init__(self, address: str, token: str | None = None, timeout: float | None = 600.0) -> None:
        self.address = address
        self.metadata = bearer_metadata(token_from(token))
        self.timeout = timeout
        self.channel = grpc.insecure_channel(address, options=channel_options())
        self.defenses = pb_grpc.DefenseServiceStub(self.channel)
        self.runs = pb_grpc.RunServiceStub(self.channel)
        self.leaderboard = pb_grpc.LeaderboardServiceStub(self.channel)
        # Predict / SubmitAdversarials with requests serialised by arena.images (one pixel copy)
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

    def _kw(self) -> dict:
        return {"metadata": self.metadata, "timeout": self.timeout}

    # defenses
    def submit_defense(self, data: bytes, name: str, description: str = "", chunk_bytes: int = CHUNK_BYTES) -> pb.Defense:
        return self.defenses.SubmitDefense(submit_requests(data, name, description, chunk_bytes), **self._kw()).defense

    def list_defenses(self) -> list[pb.Defense]:
        return list(self.defenses.ListDefenses(pb.ListDefensesRequest(), **self._kw()).defenses)

    def get_defense(self, name: str) -> pb.Defense:
        return self.defenses.GetDefense(pb.GetDefenseRequest(name=name), **self._kw()).defense

    # runs
    def start_run(self, defense: str, attack: str) -> pb.RunInfo:
        return self.runs.StartRun(pb.StartRunRequest(defense=defense, attack=attack), **self._kw()).run

    def get_run(self, run_id: str) -> pb.RunInfo:
        return self.runs.GetRun(pb.GetRunRequest(run_id=run_id), **self._kw()).run

    def samples(self, run_id: str) -> tuple[np.ndarray, np.ndarray]:
        """All evaluation images and labels of a run, paged."""
        xs, ys, offset = [], [], 0
        while True:
            page = self.runs.GetRunSamples(pb.GetRunSamplesRequest(run_id=run_id, offset=offset), **self._kw())
            n = len(page.labels)
            if n == 0:
                break
            xs.append(np.frombuffer(page.images.data, dtype="<f4").reshape(tuple(page.images.shape)))
            ys.append(np.asarray(page.labels, dtype=np.int64))
            offset += n
        x = np.concatenate(xs) if xs else np.zeros((0, 3, 64, 64), np.float32)
        y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
        return x, y

    def predict_raw(self, run_id: str, images: np.ndarray, sample_indices, request_id: str | None = None) -> pb.PredictResponse:
        request = predict_request_bytes(run_id, request_id or uuid.uuid4().hex, sample_indices, images)
        return self._predict(request, **self._kw())

    def predict(self, run_id: str, images: np.ndarray, sample_indices, request_id: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        response = self.predict_raw(run_id, images, sample_indices, request_id)
        return np.asarray(response.labels, dtype=np.int64), np.asarray(response.remaining, dtype=np.int64)

    def submit_adversarials(self, run_id: str, images: np.ndarray, sample_indices) -> list[pb.Verdict]:
        request = submit_request_bytes(run_id, sample_indices, images)
        return list(self._submit(request, **self._kw()).verdicts)

    def finish_run(self, run_id: str) -> pb.RunInfo:
        return self.runs.FinishRun(pb.FinishRunRequest(run_id=run_id), **self._kw()).run

    # leaderboard
    def get_leaderboard(self) -> pb.GetLeaderboardResponse:
        return self.leaderboard.GetLeaderboard(pb.GetLeaderboardRequest(), **self._kw())

    def get_report(self) -> str:
        return self.leaderboard.GetReport(pb.GetReportRequest(), **self._kw()).html
