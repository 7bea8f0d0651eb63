"""`arena serve`: the arena's gRPC server (label-only serving, submissions, runs, leaderboard).

    arena serve --store arena-store --data demo [--host 127.0.0.1] [--port 50051]
                [--public-samples 100] [--private-samples 100]

Runs until SIGTERM or SIGINT, then shuts down gracefully (health NOT_SERVING, in-flight calls
finish). Prints one line `arena serve: listening on HOST:PORT` once it accepts calls.
"""

from __future__ import annotations

import os
import sys

from arena.contract import DEFAULT_BUDGET

MIN_CHILD_MEMORY_MB = 512


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the arena server (gRPC)",
                       description="Serve ONNX defenses label-only over gRPC, with per-sample budgets, "
                                   "verification of adversarials, a durable store and team tokens.")
    p.add_argument("--store", default=None, metavar="DIR",
                   help="store folder (SQLite database + ONNX blobs); or give --database-url")
    p.add_argument("--data", default="demo", metavar="{demo|PATH}",
                   help="evaluation data: 'demo', a tiny-imagenet-200 folder or an .npz (default: demo)")
    p.add_argument("--public-samples", type=int, default=100, metavar="N",
                   help="samples of the public split, attacked in the open phase (default: 100)")
    p.add_argument("--private-samples", type=int, default=100, metavar="N",
                   help="samples of the private split, the official board's, attacked in the final phase "
                        "(default: 100); both are drawn from the validation samples by a fixed permutation")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=50051, help="gRPC port; 0 picks a free one (default: 50051)")
    p.add_argument("--http-port", type=int, default=None, metavar="PORT",
                   help="also serve the live HTML report over HTTP on this port")
    p.add_argument("--budget", type=int, default=DEFAULT_BUDGET,
                   help="queries per sample, team, defense and split, shared by the team's runs; a new store "
                        f"records it, later the organizer sets it (`arena admin budget`) (default: {DEFAULT_BUDGET})")
    p.add_argument("--attack-board-top-k", type=int, default=0, metavar="K",
                   help="the attack board ranks over the top K defenses of the public board, as the 2018 challenge "
                        "did (default 0: every covered defense; docs/rules.md section 6)")
    p.add_argument("--latency-ms", type=float, default=100.0,
                   help="per-image latency budget a submission must meet (default: 100)")
    p.add_argument("--max-upload-mb", type=float, default=100.0, help="largest ONNX upload (default: 100)")
    p.add_argument("--max-batch", type=int, default=256,
                   help="most images one Predict/SubmitAdversarials may carry (default: 256)")
    p.add_argument("--max-chunk", type=int, default=64,
                   help="largest batch handed to ONNX Runtime; a power of two (default: 64)")
    p.add_argument("--batch-wait-ms", type=float, default=0.0,
                   help="how long a lone request waits for company in the micro-batcher (default: 0)")
    p.add_argument("--concurrent-runs", type=int, default=2,
                   help="model runs in flight per defense (default: 2)")
    p.add_argument("--session-cache-mb", type=float, default=2048.0,
                   help="memory budget of loaded ONNX Runtime sessions (default: 2048)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: all cores)")
    p.add_argument("--inference-timeout-s", type=float, default=30.0,
                   help="a model run taking longer counts as a defense failure (default: 30)")
    limits = p.add_argument_group('limits on submitted models (docs/rules.md, "Limits on submitted models")')
    limits.add_argument("--validation-timeout-s", type=float, default=240.0, metavar="S",
                        help="wall clock of one submission's validation, loading included (default: 240)")
    limits.add_argument("--validation-memory-mb", type=float, default=4096.0, metavar="MB",
                        help="address space of a validation process; 0: unlimited (default: 4096)")
    limits.add_argument("--worker-memory-mb", type=float, default=4096.0, metavar="MB",
                        help="address space of each defense's serving process; 0: unlimited (default: 4096)")
    limits.add_argument("--concurrent-validations", type=int, default=2, metavar="N",
                        help="submissions validated at once, at most one per team (default: 2)")
    limits.add_argument("--in-process", action="store_true",
                        help="validate and serve models inside the server process, without those limits "
                             "(benchmarks only: one hostile model can take the arena down)")
    p.add_argument("--durability", choices=("full", "normal"), default="full",
                   help="full: fsync every group commit (default); normal: survives kill -9, not power loss")
    p.add_argument("--database-url", default=None, metavar="URL",
                   help="database URL (default: sqlite:///<store>/arena.db); postgresql://user@host/dbname "
                        "lets several replicas share one arena (docs/deploy.md)")
    p.add_argument("--grace-s", type=float, default=10.0, help="graceful shutdown period (default: 10)")
    p.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    p.set_defaults(func=_run)


