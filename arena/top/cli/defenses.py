"""`arena defenses --server HOST:PORT [--token T] [--json]`: the defenses of a running arena."""

from __future__ import annotations

import json
import time


def register(sub) -> None:
    p = sub.add_parser("defenses", help="list the defenses of a running arena")
    p.add_argument("--server", required=True, metavar="HOST:PORT", help="the arena's gRPC address")
    p.add_argument("--token", default=None, help="bearer token (default: $ARENA_TOKEN)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="deadline in seconds (default: 60)")
    p.set_defaults(func=_run)


def defense_dict(d) -> dict:
    from protos import arena_v1_pb2 as pb

    return {
        "name": d.name, "team": d.team,
        "status": pb.DefenseStatus.Name(d.status).removeprefix("DEFENSE_STATUS_").lower(),
        "description": d.description, "sha256": d.sha256, "size_bytes": d.size_bytes,
        "num_classes": d.num_classes, "clean_accuracy": d.clean_accuracy,
        "rejection_reasons": list(d.rejection_reasons), "submitted_at": d.submitted_at,
        "serving_mode": d.serving_mode,
    }


def _run(args) -> int:
    from arena.ground.client import ArenaClient, token_from

    with ArenaClient(args.server, token_from(args.token), timeout=args.timeout) as client:
        defenses = [defense_dict(d) for d in client.list_defenses()]
    if args.json:
        print(json.dumps(defenses, indent=2))
        return 0
    if not defenses:
        print("no defenses yet")
        return 0
    rows = []
    for d in defenses:
        accepted = d["status"] == "accepted"
        rows.append([
            d["name"], d["team"], d["status"],
            f"{d['clean_accuracy']:.2%}" if accepted else "-",
            str(d["num_classes"]) if accepted else "-",
            d["serving_mode"] if accepted else "-",
            f"{d['size_bytes'] / 1024:.0f} KiB",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(d["submitted_at"])),
            "",
        ])
        if not accepted:
            rows.extend(["", "", "", "", "", "", "", "", f"  - {reason}"] for reason in d["rejection_reasons"])
    print(_table(["name", "team", "status", "clean acc (public)", "classes", "served", "size", "submitted", ""], rows))
    return 0


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns; the last column (rejection reasons) is not padded."""
    widths = [max([len(header[i])] + [len(r[i]) for r in rows if r[i] and not r[-1]]) for i in range(len(header) - 1)]
    lines = []
    for row in [header] + rows:
        if row[-1]:          # a reason line
            lines.append(row[-1])
            continue
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if row is header:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
