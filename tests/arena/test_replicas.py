"""Several `arena serve` processes on one PostgreSQL database (the session's throwaway server).

- 2 replicas, 8 concurrent clients spread over both (round_robin) on one run: no sample ever
  goes past its budget, and the charges are exactly the images answered; a request id answered
  by one replica replays on the other; a run finished on one is finished on the other.
- kill -9 of one replica under load: every client finishes on the other; no answered image is
  left uncharged, a Predict retried on the other replica is charged once; every accepted
  adversarial is kept, each sample's smallest distance included.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from arena.top.bench import toy_models
from arena.ground.client import ArenaClient, ArenaCallError, BudgetRefused
from arena.server import evaluation
from arena.server.auth import create_token
from arena.server.store import open_store
from protos import arena_v1_pb2 as pb

from .conftest import model_labels, synthetic_images

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = 12
PRIVATE = 4


class Replica:
    """One `arena serve` process on a database URL."""

    def __init__(self, url: str, data: Path, budget: int) -> None:
        cmd = [sys.executable, "-m", "arena", "serve", "--database-url", url, "--data", str(data),
               "--public-samples", str(SAMPLES), "--private-samples", str(PRIVATE), "--private-from-public", "--port", "0", "--http-port", "0", "--budget", str(budget),
               "--max-chunk", "16", "--grace-s", "5", "--log-level", "WARNING", "--threads", "1"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise AssertionError(f"arena serve did not start: {line!r} {self.proc.stderr.read()}")
        self.address = line.split("listening on ")[1].split()[0]
        self.http = line.split("http://")[1].split("/")[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def charged_queries(replica: Replica, organizer_token: str) -> float:
    request = urllib.request.Request(f"http://{replica.http}/metrics",
                                     headers={"Authorization": f"Bearer {organizer_token}"})   # the operator's
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "arena_charged_queries_total" and sample.labels.get("call") == "Predict")


@pytest.fixture
def setup(tmp_path, postgres_url):
    """(database URL, eval file, model bytes, images, labels, token); the images and labels are
    the public split's, in the run's sample order."""
    tiny = toy_models.tiny_cnn(seed=0).SerializeToString()
    x = synthetic_images(SAMPLES + PRIVATE, seed=5)
    y = model_labels(tiny, x).astype(np.int64)
    data = tmp_path / "eval.npz"
    np.savez(data, x=x, y=y)
    ev = evaluation.load(str(data), SAMPLES, PRIVATE, private_from_public=True)   # the replicas' splits
    store = open_store(postgres_url)
    token = create_token(store, "alpha")
    store.close()
    public = ev.split_slice("public")
    return postgres_url, data, tiny, ev.images[public].copy(), ev.labels[public].copy(), token


@pytest.fixture
def replicas(request):
    started: list[Replica] = []

    def start(*args) -> Replica:
        replica = Replica(*args)
        started.append(replica)
        return replica

    yield start
    for replica in started:
        replica.stop()


def test_two_replicas_eight_clients_never_overdraw(setup, replicas):
    url, data, tiny, x, y, token = setup
    budget = 25
    a = replicas(url, data, budget)
    b = replicas(url, data, budget)
    both = f"{a.address},{b.address}"
    with ArenaClient(a.address, token, timeout=30) as c:
        c.submit_defense(tiny, "tiny")
        run = c.start_run("tiny", "race")
    answered = np.zeros(SAMPLES, np.int64)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        refusals = 0
        try:
            with ArenaClient(both, token, timeout=30) as c:
                while refusals < 4:
                    samples = rng.integers(0, SAMPLES, int(rng.integers(1, 7)))
                    try:
                        labels, remaining = c.predict(run.run_id, x[samples], samples,
                                                      request_id=uuid.uuid4().hex)
                    except BudgetRefused:
                        refusals += 1
                        continue
                    assert labels.tolist() == y[samples].tolist()
                    assert (remaining <= budget).all()
                    with lock:
                        np.add.at(answered, samples, 1)
                for s in rng.permutation(SAMPLES):      # then every sample to its last query
                    while True:
                        try:
                            c.predict(run.run_id, x[s:s + 1], [s], request_id=uuid.uuid4().hex)
                        except BudgetRefused:
                            break
                        with lock:
                            answered[s] += 1
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    store = open_store(url)
    try:
        used = store.usage(run.run_id, SAMPLES)
    finally:
        store.close()
    assert used.tolist() == answered.tolist()          # every answered image charged, nothing else
    assert (used == budget).all(), used                # spent to the last query, never past it
    # both replicas served, and their metrics add up to what the clients got
    store = open_store(url)
    beta, organizer = create_token(store, "beta"), create_token(store, "boss", "organizer")
    store.close()
    served = [charged_queries(r, organizer) for r in (a, b)]
    assert min(served) > 0 and sum(served) == answered.sum(), served

    # a request id answered by one replica replays on the other, for free (another team: alpha's
    # budget on the defense is spent)
    with ArenaClient(a.address, beta, timeout=30) as ca, ArenaClient(b.address, beta, timeout=30) as cb:
        run2 = ca.start_run("tiny", "replay")
        first = ca.predict_raw(run2.run_id, x[:3], [0, 1, 2], request_id="same")
        again = cb.predict_raw(run2.run_id, x[:3], [0, 1, 2], request_id="same")
        assert not first.replayed and again.replayed and list(again.labels) == list(first.labels)
        assert list(cb.get_run(run2.run_id).queries_used)[:3] == [1, 1, 1]
        # b caches the run as open; a finishes it; b refuses the next query and says finished
        cb.predict(run2.run_id, x[:1], [0])
        assert ca.finish_run(run2.run_id).finished
        with pytest.raises(ArenaCallError) as info:
            cb.predict(run2.run_id, x[:1], [0])
        assert info.value.status == "FAILED_PRECONDITION"
        assert cb.get_run(run2.run_id).finished
        # an answered request id still replays on a finished run, on either replica
        assert cb.predict_raw(run2.run_id, x[:3], [0, 1, 2], request_id="same").replayed
        assert ca.predict_raw(run2.run_id, x[:3], [0, 1, 2], request_id="same").replayed
        # the organizer's switch to the final phase on one replica holds on the other at once
        with ArenaClient(a.address, organizer, timeout=30) as boss:
            boss.set_phase("final", "deadline")
        assert cb.start_run("tiny", "late").split == pb.SPLIT_PRIVATE
        with pytest.raises(ArenaCallError) as info:
            cb.submit_defense(tiny, "late-entry")
        assert info.value.status == "FAILED_PRECONDITION"


def test_kill_9_of_one_replica_under_load(setup, replicas):
    url, data, tiny, x, y, token = setup
    a = replicas(url, data, 10_000)
    b = replicas(url, data, 10_000)
    both = f"{a.address},{b.address}"
    with ArenaClient(a.address, token, timeout=30) as c:
        c.submit_defense(tiny, "tiny")
        run = c.start_run("tiny", "survivor")
    # for each sample, the images whose label differs from its true label: its adversarials
    others = {s: [j for j in range(SAMPLES) if y[j] != y[s]] for s in range(SAMPLES)}
    per_request, rounds, clients = 4, 30, 8
    answered = np.zeros(SAMPLES, np.int64)
    best = np.full(SAMPLES, np.inf)            # smallest accepted distance the clients were told
    lock = threading.Lock()
    errors: list[BaseException] = []
    progress = threading.Semaphore(0)

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            with ArenaClient(both, token, timeout=30, retries=8) as c:
                for i in range(rounds):
                    samples = rng.integers(0, SAMPLES, per_request)
                    c.predict(run.run_id, x[samples], samples, request_id=f"{seed}-{i}")
                    with lock:
                        np.add.at(answered, samples, 1)
                    if i % 3 == 0:   # an adversarial for one sample: charged one query, verified
                        s = int(rng.integers(0, SAMPLES))
                        j = int(rng.choice(others[s]))
                        image = np.clip(x[j] + 0.05 * (x[s] - x[j]), 0, 1).astype(np.float32)
                        (verdict,) = c.submit_adversarials(run.run_id, image[None], [s])
                        with lock:   # an image about sample j: charged to j (rules v3)
                            answered[verdict.charged_sample] += int(verdict.charged)
                            if verdict.accepted:
                                best[s] = min(best[s], verdict.distance)
                    progress.release()
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for _ in range(clients * 5):              # load on both replicas, then kill one
        assert progress.acquire(timeout=60)
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    for t in threads:
        t.join(180)
    assert not errors, errors                  # every client finished on the surviving replica
    store = open_store(url)
    try:
        used = store.usage(run.run_id, SAMPLES)
        kept = store.best_distances(run.run_id, SAMPLES)
    finally:
        store.close()
    assert (used >= answered).all(), (used, answered)       # no answered image left uncharged
    # Predict is charged exactly once per request id wherever its retry lands (the retry adopts the
    # claim of the attempt the kill cut off); a SubmitAdversarials has no id: one in flight per
    # client (one image) may be charged twice
    assert (used - answered).sum() <= clients, (used, answered)
    found = np.isfinite(best)
    assert found.sum() >= SAMPLES // 2
    assert np.array_equal(kept[found], best[found]), (kept, best)   # every smallest distance kept
    assert not np.isfinite(kept[~found]).any()
    with ArenaClient(b.address, token, timeout=30) as c:
        info = c.get_run(run.run_id)
        assert list(info.run_queries) == used.tolist()
        # the team's budget account also holds the charge of a SubmitAdversarials the kill cut off
        # before its answer (charged, never verified): at most one image per client
        account = np.array(info.queries_used)
        assert (account >= used).all() and (account - used).sum() <= clients, (account, used)
        assert np.array_equal(np.array(info.best_distances)[found], best[found])


def test_remaining_is_each_requests_own_on_two_replicas(setup, replicas):
    """Issue 21 item 5: concurrent clients spread over two replicas, one run: every answer's
    remaining is its samples' budget right after the request's own charge (the value the
    database returned with its reservation), so the answers form one serial history."""
    from .test_rules_v3_budget import concurrent_answers, serial_history_errors

    url, data, tiny, x, y, token = setup
    budget = 60
    a = replicas(url, data, budget)
    b = replicas(url, data, budget)
    with ArenaClient(a.address, token, timeout=30) as c:
        c.submit_defense(tiny, "tiny")
        run = c.start_run("tiny", "serial")
    answers = concurrent_answers(f"{a.address},{b.address}", token, run.run_id, x, clients=6, requests=15,
                                 samples=3)
    assert len(answers) > 30
    assert serial_history_errors(answers, budget) == []
