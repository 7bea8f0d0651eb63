"""Regenerates the gRPC stubs from arena_v1.proto: `python -m protos.generate`.

The stubs are committed (the server and clients need no grpcio-tools at run time);
tests/protos/test_stubs_in_sync.py regenerates them into a temporary folder and fails on any difference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

PROTO = "arena_v1.proto"
OUTPUTS = ("arena_v1_pb2.py", "arena_v1_pb2.pyi", "arena_v1_pb2_grpc.py")
HEADER = f"# GENERATED FILE: do not edit. Made from protos/{PROTO} by `python -m protos.generate`.\n"
PACKAGE_DIR = Path(__file__).resolve().parent


def generate(out_dir: Path) -> list[Path]:
    """Writes the stubs for arena_v1.proto into out_dir; returns their paths."""
    import grpc_tools
    from grpc_tools import protoc

    root = PACKAGE_DIR.parent
    with tempfile.TemporaryDirectory() as tmp:
        include = Path(grpc_tools.__file__).parent / "_proto"
        code = protoc.main([
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"protos/{PROTO}",
        ])
        if code != 0:
            raise RuntimeError(f"protoc failed on protos/{PROTO} (exit {code})")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in OUTPUTS:
            text = (Path(tmp) / "protos" / name).read_text()
            target = out_dir / name
            target.write_text(HEADER + text)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR, help="output folder (default: protos/)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
