"""One entry point per use: `load_split` for training, `load_samples` for evaluation and attacks.

A source is "demo" (the embedded dataset), a tiny-imagenet-200 folder, or (samples only) an .npz.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from defenses.data import embedded, tinyimagenet
from defenses.data.cache import cached_split, default_cache_dir
from arena.ground.contract import in_unit_interval
from defenses.data.split import IMAGE_SIZE, DataError, Split, to_float_chw

DEMO = "demo"
# Images per class of the embedded dataset's splits.
DEMO_PER_CLASS = {"train": 500, "val": 100}

__all__ = ["DEMO", "default_cache_dir", "load_samples", "load_split", "secret_samples"]


def load_split(
    source: str,
    split: str,
    *,
    num_classes: int | None = None,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> Split:
    """The `split` ("train" or "val") of a source; num_classes=None means the source's default
    (10 for the embedded dataset, every class of a Tiny ImageNet tree)."""
    if split not in ("train", "val"):
        raise DataError(f"split must be 'train' or 'val', got {split!r}")
    if source == DEMO:
        classes = 10 if num_classes is None else int(num_classes)
        embedded.check_num_classes(classes)
        key = f"embedded|{classes}|{seed}|{split}|{DEMO_PER_CLASS[split]}"
        return cached_split(
            cache_dir, key, lambda: embedded.generate(classes, split, seed, DEMO_PER_CLASS[split])
        )
    root = Path(source)
    if not root.is_dir():
        raise DataError(f"data source {source!r} is neither 'demo' nor an existing tiny-imagenet-200 folder")
    tinyimagenet.read_wnids(root)  # fail fast, naming the file, before touching the cache
    key = f"tinyimagenet|{root.resolve()}|{tinyimagenet.fingerprint(root)}|{split}|{num_classes}"
    return cached_split(cache_dir, key, lambda: tinyimagenet.read_split(root, split, num_classes))


def balanced_order(labels: np.ndarray) -> np.ndarray:
    """Indices that take classes in turn (first of each class, then second, ...), so that the first
    n samples cover the classes evenly; stable, hence deterministic."""
    rank = np.empty(labels.shape[0], dtype=np.int64)
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        rank[where] = np.arange(where.size)
    return np.lexsort((labels, rank))


def load_samples(
    source: str,
    count: int | None = None,
    *,
    num_classes: int | None = None,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Evaluation samples: (x float32 [n,3,64,64] in [0,1], y int64 [n], class names).

    From "demo" or a Tiny ImageNet folder: the first `count` images of the validation split in
    class-balanced order. From an .npz: its first `count` samples, checked against the contract."""
    if count is not None and count < 1:
        raise DataError(f"the number of samples must be >= 1, got {count}")
    if str(source).endswith(".npz"):
        x, y, names = _read_npz(Path(source))
    else:
        split = load_split(source, "val", num_classes=num_classes, seed=seed, cache_dir=cache_dir)
        order = balanced_order(split.labels)
        if count is not None:
            order = order[:count]
        x, y, names = to_float_chw(split.images[order]), split.labels[order], split.class_names
    if count is not None:
        if count > x.shape[0]:
            raise DataError(f"asked for {count} samples but {source} holds only {x.shape[0]}")
        x, y = x[:count], y[:count]
    return np.ascontiguousarray(x), np.ascontiguousarray(y), names


def secret_samples(count: int, seed: int, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """`count` images of the embedded dataset's "secret" stream for `seed`, class-balanced, in the
    format of `load_samples`. Never cached: the arena draws `seed` secretly and keeps only the
    images (in its store), so nothing on disk or in public code can rebuild them."""
    if count < 1:
        raise DataError(f"the number of samples must be >= 1, got {count}")
    embedded.check_num_classes(num_classes)
    per_class = -(-count // num_classes)
    split = embedded.generate(num_classes, "secret", seed, per_class)
    order = balanced_order(split.labels)[:count]
    return np.ascontiguousarray(to_float_chw(split.images[order])), split.labels[order].copy(), split.class_names


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    if not path.is_file():
        raise DataError(f"sample file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as stored:
            if "x" not in stored or "y" not in stored:
                raise DataError(f"{path} must hold arrays 'x' and 'y', found {sorted(stored.files)}")
            x, y = stored["x"], stored["y"]
            names = tuple(str(n) for n in stored["class_names"]) if "class_names" in stored else None
    except (OSError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"{path} is not a readable .npz file: {error}") from None
    shape = (3, IMAGE_SIZE, IMAGE_SIZE)
    if x.ndim != 4 or x.shape[1:] != shape or x.shape[0] == 0:
        raise DataError(f"{path}: 'x' must be float32 [N,3,64,64] with N >= 1, got shape {x.shape}")
    if x.dtype != np.float32:
        raise DataError(f"{path}: 'x' must be float32, got {x.dtype}")
    if not in_unit_interval(x):
        raise DataError(f"{path}: every value of 'x' must be finite and in [0, 1]")
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise DataError(f"{path}: 'y' must be non-negative integers of shape [{x.shape[0]}], got {y.dtype} {y.shape}")
    if names is None:
        names = tuple(str(i) for i in range(int(y.max()) + 1))
    elif int(y.max()) >= len(names):
        raise DataError(f"{path}: label {int(y.max())} has no entry in 'class_names' ({len(names)} names)")
    return x, y.astype(np.int64), names
