"""`arena submit model.onnx --name NAME --server HOST:PORT [--token T]`: submit a defense.

The file is streamed in 1 MiB chunks after a metadata message. The arena validates it
(docs/rules.md section 3) before answering: accepted -> its clean accuracy; rejected -> every
failed rule, exit code 2.
"""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("submit", help="submit an ONNX defense to a running arena")
    p.add_argument("model", type=Path, help="the ONNX file")
    p.add_argument("--name", required=True, help="the defense's name on the arena ([A-Za-z0-9_.-], 1-64)")
    p.add_argument("--description", default="", help="free text, at most 1000 characters")
    p.add_argument("--server", required=True, metavar="HOST:PORT", help="the arena's gRPC address")
    p.add_argument("--token", default=None, help="bearer token (default: $ARENA_TOKEN)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S", help="deadline in seconds (default: 600)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from arena.ground.client import ArenaClient, token_from

    token = token_from(args.token)
    data = args.model.read_bytes()
    with ArenaClient(args.server, token, timeout=args.timeout) as client:
        defense = client.submit_defense(data, args.name, args.description)
    print(f"accepted: {defense.name} (team {defense.team}), {defense.num_classes} classes, "
          f"clean accuracy {defense.clean_accuracy:.2%} on the public split, served {defense.serving_mode}, "
          f"sha256 {defense.sha256[:12]}")
    return 0