def config_from_args(args):
    from arena.server.core import ArenaConfig
    from arena.server import ServerConfig

    if args.store is None and args.database_url is None:
        raise ValueError("give --store DIR or --database-url URL")
    if args.max_chunk < 1 or args.max_chunk & (args.max_chunk - 1):
        raise ValueError(f"--max-chunk must be a power of two, got {args.max_chunk}")
    for name in ("budget", "max_batch", "public_samples", "concurrent_runs", "concurrent_validations"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("validation_timeout_s", "inference_timeout_s", "latency_ms"):
        if not getattr(args, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0")
    for name in ("validation_memory_mb", "worker_memory_mb"):
        value = getattr(args, name)
        if not (value == 0 or value >= MIN_CHILD_MEMORY_MB):
            raise ValueError(f"--{name.replace('_', '-')} must be 0 (unlimited) or at least {MIN_CHILD_MEMORY_MB} "
                             f"(ONNX Runtime alone needs about 300 MiB of address space), got {value:g}")
    if args.private_samples < 0:
        raise ValueError("--private-samples must be >= 0")
    if args.attack_board_top_k < 0:
        raise ValueError(f"--attack-board-top-k must be >= 0 (0: every covered defense), got {args.attack_board_top_k}")
    if args.budget >= 2**32:
        raise ValueError("--budget must be below 2**32")
    arena = ArenaConfig(
        budget=args.budget, max_batch=args.max_batch, max_chunk=args.max_chunk, batch_wait_ms=args.batch_wait_ms,
        latency_ms=args.latency_ms, max_upload_mb=args.max_upload_mb, session_cache_mb=args.session_cache_mb,
        threads=args.threads, inference_timeout_s=args.inference_timeout_s,
        concurrent_runs=args.concurrent_runs, isolate=not args.in_process,
        validation_timeout_s=args.validation_timeout_s, validation_memory_mb=args.validation_memory_mb,
        worker_memory_mb=args.worker_memory_mb, concurrent_validations=args.concurrent_validations,
        attack_board_top_k=args.attack_board_top_k,
    )
    return ServerConfig(
        store=args.store, data=args.data, public_samples=args.public_samples,
        private_samples=args.private_samples, database_url=args.database_url,
        host=args.host, port=args.port, http_port=args.http_port, durability=args.durability,
        grace_s=args.grace_s, arena=arena,
    )


def _run(args) -> int:
    import logging

    from arena.server import serve

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    config = config_from_args(args)

    def ready(server) -> None:
        line = f"arena serve: listening on {server.address}"
        if server.http_address:
            line += f" (report: http://{server.http_address}/)"
        print(line, flush=True)

    from arena.cli import CommandError
    from arena.server.store import StoreError

    try:
        serve(config, ready=ready)
    except StoreError as error:
        raise CommandError(str(error)) from None
    # Stopped cleanly (store closed, children ended). Skip the interpreter's teardown: gRPC's and
    # ONNX Runtime's native finalisers take seconds, which would overrun the grace period.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
