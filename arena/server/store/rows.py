"""The store's domain rows and write operations: plain dataclasses, the same for every backend."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from arena.ground.contract import DefenseStatus

SCHEMA_VERSION = 2           # 2: rules v2 (splits, phases, team budgets, organizer actions)
DB_NAME = "arena.db"


class StoreError(RuntimeError):
    """The store cannot be opened or does not match this server's configuration."""


class NameTaken(StoreError):
    """A team name that already belongs to an identity of another role."""


class PhaseClosed(StoreError):
    """A write that the current phase forbids (a submission after the final phase began)."""


class CapReached(StoreError):
    """A team is at a cap the organizer set (accepted defenses per team)."""


PUBLIC, PRIVATE = "public", "private"
SPLITS = (PUBLIC, PRIVATE)
OPEN, FINAL = "open", "final"
PHASES = (OPEN, FINAL)
TEAM, ORGANIZER = "team", "organizer"
ROLES = (TEAM, ORGANIZER)


# ------------------------------------------------------------------ rows


# What every board and status says when the private split comes from public data (rules v3).
DEMO_NOTICE = ("DEMO, NOT A COMPETITION: the private split comes from public data (--private-from-public); "
               "any team could rebuild it (docs/rules.md section 4)")


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
    num_public: int | None = None  # samples [0, num_public) are the public split, the rest private
    # where the private split's images come from (arena.server.evaluation): "secret", "held-out",
    # "public" (a demo: rebuilt from public data), "given", "none"; stores made before rules v3
    # dealt it from public data
    private_source: str = "public"

    def split_slice(self, split: str) -> slice:
        return split_slice(self.num_samples, self.num_public, split)

    @property
    def demo(self) -> bool:
        """The private split comes from public data: a demo, not a competition (rules v3)."""
        private = self.split_slice("private")
        return self.private_source == "public" and private.stop > private.start

    def to_json(self) -> str:
        """As the stores keep it (one meta row, the same text in every backend)."""
        return json.dumps({
            "fingerprint": self.fingerprint, "num_samples": self.num_samples,
            "labels": [int(v) for v in self.labels], "worst_case": [float(v) for v in self.worst_case],
            "class_names": list(self.class_names), "images_blob": self.images_blob, "source": self.source,
            "num_public": self.num_public, "private_source": self.private_source,
        })

    @classmethod
    def from_json(cls, text: str) -> EvaluationMeta:
        d = json.loads(text)
        return cls(fingerprint=d["fingerprint"], num_samples=int(d["num_samples"]),
                   labels=np.asarray(d["labels"], dtype=np.int64),
                   worst_case=np.asarray(d["worst_case"], dtype=np.float64),
                   class_names=tuple(d["class_names"]), images_blob=d["images_blob"], source=d["source"],
                   num_public=d.get("num_public"), private_source=d.get("private_source", "public"))


@dataclass(frozen=True)
class DefenseRow:
    """A submission as stored: accepted or rejected, with its clean correctness per evaluation sample."""

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
    disqualified_reason: str = ""  # set by the organizer; the defense is hidden from the boards


@dataclass(frozen=True)
class RunRow:
    """One attack run of one team on one defense and split."""

    run_id: str
    team: str
    defense: str
    attack: str
    num_samples: int
    budget: int
    started_at: float
    finished_at: float | None
    split: str = PUBLIC          # the evaluation split it attacks; samples are indexed within it
    attack_config_digest: str = ""
    disqualified_reason: str = ""

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


@dataclass(frozen=True)
class StoredRequest:
    """A Predict answer kept for replay: the request's digest, labels and budgets left."""

    digest: bytes
    labels: np.ndarray           # int32 [n]
    remaining: np.ndarray        # uint32 [n]


@dataclass(frozen=True)
class AdversarialRow:
    """The closest verified adversarial of a run and sample."""

    sample: int
    distance: float
    label: int
    image: bytes                 # float32 [3,64,64] little-endian
    found_at: float


@dataclass(frozen=True)
class Action:
    """An organizer's action, recorded with its time and reason (docs/rules.md section 8)."""
    at: float
    organizer: str
    action: str
    target: str
    reason: str


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
    """Adds `count` queries to (run, sample), and to the budget account the run spends (its team,
    defense and split), in the same transaction."""
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
    """The label returned for an image queried for (run, sample), keyed by the digest of its bytes
    (the store's `image_digest`; the column is named image_sha256, from before BLAKE3)."""
    run_id: str
    sample: int
    image_digest: bytes
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
    """Marks a run finished (no more queries or verifications)."""

    run_id: str
    finished_at: float


@dataclass(frozen=True)
class RunSpend:
    """Adds `count` to what the run itself spent on `sample`, and nothing to any budget: with a
    shared ledger (several replicas) the budget was charged by the reservation (`Store.reserve`)."""
    run_id: str
    sample: int
    count: int


WriteOp = Charge | RunSpend | RequestRecord | QueryRecord | AdversarialRecord | FinishRun


def split_slice(num_samples: int, num_public: int | None, split: str) -> slice:
    """A split's samples in an evaluation set kept public first (num_public None: all public)."""
    public = num_samples if num_public is None else int(num_public)
    if split == PUBLIC:
        return slice(0, public)
    if split == PRIVATE:
        return slice(public, num_samples)
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def account_key(team: str, defense: str, split: str) -> str:
    """The budget account of a team on a defense and split (docs/rules.md section 4). Team and
    defense names cannot hold '/', so the key is unambiguous; the stores build the same key in SQL
    (`team || '/' || defense || '/' || split`)."""
    return f"{team}/{defense}/{split}"


def merged_counts(samples, counts) -> tuple[np.ndarray, np.ndarray]:
    """(distinct samples ascending, their summed counts), zero counts dropped: the key order in
    which every backend creates and locks budget rows."""
    samples = np.asarray(samples, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    keep = counts > 0
    unique, inverse = np.unique(samples[keep], return_inverse=True)
    return unique, np.bincount(inverse, weights=counts[keep], minlength=unique.size).astype(np.int64)
