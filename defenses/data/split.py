"""The in-memory form of a dataset split and the conversions to the arena's image format."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 64


class DataError(ValueError):
    """A dataset is missing, incomplete or corrupt; the message names the file."""


@dataclass(frozen=True)
class Split:
    """One split of a dataset as uint8 HWC images, labels and class names."""

    images: np.ndarray              # uint8 [N, 64, 64, 3]
    labels: np.ndarray              # int64 [N], in [0, num_classes)
    class_names: tuple[str, ...]    # human-readable, indexed by label

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
            raise DataError(f"images must be uint8 [N,{IMAGE_SIZE},{IMAGE_SIZE},3], got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(f"labels must be [N={self.images.shape[0]}], got {self.labels.shape}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def to_float_chw(images: np.ndarray) -> np.ndarray:
    """uint8 [N,H,W,3] -> float32 [N,3,H,W] in [0, 1] (the arena's image format)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


