"""A one-time cache of decoded or generated splits as .npz files, so later epochs and runs never
decode JPEGs or draw images again. Writes are atomic (temporary file, then rename)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from defenses.data.split import Split

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """$ARENA_CACHE_DIR, else ~/.cache/robustness-arena."""
    configured = os.environ.get("ARENA_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "robustness-arena"


def cache_path(cache_dir: Path, key: str) -> Path:
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{key}".encode()).hexdigest()[:16]
    return Path(cache_dir) / f"split-{digest}.npz"


def cached_split(cache_dir: Path | None, key: str, build: Callable[[], Split]) -> Split:
    """The split stored under `key`, built and stored on first use."""
    if cache_dir is None:
        cache_dir = default_cache_dir()
    path = cache_path(cache_dir, key)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return Split(
                    images=stored["images"],
                    labels=stored["labels"],
                    class_names=tuple(str(n) for n in stored["class_names"]),
                )
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a damaged cache entry is rebuilt, never trusted
    split = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
            np.savez(handle, images=split.images, labels=split.labels, class_names=np.array(split.class_names))
        os.replace(handle.name, path)
    except OSError:
        pass  # an unwritable cache only costs time
    return split
