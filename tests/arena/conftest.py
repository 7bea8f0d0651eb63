"""Shared fixtures: one real arena server per session on an ephemeral loopback port.

The server runs once per store backend (SQLite in a folder; PostgreSQL, whose shared ledger
reserves every request's budget in the database), so every test using it covers both.
The evaluation set is 12 small synthetic images; the defense "tiny" is a conv + global pool +
linear classifier built with onnx.helper (arena.toy_models). The labels of the evaluation set
are the model's own, except samples 10 and 11 (so clean accuracy is 10/12).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import grpc
import numpy as np
import pytest

from arena.top.bench import toy_models
from arena.server import evaluation
from arena.server.auth import create_token
from arena.ground.client import ArenaClient
from arena.server.core import ArenaConfig
from arena.ground.inference import make_session
from arena.server import ServerConfig, start_server

BUDGET = 40
MAX_BATCH = 32
NUM_SAMPLES = 12
WRONG = (10, 11)           # samples whose true label the model gets wrong


def synthetic_images(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    colour = rng.random((n, 3, 1, 1), dtype=np.float32)
    noise = 0.2 * rng.standard_normal((n, 3, 64, 64)).astype(np.float32)
    return np.clip(colour + noise, 0, 1).astype(np.float32)


def model_labels(model_bytes: bytes, images: np.ndarray) -> np.ndarray:
    session = make_session(model_bytes)
    return session.run(None, {"images": images})[0].argmax(1)


@dataclass
class Arena:
    address: str
    server: object                 # arena.server.RunningServer
    images: np.ndarray
    labels: np.ndarray
    tiny: bytes                    # the accepted defense "tiny"
    alpha: str                     # tokens
    beta: str

    def client(self, token: str | None = None) -> ArenaClient:
        return ArenaClient(self.address, token or self.alpha, timeout=60)

    def new_team(self) -> str:
        """A token of a new team (a fresh budget on every defense and split)."""
        return create_token(self.server.arena.store, f"team-{uuid.uuid4().hex[:8]}")

    def stub_channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def arena(request, tmp_path_factory) -> Arena:
    tiny = toy_models.tiny_cnn(seed=0).SerializeToString()
    images = synthetic_images(NUM_SAMPLES, seed=1)
    labels = model_labels(tiny, images).astype(np.int64)
    for i in WRONG:
        labels[i] = (labels[i] + 1) % 10
    config = ServerConfig(
        store=tmp_path_factory.mktemp("store"),
        database_url=request.getfixturevalue("postgres").new_database() if request.param == "postgresql" else None,
        evaluation=evaluation.from_arrays(images, labels),
        host="127.0.0.1",
        port=0,
        http_port=0,
        arena=ArenaConfig(budget=BUDGET, max_batch=MAX_BATCH, max_chunk=16, latency_ms=2000.0,
                          max_upload_mb=1.0),
    )
    server = start_server(config)
    store = server.arena.store
    alpha, beta = create_token(store, "alpha"), create_token(store, "beta")
    with ArenaClient(server.address, alpha) as client:
        client.submit_defense(tiny, "tiny", "conv + pool + linear")
    yield Arena(server.address, server, images, labels, tiny, alpha, beta)
    server.stop()


@pytest.fixture
def client(arena):
    """A client of a fresh team: budgets are per team, defense and split (rules v2), so each test
    starts with the whole budget."""
    token = arena.new_team()
    with arena.client(token) as c:
        c.token = token
        yield c


@pytest.fixture
def run(client):
    """A fresh run of a fresh team against "tiny"."""
    return client.start_run("tiny", f"test-{uuid.uuid4().hex[:8]}")


def rpc_error(fn, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kwargs)
    return info.value
