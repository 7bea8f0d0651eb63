"""`arena serve`: the arena's gRPC server (label-only serving, submissions, runs, leaderboard).

    arena serve --store arena-store --data demo [--host 127.0.0.1] [--port 50051]
                [--public-samples 100] [--private-samples 100]
                [--private-data DIR | --private-from-public]

Runs until SIGTERM or SIGINT, then shuts down gracefully (health NOT_SERVING, in-flight calls
finish). Prints one line `arena serve: listening on HOST:PORT` once it accepts calls. The flags
are the server's settings (`arena.server.settings`), declared once there.
"""

from __future__ import annotations

import os
import sys


def register(sub) -> None:
    from arena.server.settings import SERVE_DEFAULTS, add_flags

    p = sub.add_parser("serve", help="run the arena server (gRPC)",
                       description="Serve ONNX defenses label-only over gRPC, with per-sample budgets, "
                                   "verification of adversarials, a durable store and team tokens.")
    add_flags(p, overrides=SERVE_DEFAULTS)
    p.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")
    p.set_defaults(func=_run)


def config_from_args(args):
    from arena.server.settings import from_args

    from arena.server.evaluation import Source

    if args.store is None and args.database_url is None:
        raise ValueError("give --store DIR or --database-url URL")
    Source(args.data, args.public_samples, args.private_samples, args.private_data,
           args.private_from_public).private_source()   # refuses a private split from public data, unasked
    return from_args(args)


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

    from arena.top.cli import CommandError
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
