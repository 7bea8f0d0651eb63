"""Prometheus metrics of one replica (`prometheus_client`), served at GET /metrics on the HTTP port.

Each server has its own registry (several servers may share a process: tests, benches), and
nothing here is on a lock the serving path waits for beyond the client library's own counters.

| metric | labels | what |
|---|---|---|
| arena_requests_total | call, code | RPCs answered, by gRPC status name |
| arena_images_total | call, code | images those RPCs carried (Predict, SubmitAdversarials) |
| arena_charged_queries_total | call | queries charged to budgets (replays and free verifications: 0) |
| arena_budget_refusals_total | call | requests refused whole for budget (RESOURCE_EXHAUSTED) |
| arena_replays_total | | Predict answers replayed from a stored request id |
| arena_validations_total | outcome | submissions validated: accepted, rejected, error |
| arena_validation_seconds | | time to validate one submission |
| arena_inference_seconds | defense | one model run of a (merged) micro-batch |
| arena_batch_images | defense | images per model run |
| arena_batch_requests | defense | requests merged into one model run |
| arena_queue_depth_images | defense | images waiting for a model run (sampled at scrape) |
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class _QueueDepth:
    """A collector: each defense's queued images, read when Prometheus scrapes."""

    def __init__(self, depths: Callable[[], dict[str, int]]) -> None:
        self._depths = depths

    def collect(self):
        family = GaugeMetricFamily("arena_queue_depth_images", "images waiting for a model run",
                                   labels=["defense"])
        for defense, depth in sorted(self._depths().items()):
            family.add_metric([defense], depth)
        yield family


class Metrics:
    """The counters and histograms of one server (see the module docstring)."""

    def __init__(self, queue_depths: Callable[[], dict[str, int]] = dict) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("arena_requests", "RPCs answered", ["call", "code"], registry=r)
        self.images = Counter("arena_images", "images carried by answered RPCs", ["call", "code"], registry=r)
        self.charged = Counter("arena_charged_queries", "queries charged to budgets", ["call"], registry=r)
        self.refusals = Counter("arena_budget_refusals", "requests refused whole for budget", ["call"], registry=r)
        self.replays = Counter("arena_replays", "Predict answers replayed from a stored request id", registry=r)
        self.validations = Counter("arena_validations", "submissions validated", ["outcome"], registry=r)
        self.validation_seconds = Histogram("arena_validation_seconds", "time to validate one submission",
                                            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300), registry=r)
        self.inference_seconds = Histogram("arena_inference_seconds", "one model run of a micro-batch",
                                           ["defense"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_images = Histogram("arena_batch_images", "images per model run", ["defense"],
                                      buckets=_SIZE_BUCKETS, registry=r)
        self.batch_requests = Histogram("arena_batch_requests", "requests merged into one model run",
                                        ["defense"], buckets=_SIZE_BUCKETS, registry=r)
        r.register(_QueueDepth(queue_depths))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def call(self, call: str, code: str, images: int, charged: int, replayed: bool) -> None:
        """One answered RPC (any status)."""
        self.requests.labels(call, code).inc()
        if images:
            self.images.labels(call, code).inc(images)
        if charged:
            self.charged.labels(call).inc(charged)
        if code == "RESOURCE_EXHAUSTED":
            self.refusals.labels(call).inc()
        if replayed:
            self.replays.inc()

    def batch_observer(self, defense: str) -> Callable[[int, int, float], None]:
        """For a MicroBatcher: (images, requests, seconds) of each model run."""
        seconds = self.inference_seconds.labels(defense)
        images = self.batch_images.labels(defense)
        requests = self.batch_requests.labels(defense)

        def observe(n_images: int, n_requests: int, elapsed: float) -> None:
            seconds.observe(elapsed)
            images.observe(n_images)
            requests.observe(n_requests)

        return observe

    def timed_validation(self, validate: Callable) -> Callable:
        """Wraps `validation.validate`: counts its outcome and times it."""
        def wrapped(*args, **kwargs):
            start = time.perf_counter()
            try:
                result = validate(*args, **kwargs)
            except BaseException:
                self.validations.labels("error").inc()
                raise
            finally:
                self.validation_seconds.observe(time.perf_counter() - start)
            self.validations.labels("accepted" if result.accepted else "rejected").inc()
            return result

        return wrapped
