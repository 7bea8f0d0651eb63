"""An accepted defense's clean correctness on the private split, measured after acceptance
(docs/rules.md section 3, rules v3).

Validation runs a submission on public images and probes only, so that no verdict a team sees
before the final phase depends on a private image. The private split's clean correctness is then
measured here, with the defense served like any query (its own worker): a model run that fails
is retried one image at a time, and an image whose run fails alone is misclassified (section 5).
Nothing of it reaches the submitter: the figure is shown by the rules' schedule (the organizer
always, teams from the final phase on); failures go to the server log by exception type only.
"""

from __future__ import annotations

import logging

import numpy as np

from arena.contract import FAILED_LABEL
from arena.server.errors import Unavailable

log = logging.getLogger("arena.private_accuracy")


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
