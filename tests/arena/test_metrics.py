"""The replica's Prometheus metrics (GET /metrics on the HTTP port), scraped while clients send
traffic: the deltas are exactly what the clients sent and got."""

from __future__ import annotations

import threading
import urllib.request
import uuid
from collections import defaultdict

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from arena.ground.client import BudgetRefused
from arena.server.auth import create_token

from .conftest import BUDGET, NUM_SAMPLES


def scrape(arena) -> dict[tuple, float]:
    url = f"http://{arena.server.http_address}/metrics"
    token = create_token(arena.server.arena.store, "organizer", "organizer")   # the operator's page
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    values: dict[tuple, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return values


def delta(after, before, name, **labels) -> float:
    key = (name, *sorted(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_count_what_the_clients_sent(arena, client, run):
    arena.server.call(arena.server.arena.drain(), timeout=60)   # earlier tests' stragglers finish first
    before = scrape(arena)
    sent = defaultdict(int)           # what the clients saw
    lock = threading.Lock()
    done = threading.Event()
    scrapes: list[float] = []

    def sender(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with arena.client(client.token) as c:
            refused = 0
            while refused < 3:
                samples = rng.integers(0, NUM_SAMPLES, int(rng.integers(1, 9)))
                try:
                    c.predict(run.run_id, arena.images[samples], samples, request_id=uuid.uuid4().hex)
                except BudgetRefused:
                    refused += 1
                    with lock:
                        sent["refused"] += 1
                        sent["refused_images"] += samples.size
                    continue
                with lock:
                    sent["ok"] += 1
                    sent["ok_images"] += samples.size

    def scraper() -> None:          # scrapes while the traffic runs: counts only grow
        while not done.is_set():
            scrapes.append(scrape(arena)[("arena_requests_total", ("call", "Predict"), ("code", "OK"))])

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(4)]
    watcher = threading.Thread(target=scraper)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    watcher.join()
    assert len(scrapes) >= 2 and scrapes == sorted(scrapes)
    with arena.client(client.token) as c:
        used = np.array(c.get_run(run.run_id).queries_used)
    assert used.sum() == sent["ok_images"] and (used <= BUDGET).all()

    with arena.client(arena.new_team()) as c:
        run2 = c.start_run("tiny", "metrics")
        c.predict(run2.run_id, arena.images[:2], [0, 1], request_id="twice")
        c.predict(run2.run_id, arena.images[:2], [0, 1], request_id="twice")     # replayed: free
        verdicts = c.submit_adversarials(run2.run_id, arena.images[[3, 4, 5]], [0, 1, 2])   # charged 1 each
        assert all(v.charged for v in verdicts)
        try:
            c.submit_defense(b"not an onnx file", f"junk-{uuid.uuid4().hex[:6]}")
        except Exception:
            pass
    after = scrape(arena)

    ok_predicts, ok_images = sent["ok"] + 2, sent["ok_images"] + 4
    assert delta(after, before, "arena_requests_total", call="Predict", code="OK") == ok_predicts
    assert delta(after, before, "arena_images_total", call="Predict", code="OK") == ok_images
    assert delta(after, before, "arena_requests_total", call="Predict", code="RESOURCE_EXHAUSTED") == sent["refused"]
    assert delta(after, before, "arena_images_total", call="Predict",
                 code="RESOURCE_EXHAUSTED") == sent["refused_images"]
    assert delta(after, before, "arena_budget_refusals_total", call="Predict") == sent["refused"]
    assert delta(after, before, "arena_replays_total") == 1
    assert delta(after, before, "arena_charged_queries_total", call="Predict") == ok_images - 2
    assert delta(after, before, "arena_requests_total", call="SubmitAdversarials", code="OK") == 1
    assert delta(after, before, "arena_charged_queries_total", call="SubmitAdversarials") == 3
    assert delta(after, before, "arena_requests_total", call="SubmitDefense", code="INVALID_ARGUMENT") == 1
    assert delta(after, before, "arena_validations_total", outcome="rejected") == 1
    assert delta(after, before, "arena_validation_seconds_count") == 1
    # the model ran every charged image once (replays and refusals never reach it) ...
    model_images = ok_images - 2 + 3
    assert delta(after, before, "arena_batch_images_sum", defense="tiny") == model_images
    # ... in runs that merged the requests (each request that reached the model in exactly one run)
    jobs = sent["ok"] + 1 + 1          # the new Predicts, run2's first one, the SubmitAdversarials
    runs = delta(after, before, "arena_batch_images_count", defense="tiny")
    assert 1 <= runs <= jobs
    assert delta(after, before, "arena_batch_requests_sum", defense="tiny") == jobs
    assert delta(after, before, "arena_inference_seconds_count", defense="tiny") == runs
    assert delta(after, before, "arena_inference_seconds_sum", defense="tiny") > 0
    assert after[("arena_queue_depth_images", ("defense", "tiny"))] == 0      # idle now
