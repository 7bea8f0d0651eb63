"""`arena bench serve`: end-to-end gRPC serving against in-process ONNX Runtime, same model, same run.

Measured, on one model (default: an ONNX graph of the demo defense's shape and cost, random
weights; `--model` takes any exported defense):
- images/s of in-process ONNX Runtime (same session options as the server; c threads each
  running batches of b) and of the arena end to end (c client processes sending Predict
  requests of b images to a real server on loopback, budgets charged, group commits fsynced),
  for b in --batches and c in --clients, and their ratio;
- the same through a bare gRPC server (same transport, same zero-copy parsing, same ONNX Runtime
  session options, inference on a thread pool; no auth, budgets, store or digests): the ceiling
  of a Python gRPC server on this machine, which tells transport cost from the arena's own;
- p50/p99 latency of a single-image Predict (one client, sequential) and its overhead over ORT's
  own single-image time, on both servers;
- a one-image-per-HTTP-request server like the 2018 challenge's (stdlib http.server, the image
  as a JSON list of floats), and the gRPC path's speed-up over it at the same number of clients.
The paths are measured in alternating slices (--rounds) so that load from other processes hits
them alike. The traffic is an attack's: the evaluation labels of half the samples differ from
the model's, so half the images are answered adversarial (hashed and recorded for free
verification, as in a HopSkipJump run).
Headline `ratio`: arena gRPC / in-process images/s at batch 64 with 4 clients.

With `--replicas N` it measures separate `arena serve` processes on SQLite and PostgreSQL
instead (arena.top.bench.replicas).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from arena.top.bench.clients import Clients, cpu_seconds
from arena.ground.contract import IMAGE_SHAPE

EVAL_SAMPLES = 64
HEADLINE = (64, 4)


def add_arguments(parser) -> None:
    parser.add_argument("--model", type=Path, default=None,
                        help="ONNX defense to serve (default: a demo-sized pre-activation ResNet, random weights)")
    parser.add_argument("--batches", default="1,16,64,256", help="images per request (default: 1,16,64,256)")
    parser.add_argument("--clients", default="1,4", help="concurrent clients (default: 1,4)")
    parser.add_argument("--seconds", type=float, default=4.5,
                        help="measured seconds per path and cell, split over --rounds (default: 4.5)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating slices per cell (default: 3)")
    parser.add_argument("--latency-requests", type=int, default=400,
                        help="sequential single-image requests for p50/p99 (default: 400)")
    parser.add_argument("--http-seconds", type=float, default=4.0, help="seconds per HTTP cell (default: 4)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: all cores)")
    parser.add_argument("--durability", choices=("full", "normal"), default="full",
                        help="the server's commit durability (default: full, fsync per group commit)")
    parser.add_argument("--hostile", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the rejection of a too-slow model and of a memory bomb, and the Predict "
                             "p99 of a well-behaved defense meanwhile (default: on)")
    parser.add_argument("--hostile-memory-mb", type=float, default=1024.0,
                        help="the validation memory limit for the memory bomb (default: 1024)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="also sample the arena (models in-process) and the bare server with py-spy at batch "
                             "64, 4 clients, write the top of each profile and the raw stacks to DIR, and measure "
                             "the arena with each part of the rules' work switched off (arena.top.bench.profile)")
    parser.add_argument("--profile-seconds", type=float, default=8.0,
                        help="seconds of load per profiled server (default: 8)")
    replicas = parser.add_argument_group("replicas (arena.top.bench.replicas)")
    replicas.add_argument("--replicas", type=int, default=None, metavar="N",
                          help="instead: 1 replica on SQLite, 1 and N on PostgreSQL, as separate processes")
    replicas.add_argument("--database-url", default=None, metavar="URL",
                          help="with --replicas: the PostgreSQL database (default: a throwaway local server)")
    replicas.add_argument("--bench-clients", type=int, default=4, metavar="C",
                          help="with --replicas: client processes (default: 4)")
    replicas.add_argument("--replica-batch", type=int, default=16, metavar="B",
                          help="with --replicas: images per Predict (default: 16)")


class _Served:
    """A real arena server on loopback serving `model` as defense "bench", with one run per client."""

    def __init__(self, model: bytes, images, labels, *, durability: str, max_batch: int, threads: int,
                 runs: int, **limits) -> None:
        from arena.server import evaluation
        from arena.server.auth import create_token
        from arena.ground.client import ArenaClient
        from arena.server.core import ArenaConfig
        from arena.server import ServerConfig, start_server

        self._tmp = tempfile.TemporaryDirectory(prefix="arena-bench-")
        config = ServerConfig(
            store=self._tmp.name, evaluation=evaluation.from_arrays(images, labels), host="127.0.0.1", port=0,
            durability=durability,
            arena=ArenaConfig(**{"budget": 2**32 - 1, "max_batch": max_batch, "threads": threads,
                                 "latency_ms": 10_000.0, **limits}),
        )
        self.server = start_server(config)
        self.address = self.server.address
        self.token = create_token(self.server.arena.store, "bench")
        with ArenaClient(self.address, self.token) as admin:
            admin.submit_defense(model, "bench")
            self.run_ids = [admin.start_run("bench", f"bench-{k}").run_id for k in range(runs)]

    def submit(self, model: bytes, name: str) -> tuple[float, str]:
        """Seconds until the verdict on a submission, and its rejection message ('' if accepted)."""
        import grpc

        from arena.ground.client import ArenaClient

        start = time.perf_counter()
        with ArenaClient(self.address, self.token, timeout=600, retries=0) as client:
            try:
                client.submit_defense(model, name)
                message = ""
            except grpc.RpcError as error:
                message = error.details() or str(error.code())
        return time.perf_counter() - start, message

    def stats(self) -> dict[str, float]:
        writer = self.server.arena.writer.stats
        batcher = self.server.arena.registry.batchers.get("bench")
        return {
            "group_commits": float(writer.commits),
            "commit_jobs": float(writer.jobs),
            "model_runs": float(batcher.stats.runs if batcher else 0),
            "merged_runs": float(batcher.stats.merged_runs if batcher else 0),
        }

    def close(self) -> None:
        self.server.stop()
        self._tmp.cleanup()


class _Bare:
    """The ceiling of a Python gRPC server here: the arena's transport (grpc.aio, message limits,
    zero-copy request parsing) and session options, inference on a thread pool, labels back;
    no auth, validation, budgets, store or digests. It answers RunService/Predict, so the arena's
    own client talks to it unchanged (its token and run ids are ignored)."""

    def __init__(self, model: bytes, threads: int, max_batch: int) -> None:
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        import grpc

        from arena.ground.contract import IMAGE_BYTES
        from arena.server.images import parse_with_images
        from arena.ground.inference import make_session
        from protos import arena_v1_pb2 as pb

        session = make_session(model, threads)
        name = session.get_inputs()[0].name
        pool = ThreadPoolExecutor(2)
        self.token, self.run_ids = "-", ["-"] * 64
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def infer(request) -> pb.PredictResponse:
            images = np.frombuffer(request.images.data, dtype="<f4").reshape(tuple(request.images.shape))
            labels = np.argmax(session.run(None, {name: images})[0], axis=1)
            return pb.PredictResponse(labels=labels.tolist(), remaining=[0] * labels.size)

        async def predict(request, context):
            return await asyncio.get_running_loop().run_in_executor(pool, infer, request)

        async def main() -> None:
            limit = max_batch * IMAGE_BYTES + (1 << 20)
            server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit)])
            handler = grpc.unary_unary_rpc_method_handler(
                predict, request_deserializer=parse_with_images(pb.PredictRequest, 4),
                response_serializer=pb.PredictResponse.SerializeToString)
            service = pb.DESCRIPTOR.services_by_name["RunService"].full_name
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {"Predict": handler}),))
            self.address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
            await server.start()
            self._server = server
            ready.set()

        self._thread = threading.Thread(target=lambda: (asyncio.set_event_loop(self._loop),
                                                        self._loop.create_task(main()),
                                                        self._loop.run_forever()), daemon=True)
        self._thread.start()
        ready.wait(60)
        self._pool = pool

    def close(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self._server.stop(0), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._pool.shutdown()


# ---------------------------------------------------------------- in-process reference


def _ort_throughput(session, images: np.ndarray, batch: int, clients: int, seconds: float) -> float:
    idx = np.arange(batch) % images.shape[0]
    batch_images = np.ascontiguousarray(images[idx])
    name = session.get_inputs()[0].name
    counts = [0] * clients
    barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(k: int) -> None:
        barrier.wait()
        while True:
            np.argmax(session.run(None, {name: batch_images})[0], axis=1)
            counts[k] += batch
            if time.perf_counter() >= stop_at[0]:
                break

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    stop_at[0] = start + seconds
    barrier.wait()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def _ort_latency(session, image: np.ndarray, n: int) -> list[float]:
    name = session.get_inputs()[0].name
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        np.argmax(session.run(None, {name: image})[0], axis=1)
        times.append(time.perf_counter() - t0)
    return times


# ---------------------------------------------------------------- the 2018-style HTTP server


def _http_server(session):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    name = session.get_inputs()[0].name

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"     # keep-alive: generous to the baseline

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            image = np.asarray(json.loads(body)["image"], dtype=np.float32)[None]
            label = int(np.argmax(session.run(None, {name: image})[0], axis=1)[0])
            out = json.dumps({"label": label}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd, f"127.0.0.1:{httpd.server_address[1]}"


# ---------------------------------------------------------------- the benchmark


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def run(args) -> dict:
    if getattr(args, "replicas", None) is not None:
        from arena.top.bench import replicas

        return replicas.run(args)
    from arena.top.bench import toy_models
    from arena.ground.inference import default_threads, make_session

    batches = [int(b) for b in str(args.batches).split(",")]
    client_counts = [int(c) for c in str(args.clients).split(",")]
    threads = args.threads or default_threads()
    if args.model is not None:
        model = Path(args.model).read_bytes()
        model_name = str(args.model)
    else:
        model = toy_models.small_preact_resnet().SerializeToString()
        model_name = "demo-sized pre-activation ResNet (stride-4 stem, widths 32/64/128, random weights)"
    rng = np.random.default_rng(0)
    images = rng.random((EVAL_SAMPLES, *IMAGE_SHAPE), dtype=np.float32)
    session = make_session(model, threads)
    logits = session.run(None, {session.get_inputs()[0].name: images})[0]
    labels = np.argmax(logits, axis=1)
    labels[::2] = (labels[::2] + 1) % logits.shape[1]   # half the answers adversarial (module docstring)

    figures: dict[str, float] = {}
    rows: list[list] = []
    notes: list[str] = []
    clients = Clients(max(client_counts), images)
    served = bare = other = httpd = inproc = None
    try:
        served = _Served(model, images, labels, durability=args.durability, max_batch=max(batches),
                         threads=threads, runs=max(client_counts))
        bare = _Bare(model, threads, max(batches))
        inproc = _Served(model, images, labels, durability=args.durability, max_batch=max(batches),
                         threads=threads, runs=max(client_counts), isolate=False)
        # warm-up of every path
        warm = min(64, max(batches))
        _ort_throughput(session, images, warm, 1, 0.5)
        clients.grpc(served, 1, warm, 0.5)
        clients.grpc(inproc, 1, warm, 0.5)
        clients.grpc(bare, 1, warm, 0.5)

        slice_s = args.seconds / max(1, args.rounds)
        for b in batches:
            for c in client_counts:
                rates: dict[str, list[float]] = {"ort": [], "arena": [], "bare": [], "inproc": []}
                cpu = {"ort": 0.0, "server": 0.0, "clients": 0.0, "ort_images": 0, "grpc_images": 0,
                       "inproc": 0.0, "inproc_images": 0, "bare": 0.0, "bare_images": 0}
                for r in range(args.rounds):   # rotate the order: drift hits every path alike
                    for path in np.roll(["ort", "arena", "bare", "inproc"], r):
                        cpu0 = cpu_seconds()         # this process: ORT in-process, or the servers
                        if path == "ort":
                            rate = _ort_throughput(session, images, b, c, slice_s)
                            rates["ort"].append(rate)
                            cpu["ort"] += cpu_seconds() - cpu0
                            cpu["ort_images"] += rate * slice_s
                            continue
                        target = {"arena": served, "bare": bare, "inproc": inproc}[path]
                        results = clients.grpc(target, c, b, slice_s)
                        rates[path].append(sum(x["images"] for x in results) / max(x["elapsed"] for x in results))
                        if path == "arena":
                            cpu["server"] += cpu_seconds() - cpu0
                            cpu["clients"] += sum(x["cpu"] for x in results)
                            cpu["grpc_images"] += sum(x["images"] for x in results)
                        else:   # both run ORT in this process: their CPU compares like with like
                            cpu[path] += cpu_seconds() - cpu0
                            cpu[f"{path}_images"] += sum(x["images"] for x in results)
                figures[f"cpu_us_per_image_ort_b{b}_c{c}"] = cpu["ort"] / max(cpu["ort_images"], 1) * 1e6
                figures[f"cpu_us_per_image_server_b{b}_c{c}"] = cpu["server"] / max(cpu["grpc_images"], 1) * 1e6
                figures[f"cpu_us_per_image_clients_b{b}_c{c}"] = cpu["clients"] / max(cpu["grpc_images"], 1) * 1e6
                # The server process's CPU per image with the model in that process (ORT included):
                # the arena (ArenaConfig(isolate=False)) against the bare server (issue 21's CPU goal).
                figures[f"arena_cpu_us_per_image_b{b}_c{c}"] = cpu["inproc"] / max(cpu["inproc_images"], 1) * 1e6
                figures[f"bare_cpu_us_per_image_b{b}_c{c}"] = cpu["bare"] / max(cpu["bare_images"], 1) * 1e6
                ort, arena_rate, bare_rate, inproc_rate = (
                    statistics.fmean(rates[k]) for k in ("ort", "arena", "bare", "inproc"))
                figures[f"ort_ips_b{b}_c{c}"] = ort
                figures[f"grpc_ips_b{b}_c{c}"] = arena_rate
                figures[f"bare_ips_b{b}_c{c}"] = bare_rate
                figures[f"inproc_ips_b{b}_c{c}"] = inproc_rate
                figures[f"ratio_b{b}_c{c}"] = arena_rate / ort
                figures[f"bare_ratio_b{b}_c{c}"] = bare_rate / ort
                figures[f"workers_vs_inproc_b{b}_c{c}"] = arena_rate / inproc_rate
                figures[f"arena_vs_bare_b{b}_c{c}"] = arena_rate / bare_rate
                rows.append(["images/s", b, c, round(ort, 1), round(arena_rate, 1), round(inproc_rate, 1),
                             round(bare_rate, 1), round(arena_rate / ort, 3), round(arena_rate / inproc_rate, 3),
                             round(arena_rate / bare_rate, 3)])

        hb, hc = HEADLINE
        if f"cpu_us_per_image_ort_b{hb}_c{hc}" in figures:
            o = figures[f"cpu_us_per_image_ort_b{hb}_c{hc}"]
            sv = figures[f"cpu_us_per_image_server_b{hb}_c{hc}"]
            cl = figures[f"cpu_us_per_image_clients_b{hb}_c{hc}"]
            figures["cpu_us_per_image_overhead"] = sv + cl - o
            rows.append(["CPU us/image (arena: server + clients)", hb, hc, round(o, 1), round(sv + cl, 1), "-", "-",
                         f"+{sv + cl - o:.0f}", "-", "-"])
            ac, bc = (figures[f"{k}_cpu_us_per_image_b{hb}_c{hc}"] for k in ("arena", "bare"))
            figures["arena_vs_bare_cpu"] = ac / bc if bc else float("nan")
            rows.append(["server process CPU us/image, ORT in it", hb, hc, "-", "-", round(ac, 1), round(bc, 1),
                         "-", "-", f"x{figures['arena_vs_bare_cpu']:.2f} CPU"])

        if args.profile is not None:
            from arena.top.bench import profile

            notes += profile.profile_servers({"arena-inprocess": inproc, "bare": bare}, clients,
                                             hb, hc, args.profile_seconds, args.profile)
            notes.append(profile.ablations(inproc, bare, clients, hb, hc, args.profile_seconds / 4))
            with open(Path(args.profile) / "profile.md", "a") as out:
                out.write("\n" + notes[-1] + "\n")
            notes.append(f"profiles: {args.profile}/profile.md, raw stacks beside it")

        _charging_cost(images, figures, rows, served)

        # single-image latency: one client, sequential requests
        ort_times = _ort_latency(session, images[:1], args.latency_requests)
        arena_times = clients.grpc(served, 1, 1, None, requests=args.latency_requests)[0]["latencies"]
        inproc_times = clients.grpc(inproc, 1, 1, None, requests=args.latency_requests)[0]["latencies"]
        bare_times = clients.grpc(bare, 1, 1, None, requests=args.latency_requests)[0]["latencies"]
        for q in (50, 99):
            o, a, ip, bt = (_percentile(t, q) * 1e3 for t in (ort_times, arena_times, inproc_times, bare_times))
            figures.update({f"ort_p{q}_ms": o, f"p{q}_ms": a, f"inproc_p{q}_ms": ip, f"bare_p{q}_ms": bt})
            rows.append([f"1-image latency p{q} ms (ratios: overhead ms)", 1, 1, round(o, 3), round(a, 3),
                         round(ip, 3), round(bt, 3), f"+{a - o:.3f}", f"+{a - ip:.3f}", f"+{a - bt:.3f}"])
        figures.update(overhead_p50_ms=figures["p50_ms"] - figures["ort_p50_ms"],
                       bare_overhead_p50_ms=figures["bare_p50_ms"] - figures["ort_p50_ms"])
        figures.update({f"server_{k}": v for k, v in served.stats().items()})

        # the same latency with commits that survive kill -9 but are not fsynced
        if args.durability == "full":
            other = _Served(model, images, labels, durability="normal", max_batch=max(batches), threads=threads, runs=1)
            clients.grpc(other, 1, 1, 0.3)
            times = clients.grpc(other, 1, 1, None, requests=args.latency_requests)[0]["latencies"]
            p50n = _percentile(times, 50) * 1e3
            ort_p50 = figures["ort_p50_ms"]
            figures.update(p50_normal_ms=p50n, overhead_p50_normal_ms=p50n - ort_p50)
            rows.append(["1-image latency p50 ms, durability=normal (no fsync)", 1, 1, round(ort_p50, 3),
                         round(p50n, 3), "-", "-", f"+{p50n - ort_p50:.3f}", "-", "-"])

        # the 2018 challenge's shape: one image per HTTP request, JSON floats
        httpd, http_address = _http_server(session)
        for c in client_counts:
            results = clients.run([{"kind": "http", "address": http_address, "seconds": args.http_seconds}] * c)
            http_ips = sum(x["images"] for x in results) / max(x["elapsed"] for x in results)
            grpc_best = figures.get(f"grpc_ips_b64_c{c}", max(v for k, v in figures.items() if k.startswith("grpc_ips")))
            figures[f"http_ips_c{c}"] = http_ips
            figures[f"speedup_vs_http_c{c}"] = grpc_best / http_ips
            rows.append(["HTTP+JSON 1 image/request (ratio: arena b64 speed-up)", 1, c,
                         round(figures.get(f"ort_ips_b1_c{c}", float("nan")), 1), round(http_ips, 1), "-", "-",
                         f"x{grpc_best / http_ips:.1f}", "-", "-"])
        if args.hostile:
            _hostile(args, clients, model, images, labels, threads, figures, rows)
    finally:
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        clients.close()
        for s in (served, bare, other, inproc):
            if s is not None:
                s.close()

    hb, hc = HEADLINE
    figures.update(ratio=figures.get(f"ratio_b{hb}_c{hc}", float("nan")),
                   bare_ratio=figures.get(f"bare_ratio_b{hb}_c{hc}", float("nan")),
                   threads=float(threads), cpus=float(os.cpu_count() or 0))
    figures["arena_vs_bare"] = figures["ratio"] / figures["bare_ratio"]
    figures["workers_vs_inproc"] = figures.get(f"workers_vs_inproc_b{hb}_c{hc}", float("nan"))
    return {
        "title": (f"arena bench serve: gRPC end to end vs in-process ONNX Runtime ({model_name}; "
                  f"{threads} ORT threads, {os.cpu_count()} CPUs, durability={args.durability}; half the "
                  f"answers adversarial). 'bare' = a gRPC server with the same transport and ORT and nothing "
                  f"else: the ceiling here. 'arena' runs models in worker processes (the default), "
                  f"'models in-process' is ArenaConfig(isolate=False). Headline ratio = arena/ORT at batch "
                  f"{hb}, {hc} clients."),
        "columns": ["measure", "batch", "clients", "in-process ORT", "arena gRPC", "arena, models in-process",
                    "bare gRPC", "arena/ORT", "arena/arena in-process", "arena/bare"],
        "rows": rows,
        "notes": notes,
        "figures": figures,
    }


def _charging_cost(images: np.ndarray, figures: dict, rows: list, served: "_Served") -> None:
    """The rules v3 charging rule on the hot path (`arena.ground.charging`), per image of a 64-image
    request: the fast path (images inside their named sample's ball: one distance each; every
    query of the throughput runs above took it) and the search (images outside it: a GEMM against
    the split), for this bench's split and a 1000-sample one."""
    from arena.ground.charging import SampleCharger

    rng = np.random.default_rng(1)
    for n in (images.shape[0], 1000):
        split = images if n == images.shape[0] else rng.random((n, *IMAGE_SHAPE), dtype=np.float32)
        start = time.perf_counter()
        charger = SampleCharger(split)
        setup_s = time.perf_counter() - start
        named = np.arange(64) % n
        near = np.clip(split[named] + rng.normal(0, 0.01, (64, *IMAGE_SHAPE)).astype(np.float32), 0, 1)
        far = rng.random((64, *IMAGE_SHAPE), dtype=np.float32)
        timings = {}
        for kind, batch in (("fast", near), ("slow", far)):
            charger.charged(batch, named)   # warm
            reps, start = 0, time.perf_counter()
            while time.perf_counter() - start < 0.5:
                charger.charged(batch, named)
                reps += 1
            timings[kind] = (time.perf_counter() - start) / reps / 64 * 1e6
        figures[f"charge_fast_us_per_image_n{n}"] = timings["fast"]
        figures[f"charge_slow_us_per_image_n{n}"] = timings["slow"]
        figures[f"charge_setup_s_n{n}"] = setup_s
        rows.append([f"charge us/image, split of {n} (fast path; search)", 64, 1, "-",
                     f"{timings['fast']:.1f}; {timings['slow']:.1f}", "-", "-", "-", "-", "-"])
    charger = served.server.arena.chargers["public"]
    figures["served_fast_path_images"] = float(charger.fast_images)
    figures["served_slow_path_images"] = float(charger.slow_images)


