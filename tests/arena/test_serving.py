"""Serving details: paging of the evaluation set, defense failures, the session cache, graceful
shutdown of health."""

from __future__ import annotations

import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import grpc

from arena.top.bench import toy_models
from arena.server import evaluation
from arena.server.auth import create_token
from arena.ground.contract import FAILED_LABEL
from arena.ground.client import ArenaClient
from arena.server.core import ArenaConfig
from arena.ground.inference import SERVING_BATCHED, DefenseModel, SessionCache, make_session
from arena.server import ServerConfig, start_server

from .conftest import synthetic_images


def test_run_samples_are_the_evaluation_set(arena, client, run):
    assert run.num_samples == 12 and run.budget_per_sample == 40 and run.max_batch == 32
    assert run.num_classes == 10 and run.max_message_bytes >= 32 * 3 * 64 * 64 * 4
    x, y = client.samples(run.run_id)
    assert np.array_equal(x, arena.images) and y.tolist() == arena.labels.tolist()


@pytest.fixture(scope="module", params=[True, False], ids=["worker-process", "in-process"])
def failing_server(request, tmp_path_factory):
    """A server whose defense raises an ONNX Runtime error on any batch holding a marked image
    (toy_models.fails_on_marker): a real failure, whatever the machine's speed."""
    images = synthetic_images(4, seed=2)
    model = toy_models.fails_on_marker(seed=1).SerializeToString()
    labels = np.argmax(make_session(model).run(None, {"images": images})[0], axis=1)
    server = start_server(ServerConfig(
        store=tmp_path_factory.mktemp("failing"), evaluation=evaluation.from_arrays(images, labels), port=0,
        arena=ArenaConfig(budget=100, max_batch=64, latency_ms=5000.0, isolate=request.param)))
    token = create_token(server.arena.store, "alpha")
    with ArenaClient(server.address, token) as c:
        c.submit_defense(model, "failing")       # no probe of the validation carries the marker
    yield server, token, images, labels
    server.stop()


def test_defense_failure_counts_as_misclassified(failing_server):
    server, token, images, labels = failing_server
    marked = images.copy()
    marked[:, 0, 0, 0] = toy_models.MARKER
    batch = np.repeat(marked, 16, axis=0)
    with ArenaClient(server.address, token) as c:
        run = c.start_run("failing", "marker")
        got, remaining = c.predict(run.run_id, batch, np.arange(64) % 4)
        assert (got == FAILED_LABEL).all()
        assert remaining.tolist() == [100 - 16] * 64          # a failed query is still a query
        got, _ = c.predict(run.run_id, images, [0, 1, 2, 3])  # the defense is fine otherwise
        assert got.tolist() == labels.tolist()
        verdicts = c.submit_adversarials(run.run_id, marked, [0, 1, 2, 3])
        # the same bytes were queried: verified free; the defense fails again: misclassified
        assert all(v.adversarial and v.accepted and not v.charged for v in verdicts)
        assert all("failed" in v.note for v in verdicts)
        assert [v.distance for v in verdicts] == pytest.approx(np.abs(marked - images).reshape(4, -1).max(1))
    assert server.arena.registry.batchers["failing"].stats.failures >= 1


def test_session_cache_is_memory_bounded():
    models = {f"m{i}": toy_models.tiny_cnn(seed=i).SerializeToString() for i in range(4)}
    loads = []

    def load(name):
        loads.append(name)
        data = models[name]
        return DefenseModel(name, make_session(data, 1), SERVING_BATCHED, 8, size_bytes=1 << 20)

    cache = SessionCache(load, budget_bytes=9 << 20, factor=3.0)    # each costs 4 MiB: two fit
    for name in ("m0", "m1", "m0", "m2"):
        cache.get(name)
    assert loads == ["m0", "m1", "m2"]
    assert cache.loaded() == ["m0", "m2"]          # m1 was least recently used
    cache.get("m1")
    assert loads[-1] == "m1" and cache.loaded() == ["m2", "m1"]


def test_health_goes_not_serving_on_shutdown(tmp_path):
    images = synthetic_images(2, seed=3)
    server = start_server(ServerConfig(store=tmp_path, evaluation=evaluation.from_arrays(images, np.zeros(2)),
                                       port=0))
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="arena.v1.RunService")
            assert stub.Check(request, timeout=10).status == health_pb2.HealthCheckResponse.SERVING
            server.call(server.server._health.enter_graceful_shutdown())
            assert stub.Check(request, timeout=10).status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        server.stop()


def test_graceful_stop_lets_in_flight_calls_finish(tmp_path):
    import threading
    import time

    images = synthetic_images(4, seed=4)
    model = toy_models.resnet_like(seed=2).SerializeToString()
    labels = np.argmax(make_session(model).run(None, {"images": images})[0], axis=1)
    server = start_server(ServerConfig(store=tmp_path, evaluation=evaluation.from_arrays(images, labels), port=0,
                                       arena=ArenaConfig(budget=1000, max_batch=256, latency_ms=5000.0)))
    token = server.create_token("alpha")
    with ArenaClient(server.address, token) as c:
        c.submit_defense(model, "big")
        run = c.start_run("big", "a")
    outcome = {}

    def call():
        with ArenaClient(server.address, token) as c:
            try:
                outcome["labels"] = c.predict(run.run_id, np.repeat(images, 64, axis=0), np.arange(256) % 4)[0]
            except grpc.RpcError as error:
                outcome["error"] = error.code()

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.time() + 20
    while time.time() < deadline and not any(b._inflight for b in server.arena.registry.batchers.values()):
        time.sleep(0.001)
    server.stop()                                   # graceful: waits for the call
    thread.join(30)
    assert "labels" in outcome, outcome
    assert outcome["labels"].tolist() == np.repeat(labels, 64).tolist()
    from arena.server.store import open_store

    store = open_store(tmp_path)
    assert store.usage(run.run_id, 4).tolist() == [64] * 4
    store.close()


def test_port_in_use_is_a_clear_error(arena, tmp_path):
    port = int(arena.address.rsplit(":", 1)[1])
    images = synthetic_images(2, seed=3)
    with pytest.raises(OSError, match="cannot listen"):
        start_server(ServerConfig(store=tmp_path, evaluation=evaluation.from_arrays(images, np.zeros(2)), port=port))


@pytest.mark.parametrize("arena", ["sqlite"], indirect=True)
def test_a_second_server_on_the_same_sqlite_store_is_refused(arena):
    from arena.server import ServerConfig, start_server
    from arena.server.store import StoreError

    config = arena.server.server.config
    with pytest.raises(StoreError, match="another arena server already serves this store"):
        start_server(ServerConfig(store=config.store, evaluation=config.evaluation, port=0))
