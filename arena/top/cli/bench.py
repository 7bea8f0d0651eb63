"""`arena bench {train,serve,attack,subspace,bootstrap}`: hot-path benchmarks.

Each benchmark module defines `add_arguments(parser)` (importable without torch) and
`run(args) -> dict` returning {"title", "columns", "rows", "figures"}; `figures["ratio"]` is the
headline, measured against a reference in the same run. This module prints the readable table
and then, as the last line, one JSON object with all figures.
"""

from __future__ import annotations

import importlib
import json
import math
from functools import partial

BENCHES = {
    "train": ("arena.top.bench.train", "TRADES training step vs the straightforward formulation"),
    "serve": ("arena.top.bench.serve", "gRPC serving vs in-process ONNX Runtime"),
    "attack": ("arena.top.bench.attack", "decision-based attacks vs the white-box reference"),
    "subspace": ("arena.top.bench.subspace", "how much of the boundary's normal each probe subspace holds (label-only attacks)"),
    "bootstrap": ("arena.top.bench.bootstrap", "the board's bootstrap intervals vs the one-resample-at-a-time loop"),
}


def register(sub) -> None:
    parser = sub.add_parser("bench", help="benchmark a hot path (training step, serving, attacks)")
    benches = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")
    for name, (module, help_text) in BENCHES.items():
        bench_parser = benches.add_parser(name, help=help_text)
        importlib.import_module(module).add_arguments(bench_parser)
        bench_parser.set_defaults(func=partial(_run, module))


def _fmt(value) -> str:
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def format_table(columns: list[str], rows: list[list]) -> str:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max([len(col)] + [len(r[i]) for r in cells]) for i, col in enumerate(columns)]
    lines = ["  ".join(col.rjust(w) for col, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _run(module: str, args) -> int:
    result = importlib.import_module(module).run(args)
    print(result["title"])
    print(format_table(result["columns"], result["rows"]))
    for note in result.get("notes", ()):  # e.g. goals, met or not
        print(note)
    print(json.dumps(result["figures"], sort_keys=True, default=float))
    return 0
