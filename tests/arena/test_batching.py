"""The micro-batcher's order of things: a run's slot is free once its model has run, its labels
only once its group commit is durable, and drain waits for commits too."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from arena.server.batching import MicroBatcher, Workers


class _Model:
    """Labels = the first pixel's value, and a log of the runs (each a batch's first pixels)."""

    def __init__(self) -> None:
        self.runs: list[list[int]] = []

    def labels(self, images, options, timeout_s=None):
        self.runs.append([int(v) for v in images[:, 0, 0, 0]])
        return images[:, 0, 0, 0].astype(np.int32)


class _Writer:
    """A group commit that blocks until the test lets it through (a slow fsync)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.committed: list[list] = []

    def commit_blocking(self, ops) -> None:
        self.gate.wait(10)
        self.committed.append(ops)


def _images(value: int, n: int = 2) -> np.ndarray:
    return np.full((n, 3, 64, 64), value, dtype=np.float32)


def test_next_run_starts_while_the_commit_waits_and_labels_wait_for_it():
    async def scenario():
        model, writer, pool = _Model(), _Writer(), Workers(3)
        batcher = MicroBatcher("d", lambda: model, pool, writer, run_images=2, max_inflight=1)
        try:
            first = batcher.submit(_images(1), lambda r: ["op-1"], lambda: None)
            second = batcher.submit(_images(2), lambda r: ["op-2"], lambda: None)
            # with one slot, the second run may only start once the first model run is done; it
            # must not wait for the first run's commit, which the gate holds
            for _ in range(200):
                if len(model.runs) == 2:
                    break
                await asyncio.sleep(0.01)
            assert model.runs == [[1, 1], [2, 2]]
            assert not first.future.done() and not second.future.done()   # no label before its commit
            drained = asyncio.ensure_future(batcher.drain())
            await asyncio.sleep(0.05)
            assert not drained.done()            # commits are still pending: not idle
            writer.gate.set()
            assert (await first.future).labels.tolist() == [1, 1]
            assert (await second.future).labels.tolist() == [2, 2]
            await asyncio.wait_for(drained, 5)
            assert sorted(writer.committed) == [["op-1"], ["op-2"]]
            assert batcher.stats.runs == 2
        finally:
            writer.gate.set()
            pool.shutdown()

    asyncio.run(scenario())
