"""`arena`: one command line with a subcommand per module of this package.

Each module in COMMANDS defines `register(subparsers)`, which adds its parser and sets
`func` to a callable taking the parsed arguments and returning an exit code (or None).
Modules import their heavy dependencies (torch, onnxruntime, grpc) inside `func`, so
`arena --help` stays fast and the server never loads torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# OpenMP threads that spin while waiting steal the cores from other processes (the server, the
# attack client, a second training process): several times slower steps on a shared 2-core
# machine (docs/benchmarks.md). Set before torch or onnxruntime load; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

COMMANDS = (
    "data",
    "train",
    "evaluate",
    "export",
    "serve",
    "token",
    "submit",
    "defenses",
    "attack",
    "leaderboard",
    "admin",
    "referee",
    "demo",
    "study",
    "bench",
)


class CommandError(Exception):
    """A user-facing failure: printed as `arena <command>: error: <message>`, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arena",
        description="Robustness arena: train and export defenses, serve them label-only, attack them, rank them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"arena.top.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Every command moves images by the megabyte (batches of queries, requests, training data):
    # keep those buffers in the heap instead of page-faulting fresh mmaps (arena.ground.tuning).
    from arena.ground.tuning import tune_malloc

    tune_malloc()
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print(f"arena {args.command}: interrupted", file=sys.stderr)
        return 130
    except (CommandError, ValueError, OSError) as error:
        # Bad input from outside: one clear line, no traceback (ARENA_DEBUG=1 shows it).
        if os.environ.get("ARENA_DEBUG"):
            raise
        print(f"arena {args.command}: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        import grpc  # only reached on failure; grpc errors get their status and details

        if isinstance(error, grpc.RpcError) and not os.environ.get("ARENA_DEBUG"):
            print(f"arena {args.command}: error: {error.code().name}: {error.details()}", file=sys.stderr)
            return 2
        raise
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
