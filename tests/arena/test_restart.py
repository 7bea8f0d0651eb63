"""kill -9 in the middle of a run, restart on the same store: defenses, runs, charges, query
hashes and adversarials are all there, and the client re-attaches to its run. Also: SIGTERM
shuts down gracefully, and the server process never imports torch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest

from arena.top.bench import toy_models
from arena.server.auth import create_token
from arena.ground.client import ArenaClient
from arena.server.store import open_store

from .conftest import model_labels, synthetic_images

ROOT = Path(__file__).resolve().parents[2]


class ServeProcess:
    def __init__(self, store: Path, data: Path, budget: int) -> None:
        cmd = [sys.executable, "-m", "arena", "serve", "--store", str(store), "--data", str(data),
               "--public-samples", "12", "--private-samples", "0", "--port", "0", "--budget", str(budget), "--max-chunk", "16",
               "--grace-s", "5", "--log-level", "WARNING"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise AssertionError(f"arena serve did not start: {line!r} {self.proc.stderr.read()}")
        self.address = line.split("listening on ")[1].split()[0]


def _children_of(pid: int) -> list[int]:
    """The arena child processes (arena.server.sandbox) started by server `pid`, alive or zombie."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if len(argv) > 5 and argv[4].startswith(b"arena.server.") and argv[5] == str(pid).encode() and state != "Z":
            out.append(int(entry.name))
    return out


@pytest.fixture
def eval_file(tmp_path) -> tuple[Path, bytes, np.ndarray, np.ndarray]:
    tiny = toy_models.tiny_cnn(seed=0).SerializeToString()
    x = synthetic_images(12, seed=5)
    y = model_labels(tiny, x).astype(np.int64)
    path = tmp_path / "eval.npz"
    np.savez(path, x=x, y=y)
    return path, tiny, x, y


def test_kill_9_mid_run_and_restart(tmp_path, eval_file):
    data, tiny, x, y = eval_file
    store = tmp_path / "store"
    server = ServeProcess(store, data, budget=500)
    try:
        db = open_store(store)
        token = create_token(db, "alpha")           # while the server runs (WAL: fine)
        db.close()
        with ArenaClient(server.address, token, timeout=20) as c:
            c.submit_defense(tiny, "tiny")
            run = c.start_run("tiny", "survivor")
            x, y = c.samples(run.run_id)   # in the arena's order (its split permutation): queries of a
            # sample's own neighbourhood are charged to that sample whatever index is named (rules v3)
            acked = np.zeros(12, np.int64)
            answers = {}
            for i in range(5):
                rid = f"warm-{i}"
                samples = np.arange(i, i + 4) % 12
                labels, _ = c.predict(run.run_id, x[samples], samples, request_id=rid)
                answers[rid] = (samples, labels)
                np.add.at(acked, samples, 1)
            other = next(j for j in range(12) if y[j] != y[0])
            c.predict(run.run_id, x[other:other + 1], [0], request_id="adv-query")
            np.add.at(acked, [0], 1)   # another sample's exact clean image: charged to the one named
            (verdict,) = c.submit_adversarials(run.run_id, x[other:other + 1], [0])
            assert verdict.accepted and not verdict.charged

        # a client hammering the run while the server gets SIGKILLed
        attempted = np.zeros(12, np.int64)
        hammer_acked = np.zeros(12, np.int64)
        stop = threading.Event()

        def hammer():
            with ArenaClient(server.address, token, timeout=5) as h:
                rng = np.random.default_rng(0)
                while not stop.is_set():
                    samples = rng.integers(0, 12, 8)
                    np.add.at(attempted, samples, 1)
                    try:
                        h.predict(run.run_id, x[samples], samples, request_id=uuid.uuid4().hex)
                    except grpc.RpcError:
                        return
                    np.add.at(hammer_acked, samples, 1)

        thread = threading.Thread(target=hammer)
        thread.start()
        time.sleep(0.6)
        children = _children_of(server.proc.pid)
        assert children, "the defense's worker process is missing"
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        deadline = time.monotonic() + 10      # they end with the server (PDEATHSIG; a worker also on EOF)
        while _children_of(server.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _children_of(server.proc.pid)
        stop.set()
        thread.join(10)
        assert hammer_acked.sum() > 0, "the hammer never got an answer before the kill"
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()

    server = ServeProcess(store, data, budget=500)
    try:
        with ArenaClient(server.address, token, timeout=20) as c:
            assert [d.name for d in c.list_defenses()] == ["tiny"]
            again = c.get_run(run.run_id)                      # re-attach
            used = np.array(again.queries_used)
            floor = acked + hammer_acked
            assert (used >= floor).all(), (used, floor)        # every answered query was durable
            assert (used <= acked + attempted).all()           # nothing charged that was not asked
            assert again.best_distances[0] == verdict.distance
            assert not again.finished
            # stored answers replay, query hashes survived (free verification)
            for rid, (samples, labels) in answers.items():
                response = c.predict_raw(run.run_id, x[samples], samples, request_id=rid)
                assert response.replayed and list(response.labels) == labels.tolist()
            (verdict2,) = c.submit_adversarials(run.run_id, x[other:other + 1], [0])
            assert not verdict2.charged and verdict2.best_distance == verdict.distance
            assert np.array_equal(np.array(c.get_run(run.run_id).queries_used), used)
            # the run goes on
            c.predict(run.run_id, x[:2], [0, 1])
            assert c.finish_run(run.run_id).finished
        # SIGTERM: graceful shutdown, exit code 0
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(20) == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
    db = open_store(store)
    try:
        (row,) = db.list_runs()
        assert row.finished
        assert len(db.adversarials(run.run_id)) == 1
    finally:
        db.close()


@pytest.mark.parametrize("module", ["arena.server", "arena.top.bench", "arena.top.cli.serve", "arena.top.cli.token",
                                    "arena.top.cli.submit", "arena.top.cli.defenses", "arena.top.cli"])
def test_server_never_imports_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch imported by {module}'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_arena_serve_process_never_imports_torch():
    """`python -m arena serve` builds the whole CLI parser: no subcommand may import torch eagerly."""
    code = ("import sys; from arena.top.cli import COMMANDS, build_parser; build_parser(); "
            "assert 'torch' not in sys.modules, 'a module of arena.top.cli imports torch at import time'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
