"""docs/deploy.md runs as written: its bash blocks, in order, as one script, against a throwaway
PostgreSQL server (its superuser `postgres`, as on a Debian host). Only the database address and
the port numbers are substituted."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from arena.top.bench import toy_models
from arena.top.bench.postgres_server import PostgresServer, find_bin

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deploy.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def doc_script() -> str:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 6
    return "\n".join(blocks)


def test_deploy_doc_commands_run(tmp_path):
    bin_dir = find_bin()
    if bin_dir is None:
        if os.environ.get("ARENA_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL server binaries not found")
        pytest.skip("PostgreSQL server binaries not found")
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (docs/deploy.md uses it)")
    script = doc_script()
    server = PostgresServer(bin_dir, user="postgres").start()
    try:
        script = script.replace("postgresql://arena@127.0.0.1:5432/arena",
                                f"'postgresql://arena@/arena?host={server.root}&port={server.port}'")
        for port in ("50051", "50052", "8080", "8081"):
            script = script.replace(port, str(free_port()))
        (tmp_path / "trades.onnx").write_bytes(toy_models.tiny_cnn(seed=0).SerializeToString())
        env = dict(os.environ, PGHOST=str(server.root), PGPORT=str(server.port), PGUSER="postgres",
                   PATH=f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
                   PYTHONPATH=str(ROOT))
        env.pop("ARENA_TOKEN", None)
        # its own process group: whatever happens, no replica outlives the test
        proc = subprocess.Popen(["bash", "-xeuo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:   # say where it stood, not just that it was slow
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail("docs/deploy.md did not finish within 300 s; it stood at:\n" + out[-2000:] + err[-3000:])
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        assert proc.returncode == 0, out[-3000:] + err[-3000:]
        assert "trades" in out                                     # the leaderboard lists the defense
        charged = [line for line in out.splitlines() if line.startswith("arena_charged_queries_total")]
        assert charged and any(float(line.split()[-1]) > 0 for line in charged)
        assert any(line.startswith("arena_requests_total") for line in out.splitlines())
        assert (tmp_path / "boundary.json").exists()
    finally:
        server.stop()