# ---------------------------------------------------------------- hostile submissions


def _hostile(args, clients: Clients, model: bytes, images, labels, threads: int, figures: dict, rows: list) -> None:
    """A fresh arena with the default latency budget serves `model`; one client sends single-image
    Predicts back to back while a too-slow model, then a memory bomb, are submitted. Times to the
    verdict, and the Predict p50/p99 during each validation (requests started within it)."""
    from arena.top.bench import toy_models
    from arena.server.core import ArenaConfig

    defaults = ArenaConfig()
    hostile = {
        "slow": toy_models.slow_cnn(depth=400).SerializeToString(),  # ~0.5 s an image idle (1 thread): 5x the limit
        "bomb": toy_models.memory_bomb(copies=16384).SerializeToString(),  # 768 MiB an image, 2 KB file
    }
    served = _Served(model, images, labels, durability=args.durability, max_batch=64, threads=threads, runs=1,
                     latency_ms=defaults.latency_ms, validation_memory_mb=args.hostile_memory_mb)
    try:
        clients.grpc(served, 1, 1, 0.5)
        quiet = clients.grpc(served, 1, 1, 2.0)[0]["latencies"]
        figures["hostile_quiet_p99_ms"] = _percentile(quiet, 99) * 1e3
        rows.append(["Predict p50 / p99 ms, no validation running", 1, 1, "-",
                     f"{_percentile(quiet, 50) * 1e3:.2f} / {_percentile(quiet, 99) * 1e3:.2f}",
                     "-", "-", "-", "-", "-"])
        for name, data in hostile.items():
            box: dict = {}

            def submit(name=name, data=data) -> None:
                time.sleep(0.3)
                box["start"] = time.time()
                box["seconds"], box["message"] = served.submit(data, f"hostile-{name}")
                box["end"] = time.time()
                time.sleep(0.3)
                clients.stop(1)

            thread = threading.Thread(target=submit)
            thread.start()
            result = clients.grpc(served, 1, 1, 3600.0, stoppable=True)[0]
            thread.join()
            during = [lat for lat, t in zip(result["latencies"], result["stamps"])
                      if box["start"] <= t <= box["end"]]
            verdict = (f"rejected ({box['message'].split('): ', 1)[-1].split(':', 1)[0]})" if box["message"]
                       else "ACCEPTED")
            figures[f"hostile_{name}_reject_s"] = box["seconds"]
            figures[f"hostile_{name}_predict_p50_ms"] = _percentile(during, 50) * 1e3
            figures[f"hostile_{name}_predict_p99_ms"] = _percentile(during, 99) * 1e3
            figures[f"hostile_{name}_predicts"] = float(len(during))
            rows.append([f"{name}: {verdict} in {box['seconds']:.2f} s; Predict p50 / p99 ms meanwhile",
                         1, 1, "-", f"{figures[f'hostile_{name}_predict_p50_ms']:.2f} / "
                         f"{figures[f'hostile_{name}_predict_p99_ms']:.2f}", "-", "-", "-", "-", "-"])
    finally:
        served.close()
