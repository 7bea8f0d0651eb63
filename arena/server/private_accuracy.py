"""An accepted defense's clean correctness on the private split, measured after acceptance
(docs/rules.md section 3, rules v3).

Validation runs a submission on public images and probes only, so that no verdict a team sees
before the final phase depends on a private image. The private split's clean correctness is then
measured here, with the defense served like any query (its own worker): a model run that fails
is retried one image at a time, and an image whose run fails alone is misclassified (section 5).
Nothing of it reaches the submitter: the figure is shown by the rules' schedule (the organizer
always, teams from the final phase on); failures go to the server log by exception type only.

`PrivateAccuracy` runs the measurements in the background of the server's event loop: one after
each acceptance (`measure_later`), and after a restart one for every accepted defense whose
private part is still missing (`resume`; the store keeps a defense's public part from validation
until then, and the private board leaves it out).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import numpy as np

from arena.ground.contract import FAILED_LABEL, DefenseStatus
from arena.server.errors import Unavailable
from arena.server.store import PRIVATE, Store

log = logging.getLogger("arena.private_accuracy")

ATTEMPTS = 4          # tries at one measurement when no worker can be started (1, 2, 4 s apart)


class PrivateAccuracy:
    """The background measurements of one arena. `model(name)` gives a served defense (blocking),
    `io(fn, *args)` runs blocking work off the loop."""

    def __init__(self, store: Store, evaluation, model: Callable[[str], object],
                 io: Callable[..., Awaitable], chunk: int) -> None:
        self._store, self._evaluation, self._model, self._io, self._chunk = store, evaluation, model, io, chunk
        self._tasks: set[asyncio.Task] = set()

    def measure_later(self, name: str) -> None:
        """After the verdict: neither the verdict nor its timing depends on a private image."""
        if self._evaluation.split_size(PRIVATE) == 0:
            return
        task = asyncio.get_running_loop().create_task(self._measure(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def resume(self) -> None:
        """After a restart: every accepted defense whose private part was not measured yet."""
        n = self._evaluation.num_samples
        for row in self._store.list_defenses():
            if row.status == DefenseStatus.ACCEPTED and np.asarray(row.clean_correct).size < n:
                self.measure_later(row.name)

    def cancel(self) -> None:
        """Shutdown: a measurement cut short is done again at the next start."""
        for task in list(self._tasks):
            task.cancel()

    async def measured(self) -> None:
        """Waits for the measurements in flight (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _measure(self, name: str) -> None:
        private = self._evaluation.split_slice(PRIVATE)
        images, labels = self._evaluation.images[private], self._evaluation.labels[private]
        for attempt in range(ATTEMPTS):
            try:
                correct = await self._io(lambda: private_correct(self._model(name), images, labels, self._chunk))
                break
            except Exception as error:   # no worker could be started: try again a little later
                log.warning("defense %s: private clean accuracy not measured yet (%s)", name, type(error).__name__)
                await asyncio.sleep(2 ** attempt)
        else:
            log.error("defense %s: private clean accuracy not measured; the next start tries again", name)
            return
        row = await self._io(self._store.get_defense, name)
        if row is None or row.status != DefenseStatus.ACCEPTED:
            return
        public = np.asarray(row.clean_correct, dtype=np.bool_)[:private.start]
        await self._io(self._store.set_clean_correct, name, np.concatenate([public, correct]))
        log.info("defense %s: private clean accuracy %.3f", name, float(correct.mean()) if correct.size else 0.0)


def private_correct(model, images: np.ndarray, labels: np.ndarray, chunk: int) -> np.ndarray:
    """bool [n]: whether `model` (anything with `labels(images)`) classifies each image correctly.
    Blocking. Raises Unavailable when the defense cannot be run at all (try again later)."""
    correct = np.zeros(labels.shape[0], dtype=np.bool_)
    for start in range(0, labels.shape[0], max(1, chunk)):
        part = slice(start, min(start + max(1, chunk), labels.shape[0]))
        got = _labels(model, images[part])
        if got is None:   # one image's failure must not cost the others: each alone
            got = np.array([_one(model, image) for image in images[part]], dtype=np.int64)
        correct[part] = got.astype(np.int64) == labels[part]
    return correct


def _one(model, image: np.ndarray) -> int:
    got = _labels(model, image[None])
    return FAILED_LABEL if got is None else int(got[0])


def _labels(model, images: np.ndarray) -> np.ndarray | None:
    try:
        return np.asarray(model.labels(images))
    except Unavailable:
        raise
    except Exception as error:   # ORT failure, crash or time-out: for the operator's log only
        log.warning("defense %s failed on %d private images (%s)", getattr(model, "name", "?"), images.shape[0],
                    type(error).__name__)
        return None
