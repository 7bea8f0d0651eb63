"""The arena's two fixed evaluation splits (docs/rules.md section 4), pinned in the store.

`load` draws public + private samples from the dataset's validation split and deals them into
the two splits with a fixed permutation: deterministic, disjoint, from one distribution. The
images are kept as one array, public first: samples [0, num_public) are the public split, the
rest the private one; a run's sample i is `split_slice(split).start + i`.

The first time a store is served, the images go into the blob store and their fingerprint,
labels, class names, worst-case distances and the split point into the database; a later start
with a different evaluation set is refused (run ids, budgets and distances index samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha256

import numpy as np

from arena.contract import IMAGE_SHAPE, worst_case_distances
from arena.server.store import EvaluationMeta, Store, StoreError
from arena.server.store.rows import split_slice

SPLIT_SEED = 2018   # the permutation that deals samples into the public and private splits


@dataclass(frozen=True)
class EvaluationData:
    """Both splits' images, labels and worst-case distances, public first."""

    images: np.ndarray          # float32 [N,3,64,64], read-only
    labels: np.ndarray          # int64 [N]
    class_names: tuple[str, ...]
    worst_case: np.ndarray      # float64 [N]
    fingerprint: str
    num_public: int | None = None   # None: every sample is public (no private split)

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    def split_slice(self, split: str) -> slice:
        return split_slice(self.num_samples, self.num_public, split)

    def split_size(self, split: str) -> int:
        part = self.split_slice(split)
        return part.stop - part.start


def fingerprint(images: np.ndarray, labels: np.ndarray, num_public: int | None = None) -> str:
    h = sha256()
    h.update(np.ascontiguousarray(images, dtype="<f4").tobytes())
    h.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    if num_public is not None:
        h.update(f"public:{int(num_public)}".encode())
    return h.hexdigest()


def from_arrays(images: np.ndarray, labels: np.ndarray, class_names=None, num_public: int | None = None) -> EvaluationData:
    """Arrays, public split first (`num_public` samples; None: all of them)."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE or labels.shape != (images.shape[0],):
        raise ValueError(f"evaluation set: images must be float32 [N,3,64,64] and labels [N], "
                         f"got {images.shape} and {labels.shape}")
    if class_names is None:
        class_names = tuple(str(i) for i in range(int(labels.max()) + 1 if labels.size else 0))
    if num_public is not None and not 0 <= int(num_public) <= labels.shape[0]:
        raise ValueError(f"evaluation set: num_public={num_public} is outside [0, {labels.shape[0]}]")
    images.setflags(write=False)
    return EvaluationData(images, labels, tuple(class_names), worst_case_distances(images),
                          fingerprint(images, labels, num_public), None if num_public is None else int(num_public))


def load(data: str, public: int, private: int) -> EvaluationData:
    """`--data {demo|PATH}`, `--public-samples P`, `--private-samples Q` -> P + Q validation
    samples dealt into the two splits by a fixed permutation."""
    from defenses.data import load_samples

    if public < 1 or private < 0:
        raise ValueError(f"need at least 1 public sample and 0 or more private ones, got {public} and {private}")
    x, y, names = load_samples(data, public + private)
    if len(y) < public + private:
        raise ValueError(f"--data {data!r} has only {len(y)} validation samples, {public} + {private} were asked")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    return from_arrays(x[order], y[order], names, num_public=public)


def pin(store: Store, evaluation: EvaluationData, source: str) -> None:
    """Records the evaluation set in a new store, or checks it is the one the store was made with."""
    meta = store.evaluation()
    if meta is None:
        blob = store.blobs.put(np.ascontiguousarray(evaluation.images, dtype="<f4").tobytes())
        store.init_evaluation(EvaluationMeta(
            fingerprint=evaluation.fingerprint, num_samples=evaluation.num_samples, labels=evaluation.labels,
            worst_case=evaluation.worst_case, class_names=evaluation.class_names, images_blob=blob, source=source,
            num_public=evaluation.num_public,
        ))
        return
    if meta.fingerprint != evaluation.fingerprint:
        raise StoreError(
            f"this store was created with another evaluation set ({meta.num_samples} samples from "
            f"{meta.source!r}); this server was given {evaluation.num_samples} samples from {source!r}. "
            "Use the same --data, --public-samples and --private-samples, or a new --store."
        )


def from_store(store: Store) -> EvaluationData:
    """The evaluation set a store was created with (no access to the original data needed)."""
    meta = store.evaluation()
    if meta is None:
        raise StoreError("this store has no evaluation set yet (it has never been served)")
    images = np.frombuffer(store.blobs.get(meta.images_blob), dtype="<f4").reshape(meta.num_samples, *IMAGE_SHAPE)
    return EvaluationData(images, meta.labels, meta.class_names, meta.worst_case, meta.fingerprint, meta.num_public)
