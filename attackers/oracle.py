"""The oracle contract: the one thing an attack may ask of a model is the labels of a batch.

An oracle has `bounds` (always (0, 1) in the arena), `num_classes`, `image_shape` and
`labels(images, sample_indices)`, which classifies a batch of float32 images [n,3,64,64] and
charges each image to the evaluation sample it names. Two implementations behave identically:
`attackers.local.LocalOracle` (an ONNX file in-process) and `attackers.remote.RemoteOracle` (the
arena's Predict on a run).

Budget semantics (docs/rules.md section 4): a request that would take any sample past its budget
is refused whole (`BudgetExceeded`) and charges nothing; so is an invalid request
(`InvalidRequest`). Attacks never talk to an oracle directly: `attackers.tracker.Tracker`
sits in between, counts every query and keeps the best adversarial per sample.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np

from arena.ground.contract import BOUNDS, IMAGE_SHAPE, within_bounds


class OracleError(RuntimeError):
    """The oracle could not answer; the message says why (a server error keeps its status)."""


class InvalidRequest(OracleError, ValueError):
    """The request breaks the image contract (shape, dtype, finite values in bounds); nothing charged."""


class BudgetExceeded(OracleError):
    """The request would take samples past their budget; it was refused whole and charged nothing.

    `sample_indices` names the offending samples where the oracle knows them (else it is empty):
    the samples named by the images that could not be charged. Under the arena's rule an image is
    charged to the sample it is about (`arena.ground.charging`), so these may be samples that still have
    budget of their own, whose queries went into an exhausted sample's neighbourhood."""

    def __init__(self, message: str, sample_indices: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.sample_indices = tuple(int(i) for i in sample_indices)


class Oracle(abc.ABC):
    """Labels only, charged per image to the sample it names."""

    bounds: tuple[float, float] = BOUNDS
    image_shape: tuple[int, ...] = IMAGE_SHAPE

    @property
    @abc.abstractmethod
    def num_classes(self) -> int:
        """The number of classes of the model behind the oracle."""

    @property
    def max_batch(self) -> int | None:
        """The most images one underlying call carries (the oracle splits larger batches itself)."""
        return None

    @abc.abstractmethod
    def labels(self, images: np.ndarray, sample_indices: np.ndarray) -> np.ndarray:
        """int64 [n] labels of float32 images [n, *image_shape], image k charged to sample_indices[k].

        Raises BudgetExceeded or InvalidRequest (nothing charged), or OracleError."""

    def close(self) -> None:
        """Releases what the oracle holds (sessions, channels)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_request(images: np.ndarray, sample_indices: np.ndarray, image_shape: tuple[int, ...],
                  bounds: tuple[float, float] = BOUNDS) -> tuple[np.ndarray, np.ndarray]:
    """The request checks both oracles apply before charging anything: returns (images as
    C-contiguous float32, sample_indices as int64) or raises InvalidRequest naming what is wrong."""
    images = np.asarray(images)
    ids = np.asarray(sample_indices)
    if images.dtype != np.float32:
        raise InvalidRequest(f"images must be float32, got {images.dtype}")
    if images.ndim != 1 + len(image_shape) or tuple(images.shape[1:]) != tuple(image_shape):
        raise InvalidRequest(f"images must have shape [n,{','.join(map(str, image_shape))}], got {list(images.shape)}")
    if ids.ndim != 1 or ids.shape[0] != images.shape[0]:
        raise InvalidRequest(f"need one sample id per image: {images.shape[0]} images, sample_indices of shape {list(ids.shape)}")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise InvalidRequest(f"sample ids must be integers, got {ids.dtype}")
    if ids.size and ids.min() < 0:
        raise InvalidRequest(f"sample ids must be >= 0, got {int(ids.min())}")
    images = np.ascontiguousarray(images)
    if images.size:
        lo, hi = bounds
        if not within_bounds(images, bounds):
            if not np.isfinite(images).all():
                raise InvalidRequest("images must be finite (found NaN or inf)")
            raise InvalidRequest(f"image values must lie in [{lo:g}, {hi:g}], got [{images.min():g}, {images.max():g}]")
    return images, ids.astype(np.int64, copy=False)
