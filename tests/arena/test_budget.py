"""Per-sample budgets (docs/rules.md section 4): exact to the image, refused whole, replay-safe,
never overdrawn by concurrent clients, and charged through group commits."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest
from grpc import StatusCode

from .conftest import BUDGET, NUM_SAMPLES, rpc_error


def test_budget_exhaustion_to_the_exact_image(arena, client, run):
    x = arena.images
    # BUDGET - 1 queries on sample 0, in batches
    used = 0
    while used < BUDGET - 1:
        n = min(BUDGET - 1 - used, 16)
        _, remaining = client.predict(run.run_id, np.repeat(x[:1], n, axis=0), [0] * n)
        used += n
        assert remaining.tolist() == [BUDGET - used] * n
    assert client.get_run(run.run_id).queries_used[0] == BUDGET - 1

    # two more would take sample 0 past its budget: refused whole, sample 1 untouched
    error = rpc_error(client.predict, run.run_id, x[[0, 0, 1]], [0, 0, 1])
    assert error.code() == StatusCode.RESOURCE_EXHAUSTED
    assert "sample_indices" in error.details() and "[0]" in error.details()
    assert dict(error.trailing_metadata()).get("arena-exhausted-samples") == "0"
    used = list(client.get_run(run.run_id).queries_used)
    assert used[0] == BUDGET - 1 and used[1] == 0

    # exactly one more fits
    labels, remaining = client.predict(run.run_id, x[:1], [0])
    assert remaining.tolist() == [0]
    error = rpc_error(client.predict, run.run_id, x[:1], [0])
    assert error.code() == StatusCode.RESOURCE_EXHAUSTED
    # a submitted image never queried is a query too: refused when the sample is spent
    error = rpc_error(client.submit_adversarials, run.run_id, x[5:6] * 0.5, [0])
    assert error.code() == StatusCode.RESOURCE_EXHAUSTED
    used = list(client.get_run(run.run_id).queries_used)
    assert used == [BUDGET] + [0] * (NUM_SAMPLES - 1)
    # other samples are still open
    assert client.predict(run.run_id, x[1:2], [1])[1].tolist() == [BUDGET - 1]


def test_replayed_request_id_is_not_charged_twice(arena, client, run):
    x = arena.images[:4]
    first = client.predict_raw(run.run_id, x, [0, 1, 2, 3], request_id="same")
    again = client.predict_raw(run.run_id, x, [0, 1, 2, 3], request_id="same")
    assert not first.replayed and again.replayed
    assert list(again.labels) == list(first.labels) and list(again.remaining) == list(first.remaining)
    assert list(client.get_run(run.run_id).queries_used)[:4] == [1, 1, 1, 1]
    # the same id for a different request is an error, and charges nothing
    error = rpc_error(client.predict_raw, run.run_id, x[::-1], [0, 1, 2, 3], request_id="same")
    assert error.code() == StatusCode.INVALID_ARGUMENT and "request_id" in error.details()
    # ids are per run; the budget is the team's, shared by its runs on the defense (rules v2)
    other = client.start_run("tiny", "replay-other")
    assert not client.predict_raw(other.run_id, x, [0, 1, 2, 3], request_id="same").replayed
    info = client.get_run(run.run_id)
    assert list(info.run_queries)[:4] == [1, 1, 1, 1]
    assert list(info.queries_used)[:4] == [2, 2, 2, 2] and list(info.remaining)[:4] == [BUDGET - 2] * 4


def test_concurrent_duplicates_charge_once(arena, client, run):
    x = arena.images[:8]
    results = []

    def go():
        results.append(client.predict_raw(run.run_id, x, list(range(8)), request_id="dup"))

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6
    assert sum(not r.replayed for r in results) == 1
    assert len({tuple(r.labels) for r in results}) == 1
    assert list(client.get_run(run.run_id).queries_used)[:8] == [1] * 8


def test_concurrent_clients_never_overdraw(arena, client, run):
    """Several clients hammer one run: every sample ends exactly at its budget, every accepted
    image was charged once, and refused requests charged nothing."""
    rng = np.random.default_rng(0)
    accepted = np.zeros(NUM_SAMPLES, dtype=np.int64)
    lock = threading.Lock()
    refused = [0]

    def worker(seed: int) -> None:
        local = np.random.default_rng(seed)
        with arena.client(client.token) as c:
            for _ in range(40):
                n = int(local.integers(1, 9))
                samples = local.integers(0, 4, n)
                images = arena.images[samples]
                try:
                    c.predict(run.run_id, images, samples, request_id=uuid.uuid4().hex)
                except Exception as error:
                    assert error.code() == StatusCode.RESOURCE_EXHAUSTED, error
                    with lock:
                        refused[0] += 1
                    continue
                with lock:
                    np.add.at(accepted, samples, 1)

    threads = [threading.Thread(target=worker, args=(int(s),)) for s in rng.integers(0, 1 << 30, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with arena.client(client.token) as c:
        used = np.array(c.get_run(run.run_id).queries_used)
    assert (used <= BUDGET).all()
    assert used.tolist() == accepted.tolist()
    assert refused[0] > 0 and used[:4].sum() > 3 * BUDGET  # the budget was really contested
    # what the store holds is what the server counted
    stored = arena.server.arena.store.usage(run.run_id, NUM_SAMPLES)
    assert stored.tolist() == used.tolist()


# SQLite only: a shared ledger's reservations are database round trips, so requests sent together
# reach the batcher at different times and the one-run count below would be luck
@pytest.mark.parametrize("arena", ["sqlite"], indirect=True)
def test_merged_batches_are_group_committed(arena, client, run):
    """Requests queued together run as one ORT run and their charges land in one commit."""
    import asyncio

    from protos import arena_v1_pb2 as pb
    from arena.server.transport import predict_call
    from arena.ground.wire import encode

    server = arena.server
    writer, batcher = server.arena.writer, server.arena.registry.batcher("tiny")
    requests = [pb.PredictRequest(run_id=run.run_id, request_id=f"g{i}", sample_indices=[i, i],
                                  images=encode(arena.images[[i, i]])) for i in range(8)]

    async def together():
        before = writer.stats.commits, batcher.stats.runs, batcher.stats.merged_runs
        answers = await asyncio.gather(*(server.arena.queries.predict(run.team, predict_call(r)) for r in requests))
        return answers, before

    answers, (commits, runs, merged) = server.call(together())
    assert writer.stats.commits - commits == 1
    assert batcher.stats.runs - runs == 1 and batcher.stats.merged_runs - merged == 1
    assert [list(a.labels) for a in answers] == [[int(arena.labels[i])] * 2 for i in range(8)]
    with arena.client(client.token) as c:
        assert list(c.get_run(run.run_id).queries_used)[:8] == [2] * 8
