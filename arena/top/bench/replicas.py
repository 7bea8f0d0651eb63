"""`arena bench serve --replicas N [--database-url URL]`: the arena as separate `arena serve`
processes, in one run:

- 1 replica on SQLite (the embedded default),
- 1 replica on PostgreSQL,
- N replicas on PostgreSQL (clients spread over them by gRPC's round_robin),

each measured for images/s (C client processes, Predict requests of B images, one run per
client), the p50/p99 of those requests under that load, and the p50/p99 of sequential
single-image requests (one client). Budgets are charged and commits fsynced in every
configuration (SQLite durability=full; PostgreSQL synchronous_commit=on, fsync on).

CPU per image: CPU seconds of the replica processes, of the PostgreSQL server processes (when it
runs on this machine) and of the client processes over the throughput window, divided by the
images answered. On a small machine the replicas compete for the same cores, so images/s says
little about scaling; CPU per image is what carries over to a bigger machine.

Without --database-url, a throwaway PostgreSQL server is started (arena.top.bench.postgres_server;
needs the server binaries, e.g. the Debian package postgresql-15). With it, the URL must name an
empty database or one this bench made before (same evaluation set).
Headline `ratio`: N replicas on PostgreSQL / 1 replica on SQLite, images/s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arena.ground.contract import IMAGE_SHAPE

EVAL_SAMPLES = 64
_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL server process on this machine (postmaster and backends)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text.split("(", 1)[1].startswith("postgres"):
            total += _proc_cpu(int(stat.parent.name))
    return total


class _Replica:
    def __init__(self, url: str, data: Path, threads: int) -> None:
        cmd = [sys.executable, "-m", "arena", "serve", "--database-url", url, "--data", str(data),
               "--public-samples", str(EVAL_SAMPLES), "--private-samples", "0", "--port", "0", "--budget", str(2**32 - 1),
               "--latency-ms", "10000", "--threads", str(threads), "--log-level", "WARNING", "--grace-s", "5"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError(f"arena serve did not start: {line!r} {self.proc.stderr.read()[-2000:]}")
        self.address = line.split("listening on ")[1].split()[0]

    def cpu(self) -> float:
        return _proc_cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class _Target:
    """What `Clients.grpc` needs: an address (a comma-separated list), a token, run ids."""
    address: str
    token: str
    run_ids: list[str]


def _configuration(name, url, replicas, data, model, clients, args, threads, local_pg) -> tuple[dict, list]:
    from arena.ground.client import ArenaClient
    from arena.server.auth import create_token
    from arena.server.store import open_store

    store = open_store(url)
    try:
        token = create_token(store, "bench")
    finally:
        store.close()
    started = [_Replica(url, data, threads) for _ in range(replicas)]
    try:
        with ArenaClient(started[0].address, token) as admin:
            if "bench" not in {d.name for d in admin.list_defenses()}:
                admin.submit_defense(model, "bench")
            runs = [admin.start_run("bench", f"{name}-{k}").run_id for k in range(args.bench_clients)]
        target = _Target(",".join(r.address for r in started), token, runs)
        batch = args.replica_batch
        clients.grpc(target, args.bench_clients, batch, 0.5)                  # warm every replica
        cpu0 = [r.cpu() for r in started]
        db0 = _postgres_cpu() if local_pg else 0.0
        results = clients.grpc(target, args.bench_clients, batch, args.seconds)
        replica_cpu = sum(r.cpu() - c for r, c in zip(started, cpu0))
        db_cpu = (_postgres_cpu() - db0) if local_pg else float("nan")
        images = sum(x["images"] for x in results)
        rate = images / max(x["elapsed"] for x in results)
        latencies = [t for x in results for t in x["latencies"]]
        client_cpu = sum(x["cpu"] for x in results)
        single = clients.grpc(target, 1, 1, None, requests=args.latency_requests)[0]["latencies"]
    finally:
        for r in started:
            r.stop()
    per = 1e6 / max(images, 1)
    figures = {
        "ips": rate,
        "p50_ms": float(np.percentile(latencies, 50)) * 1e3, "p99_ms": float(np.percentile(latencies, 99)) * 1e3,
        "single_p50_ms": float(np.percentile(single, 50)) * 1e3,
        "single_p99_ms": float(np.percentile(single, 99)) * 1e3,
        "cpu_us_per_image_replicas": replica_cpu * per,
        "cpu_us_per_image_database": db_cpu * per,
        "cpu_us_per_image_clients": client_cpu * per,
    }
    server_side = figures["cpu_us_per_image_replicas"] + (0.0 if np.isnan(db_cpu) else figures["cpu_us_per_image_database"])
    figures["cpu_us_per_image_server_side"] = server_side
    row = [name, replicas, round(rate, 1), round(figures["p50_ms"], 2), round(figures["p99_ms"], 2),
           round(figures["single_p50_ms"], 3), round(figures["single_p99_ms"], 3),
           round(figures["cpu_us_per_image_replicas"], 1), round(figures["cpu_us_per_image_database"], 1),
           round(server_side, 1), round(figures["cpu_us_per_image_clients"], 1)]
    return figures, row


def run(args) -> dict:
    from arena.top.bench import toy_models
    from arena.top.bench.clients import Clients
    from arena.ground.inference import default_threads, make_session

    n = int(args.replicas)
    if n < 1:
        raise ValueError(f"--replicas must be >= 1, got {n}")
    if args.model is not None:
        model = Path(args.model).read_bytes()
        model_name = str(args.model)
    else:
        model = toy_models.small_preact_resnet().SerializeToString()
        model_name = "demo-sized pre-activation ResNet (random weights)"
    rng = np.random.default_rng(0)
    images = rng.random((EVAL_SAMPLES, *IMAGE_SHAPE), dtype=np.float32)
    session = make_session(model, 1)
    logits = session.run(None, {session.get_inputs()[0].name: images})[0]
    labels = np.argmax(logits, axis=1)
    labels[::2] = (labels[::2] + 1) % logits.shape[1]   # half the answers adversarial, as in an attack
    cores = os.cpu_count() or 1

    pg = None
    tmp = tempfile.TemporaryDirectory(prefix="arena-bench-replicas-")
    clients = Clients(args.bench_clients, images)
    rows, figures = [], {}
    try:
        data = Path(tmp.name) / "eval.npz"
        np.savez(data, x=images, y=labels)
        url = args.database_url
        if url is None:
            from arena.top.bench.postgres_server import PostgresServer, find_bin

            bin_dir = find_bin()
            if bin_dir is None:
                raise ValueError("no --database-url and no PostgreSQL server binaries to start one "
                                 "(install postgresql-15 or set ARENA_PG_BIN)")
            pg = PostgresServer(bin_dir, durable=True).start()
            url = pg.new_database()
        local_pg = pg is not None or "host=/" in url or "@localhost" in url or "@127.0.0.1" in url
        configs = [("sqlite", f"sqlite:///{tmp.name}/store/arena.db", 1), ("postgresql", url, 1)]
        if n > 1:
            configs.append(("postgresql", url, n))
        for name, config_url, replicas in configs:
            threads = args.threads or max(1, default_threads() // replicas)
            f, row = _configuration(f"{name}-x{replicas}", config_url, replicas, data, model, clients, args,
                                    threads, local_pg and name == "postgresql")
            figures.update({f"{name}_x{replicas}_{k}": v for k, v in f.items()})
            rows.append(row)
    finally:
        clients.close()
        if pg is not None:
            pg.stop()
        tmp.cleanup()
    base = figures["sqlite_x1_ips"]
    figures["ratio"] = figures[f"postgresql_x{n}_ips"] / base
    figures["postgresql_x1_vs_sqlite"] = figures["postgresql_x1_ips"] / base
    figures.update(replicas=float(n), cpus=float(cores), clients=float(args.bench_clients),
                   batch=float(args.replica_batch))
    return {
        "title": (f"arena bench serve --replicas {n}: separate `arena serve` processes ({model_name}; "
                  f"{args.bench_clients} client processes x batch {args.replica_batch}; {cores} CPUs shared by "
                  f"replicas, database and clients; durable commits). CPU us/image over the throughput window. "
                  f"Headline ratio = PostgreSQL x{n} / SQLite x1 images/s."),
        "columns": ["store", "replicas", "images/s", "p50 ms", "p99 ms", "1-img p50 ms", "1-img p99 ms",
                    "CPU us/img replicas", "CPU us/img database", "CPU us/img server side", "CPU us/img clients"],
        "rows": rows,
        "figures": figures,
    }
