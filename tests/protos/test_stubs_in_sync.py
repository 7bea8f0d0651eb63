"""The committed gRPC stubs must be exactly what `python -m protos.generate` makes of the .proto."""

from pathlib import Path

import pytest

from protos import generate

pytest.importorskip("grpc_tools")


def test_stubs_match_the_proto(tmp_path: Path) -> None:
    written = generate.generate(tmp_path)
    assert sorted(p.name for p in written) == sorted(generate.OUTPUTS)
    stale = [p.name for p in written if p.read_bytes() != (generate.PACKAGE_DIR / p.name).read_bytes()]
    assert not stale, f"stubs out of sync with protos/{generate.PROTO}: {stale}; run `python -m protos.generate`"


def test_stubs_are_marked_generated() -> None:
    for name in generate.OUTPUTS:
        first = (generate.PACKAGE_DIR / name).read_text().splitlines()[0]
        assert first.startswith("# GENERATED FILE"), name
