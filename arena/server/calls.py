"""The core's plain values: what `arena.server.transport` decodes a request into, and what the
rooms answer with. No protobuf here (tests/test_layout.py keeps it so); the transport encodes
each answer into its message.

Image batches stay the zero-copy view the transport parsed (`arena.server.images.RawImages`, or
any object with `shape` and `data`): the query room checks and decodes them at the point the
rules order their checks (after the run is known, and after a replay is recognised), so the
bytes are never copied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Sequence

import numpy as np


@dataclass(frozen=True)
class PredictCall:
    """Predict: `images` an ImageBatch view (shape, data), `sample_indices` one per image."""
    run_id: str
    request_id: str
    images: Any
    sample_indices: Sequence[int]


@dataclass(frozen=True)
class SubmitCall:
    """SubmitAdversarials: adversarial candidates for the run's samples."""
    run_id: str
    images: Any
    sample_indices: Sequence[int]


@dataclass(frozen=True)
class DefenseUpload:
    """SubmitDefense: the metadata, then the ONNX bytes chunk by chunk (the iterator raises
    `BadRequest` when the stream carries anything else)."""
    name: str
    description: str
    chunks: AsyncIterator[bytes]


@dataclass(frozen=True)
class PredictAnswer:
    """Per image: its label, its sample's budget left after this request, the sample it was
    charged to; `replayed` when it is the stored answer of a repeated request id."""
    labels: np.ndarray
    remaining: np.ndarray
    charged_samples: np.ndarray
    replayed: bool


@dataclass
class Verdict:
    """One adversarial's verification (docs/rules.md section 5)."""
    sample_index: int
    label: int
    adversarial: bool
    distance: float
    accepted: bool
    charged: bool
    note: str
    charged_sample: int
    best_distance: float = 0.0


@dataclass(frozen=True)
class DefenseView:
    """A defense as the caller may see it (the private split's figure hidden until it may be shown)."""
    name: str
    team: str
    accepted: bool
    description: str
    sha256: str
    size_bytes: int
    num_classes: int
    clean_accuracy: float
    clean_accuracy_private: float
    rejection_reasons: tuple[str, ...]
    submitted_at: float
    disqualified_reason: str
    serving_mode: str = ""          # "batched" | "per_image" ("" when rejected)


@dataclass
class RunInfo:
    """A run: its header (all ListRuns shows), and for GetRun / StartRun / FinishRun its figures
    per sample (`queries_used` etc. empty in a header)."""
    run_id: str
    defense: str
    attack: str
    team: str
    num_samples: int
    budget_per_sample: int
    finished: bool
    started_at: float
    split: str
    attack_config_digest: str
    disqualified_reason: str
    max_batch: int = 0
    max_message_bytes: int = 0
    num_classes: int = 0
    queries_used: Sequence[int] = field(default_factory=list)
    remaining: Sequence[int] = field(default_factory=list)
    run_queries: Sequence[int] = field(default_factory=list)
    best_distances: Sequence[float] = field(default_factory=list)


@dataclass(frozen=True)
class Samples:
    """A page of the run's split: `images` float32 [N,3,64,64], their true labels."""
    offset: int
    images: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class CompetitionInfo:
    phase: str
    budget_per_sample: int
    public_samples: int
    private_samples: int
    team: str
    role: str
    private_split_source: str
    demo: bool
