"""The arena's fixed evaluation set (docs/rules.md section 4), pinned in the store.

The first time a store is served, the evaluation images go into the blob store and their
fingerprint, labels, class names and worst-case distances into the database; a later start
with a different evaluation set is refused (run ids, budgets and distances index samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha256

import numpy as np

from arena.server.store import EvaluationMeta, Store, StoreError
from arena.contract import IMAGE_SHAPE, worst_case_distances


@dataclass(frozen=True)
class EvaluationData:
    images: np.ndarray          # float32 [N,3,64,64], read-only
    labels: np.ndarray          # int64 [N]
    class_names: tuple[str, ...]
    worst_case: np.ndarray      # float64 [N]
    fingerprint: str

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])


def fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    h = sha256()
    h.update(np.ascontiguousarray(images, dtype="<f4").tobytes())
    h.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return h.hexdigest()


def from_arrays(images: np.ndarray, labels: np.ndarray, class_names=None) -> EvaluationData:
    images = np.ascontiguousarray(images, dtype=np.float32)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE or labels.shape != (images.shape[0],):
        raise ValueError(f"evaluation set: images must be float32 [N,3,64,64] and labels [N], "
                         f"got {images.shape} and {labels.shape}")
    if class_names is None:
        class_names = tuple(str(i) for i in range(int(labels.max()) + 1 if labels.size else 0))
    images.setflags(write=False)
    return EvaluationData(images, labels, tuple(class_names), worst_case_distances(images),
                          fingerprint(images, labels))


def load(data: str, eval_samples: int | None) -> EvaluationData:
    """`--data {demo|PATH}` and `--eval-samples N` -> the first N validation samples."""
    from defenses.data import load_samples

    x, y, names = load_samples(data, eval_samples)
    return from_arrays(x, y, names)


def pin(store: Store, evaluation: EvaluationData, source: str) -> None:
    """Records the evaluation set in a new store, or checks it is the one the store was made with."""
    meta = store.evaluation()
    if meta is None:
        blob = store.blobs.put(np.ascontiguousarray(evaluation.images, dtype="<f4").tobytes())
        store.init_evaluation(EvaluationMeta(
            fingerprint=evaluation.fingerprint, num_samples=evaluation.num_samples, labels=evaluation.labels,
            worst_case=evaluation.worst_case, class_names=evaluation.class_names, images_blob=blob, source=source,
        ))
        return
    if meta.fingerprint != evaluation.fingerprint:
        raise StoreError(
            f"this store was created with another evaluation set ({meta.num_samples} samples from "
            f"{meta.source!r}); this server was given {evaluation.num_samples} samples from {source!r}. "
            "Use the same --data and --eval-samples, or a new --store."
        )


def from_store(store: Store) -> EvaluationData:
    """The evaluation set a store was created with (no access to the original data needed)."""
    meta = store.evaluation()
    if meta is None:
        raise StoreError("this store has no evaluation set yet (it has never been served)")
    images = np.frombuffer(store.blobs.get(meta.images_blob), dtype="<f4").reshape(meta.num_samples, *IMAGE_SHAPE)
    return EvaluationData(images, meta.labels, meta.class_names, meta.worst_case, meta.fingerprint)
