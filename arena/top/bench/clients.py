"""The benchmark's client processes (spawned once, driven in lock-step by the parent): each keeps
one ArenaClient per address and reports counts, latencies and its own CPU time. Shared by
`arena bench serve` (arena.top.bench.serve) and its replica mode (arena.top.bench.replicas)."""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import time

import numpy as np


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _client_main(conn, images: np.ndarray) -> None:
    """A client process: runs the commands the parent sends, reports counts and latencies."""
    import http.client

    from arena.ground.client import ArenaClient
    from arena.ground.tuning import tune_malloc

    tune_malloc()
    clients: dict[str, ArenaClient] = {}
    n_images = images.shape[0]
    while True:
        command = conn.recv()
        if command is None:
            break
        if command["kind"] == "grpc":
            address = command["address"]
            if address not in clients:
                clients[address] = ArenaClient(address, command["token"], timeout=120)
            client = clients[address]
            b, run_id = command["batch"], command["run_id"]
            idx = np.arange(b) % n_images
            batch = np.ascontiguousarray(images[idx])
            client.predict_raw(run_id, batch, idx)          # connection warm
            conn.send("ready")
            start_at = conn.recv()
            while time.time() < start_at:
                time.sleep(0.0005)
            deadline = start_at + command["seconds"]
            limit = command.get("requests") or float("inf")
            count, latencies, stamps = 0, [], []
            cpu0 = cpu_seconds()
            while True:
                stamps.append(time.time())
                t0 = time.perf_counter()
                # a fresh request per call: the client's real serialisation cost is part of the path
                client.predict_raw(run_id, batch, idx)
                latencies.append(time.perf_counter() - t0)
                count += b
                if time.time() >= deadline or len(latencies) >= limit:
                    break
                if command.get("stoppable") and conn.poll():   # the parent's "stop"
                    conn.recv()
                    break
            conn.send({"images": count, "elapsed": time.time() - start_at, "latencies": latencies,
                       "stamps": stamps, "cpu": cpu_seconds() - cpu0})
        else:  # "http": the 2018 challenge's shape
            host, port = command["address"].rsplit(":", 1)
            http_conn = http.client.HTTPConnection(host, int(port), timeout=60)
            image = images[0]
            conn.send("ready")
            start_at = conn.recv()
            while time.time() < start_at:
                time.sleep(0.0005)
            deadline = start_at + command["seconds"]
            count = 0
            while True:
                body = json.dumps({"image": image.tolist()})
                http_conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
                response = http_conn.getresponse()
                json.loads(response.read())
                count += 1
                if time.time() >= deadline:
                    break
            http_conn.close()
            conn.send({"images": count, "elapsed": time.time() - start_at, "latencies": []})
    for client in clients.values():
        client.close()


class Clients:
    """Persistent client processes (spawned once), driven in lock-step by the parent."""

    def __init__(self, count: int, images: np.ndarray) -> None:
        ctx = mp.get_context("spawn")
        self.pipes, self.procs = [], []
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_client_main, args=(child, images), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def run(self, commands: list[dict]) -> list[dict]:
        pipes = self.pipes[:len(commands)]
        for pipe, command in zip(pipes, commands):
            pipe.send(command)
        for pipe in pipes:
            if pipe.recv() != "ready":
                raise RuntimeError("a benchmark client failed to start")
        start_at = time.time() + 0.05
        for pipe in pipes:
            pipe.send(start_at)
        return [pipe.recv() for pipe in pipes]

    def grpc(self, server, clients: int, batch: int, seconds: float | None,
             requests: int | None = None, stoppable: bool = False) -> list[dict]:
        """Each client on its own run of the same defense (the batcher merges across runs).
        stoppable: the clients also stop on a "stop" sent down their pipe (see stop())."""
        return self.run([
            {"kind": "grpc", "address": server.address, "token": server.token, "run_id": server.run_ids[k],
             "batch": batch, "seconds": seconds if seconds is not None else 3600.0, "requests": requests,
             "stoppable": stoppable}
            for k in range(clients)
        ])

    def stop(self, count: int) -> None:
        for pipe in self.pipes[:count]:
            pipe.send("stop")

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for proc in self.procs:
            proc.join(10)
