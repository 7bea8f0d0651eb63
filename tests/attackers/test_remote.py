"""The remote oracle against a real arena server (in-process, ephemeral port): same results as
the local oracle, batches split to max_batch, retries replayed, errors surfaced, resume free."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from attackers import CGBA, LIVIA, BoundaryAttack, HopSkipJump, LocalOracle, TransferPGD
from attackers.oracle import BudgetExceeded
from arena.ground.client import ArenaCallError, ArenaClient, BudgetRefused
from attackers.remote import RemoteOracle, RequestIds
from protos import arena_v1_pb2 as pb
from attackers.session import SessionError, attack_remote


@pytest.fixture
def client(arena_server):
    with ArenaClient(arena_server.address, arena_server.token) as c:
        yield c


def remote_oracle(client, namespace="t"):
    run = client.start_run("tiny", "test")
    return run, RemoteOracle(client, run, RequestIds(namespace))


@pytest.mark.parametrize("make", [lambda m: HopSkipJump(seed=0), lambda m: BoundaryAttack(seed=0),
                                  lambda m: TransferPGD(m.surrogate, seed=0), lambda m: CGBA(seed=0),
                                  lambda m: LIVIA([m.surrogate], seed=0, ddn_steps=20)],
                         ids=["hsja", "boundary", "transfer", "cgba", "livia"])
def test_remote_and_local_oracles_give_the_same_results(make, client, arena_server, models):
    run, oracle = remote_oracle(client)
    x, y = client.samples(run.run_id)
    assert x.shape == (arena_server.num_samples, 3, 64, 64) and oracle.max_batch == arena_server.max_batch
    budget = arena_server.budget
    remote = make(models).run(oracle, x, y, budget)
    # the local oracle charges as the arena does (rules v3: to the sample an image is about)
    local_oracle = LocalOracle(models.onnx_path, budget=budget, originals=x)
    local = make(models).run(local_oracle, x, y, budget)
    np.testing.assert_array_equal(remote.distances, local.distances)
    np.testing.assert_array_equal(remote.queries, local.queries)
    np.testing.assert_array_equal(remote.adversarials, local.adversarials)
    # the arena counted exactly what the local oracle counted, and batches were split to max_batch
    info = client.get_run(run.run_id)
    np.testing.assert_array_equal(np.asarray(info.queries_used), local_oracle.queries_used())
    assert oracle.calls > 0 and oracle.replayed == 0


def test_unavailable_is_retried_with_the_same_request_id(client, arena_server):
    run, oracle = remote_oracle(client, "retry")
    x, _ = client.samples(run.run_id, 2)
    real = client._predict
    seen = []

    class Unavailable(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNAVAILABLE

        def details(self):
            return "try again"

    def flaky(request, **kwargs):
        seen.append(pb.PredictRequest.FromString(request).request_id)
        answer = real(request, **kwargs)   # the server did the work ...
        if len(seen) == 1:
            raise Unavailable()            # ... but the answer was lost
        return answer

    client._predict = flaky
    try:
        labels = oracle.labels(x, np.array([0, 1]))
    finally:
        client._predict = real
    assert seen == ["retry-0", "retry-0"] and labels.shape == (2,)
    assert oracle.replayed == 1
    assert list(client.get_run(run.run_id).queries_used)[:2] == [1, 1]  # charged once


def test_budget_is_refused_whole_locally_and_by_the_server(client, arena_server):
    run, oracle = remote_oracle(client, "budget")
    x, _ = client.samples(run.run_id, 1)
    budget = arena_server.budget
    big = np.repeat(x[:1], budget + 1, axis=0)
    with pytest.raises(BudgetExceeded) as refused:       # refused before anything is sent
        oracle.labels(big, np.zeros(budget + 1, dtype=np.int64))
    assert refused.value.sample_indices == (0,) and oracle.calls == 0
    oracle.labels(big[:budget], np.zeros(budget, dtype=np.int64))   # split into max_batch requests
    assert list(client.get_run(run.run_id).queries_used)[0] == budget
    with pytest.raises(BudgetExceeded):
        oracle.labels(big[:1], np.zeros(1, dtype=np.int64))
    with pytest.raises(BudgetRefused) as refused:        # the server's own refusal names the sample
        client.predict(run.run_id, big[:2], np.array([1, 0]), request_id="direct")
    assert refused.value.samples == (0,)
    assert list(client.get_run(run.run_id).queries_used)[:2] == [budget, 0]  # nothing charged


def test_errors_surface_with_their_message(arena_server):
    with ArenaClient(arena_server.address, "not-a-token") as bad:
        with pytest.raises(ArenaCallError, match="UNAUTHENTICATED"):
            bad.start_run("tiny", "test")
    with ArenaClient(arena_server.address, arena_server.token) as good:
        with pytest.raises(ArenaCallError, match="NOT_FOUND"):
            good.get_run("no-such-run")
    with pytest.raises(ArenaCallError, match="cannot reach"):
        ArenaClient("127.0.0.1:9", "token", connect_timeout=0.5)


def test_interrupted_attack_resumes_without_paying_twice(client, arena_server, shared_arena_server, tmp_path,
                                                         monkeypatch):
    from arena.server.auth import create_token

    attack = HopSkipJump(seed=0)
    # the uninterrupted reference runs as another team: budgets are per team (rules v2)
    other = create_token(shared_arena_server.server.arena.store, "uninterrupted")
    with ArenaClient(arena_server.address, other) as reference:
        plain = attack_remote(reference, defense="tiny", attack=attack, budget=None, samples=4,
                              state_path=tmp_path / "plain.state", progress=False, log=lambda m: None)

    real = ArenaClient.predict_raw
    calls = {"n": 0}

    def dies_after_20(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    state = tmp_path / "resumed.state"
    monkeypatch.setattr(ArenaClient, "predict_raw", dies_after_20)
    with pytest.raises(KeyboardInterrupt):
        attack_remote(client, defense="tiny", attack=attack, budget=None, samples=4, state_path=state,
                      progress=False, log=lambda m: None)
    monkeypatch.setattr(ArenaClient, "predict_raw", real)
    assert state.exists()
    with pytest.raises(SessionError, match="another attack configuration"):
        attack_remote(client, defense="tiny", attack=HopSkipJump(seed=1), budget=None, samples=4,
                      state_path=state, progress=False, log=lambda m: None)
    resumed = attack_remote(client, defense="tiny", attack=attack, budget=None, samples=4, state_path=state,
                            progress=False, log=lambda m: None)
    assert resumed.info["replayed_requests"] == 19
    np.testing.assert_array_equal(resumed.verified, plain.verified)
    # the arena charged the resumed run exactly what the uninterrupted one cost
    np.testing.assert_array_equal(np.asarray(resumed.run.queries_used), np.asarray(plain.run.queries_used))
    assert resumed.run.finished and plain.run.finished
    # every reported distance is one the arena verified
    np.testing.assert_allclose(resumed.verified, resumed.result.distances, rtol=1e-9)
