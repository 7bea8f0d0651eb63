"""The store's domain rows and write operations: plain dataclasses, the same for every backend."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arena.contract import DefenseStatus

SCHEMA_VERSION = 1
DB_NAME = "arena.db"


class StoreError(RuntimeError):
    """The store cannot be opened or does not match this server's configuration."""


# ------------------------------------------------------------------ rows


@dataclass(frozen=True)
class EvaluationMeta:
    """The fixed evaluation set a store was created with (images are in the blob store)."""

    fingerprint: str             # sha256 over the images' and labels' bytes
    num_samples: int
    labels: np.ndarray           # int64 [N]
    worst_case: np.ndarray       # float64 [N]
    class_names: tuple[str, ...]
    images_blob: str             # sha256 of the raw float32 [N,3,64,64] bytes
    source: str                  # what --data said, for humans


@dataclass(frozen=True)
class DefenseRow:
    name: str
    team: str
    status: DefenseStatus        # accepted | rejected
    description: str
    sha256: str
    size_bytes: int
    num_classes: int
    clean_accuracy: float
    clean_correct: np.ndarray    # bool [N] (empty when rejected)
    rejection_reasons: tuple[str, ...]
    serving_mode: str            # "batched" | "per_image" ("" when rejected)
    submitted_at: float


@dataclass(frozen=True)
class RunRow:
    run_id: str
    team: str
    defense: str
    attack: str
    num_samples: int
    budget: int
    started_at: float
    finished_at: float | None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


@dataclass(frozen=True)
class StoredRequest:
    digest: bytes
    labels: np.ndarray           # int32 [n]
    remaining: np.ndarray        # uint32 [n]


@dataclass(frozen=True)
class AdversarialRow:
    sample: int
    distance: float
    label: int
    image: bytes                 # float32 [3,64,64] little-endian
    found_at: float


@dataclass(frozen=True)
class Reservation:
    """What `Store.reserve` did: granted (all counts added) or refused (nothing added)."""
    granted: bool
    samples: np.ndarray          # int64, distinct, ascending (the samples with a nonzero count)
    used: np.ndarray             # int64 per sample: the count after the reservation, or as found if refused
    closed: bool = False         # refused because the run named by `run_id` is finished (used: empty)
    replay: bool = False         # refused because `request_id` is answered in `run_id` (used: empty)
    adopted: bool = False        # granted without reserving: an earlier attempt's claim on `request_id`
    mismatch: bool = False       # refused: `request_id` is claimed for a request with another digest


# ------------------------------------------------------------------ write operations


@dataclass(frozen=True)
class Charge:
    """Adds `count` queries to (run, sample)."""
    run_id: str
    sample: int
    count: int


@dataclass(frozen=True)
class RequestRecord:
    """A Predict request's answer, replayed when its request id comes again."""
    run_id: str
    request_id: str
    digest: bytes
    labels: bytes                # int32 little-endian
    remaining: bytes             # uint32 little-endian
    created_at: float


@dataclass(frozen=True)
class QueryRecord:
    """The label returned for an image (sha256 of its bytes) queried for (run, sample)."""
    run_id: str
    sample: int
    image_sha256: bytes
    label: int


@dataclass(frozen=True)
class AdversarialRecord:
    """A verified adversarial; kept only if closer than the one stored for (run, sample)."""
    run_id: str
    sample: int
    distance: float
    label: int
    image: bytes
    found_at: float


@dataclass(frozen=True)
class FinishRun:
    run_id: str
    finished_at: float


WriteOp = Charge | RequestRecord | QueryRecord | AdversarialRecord | FinishRun


def merged_counts(samples, counts) -> tuple[np.ndarray, np.ndarray]:
    """(distinct samples ascending, their summed counts), zero counts dropped: the key order in
    which every backend creates and locks budget rows."""
    samples = np.asarray(samples, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    keep = counts > 0
    unique, inverse = np.unique(samples[keep], return_inverse=True)
    return unique, np.bincount(inverse, weights=counts[keep], minlength=unique.size).astype(np.int64)
