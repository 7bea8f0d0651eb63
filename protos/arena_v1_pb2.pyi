# GENERATED FILE: do not edit. Made from protos/arena_v1.proto by `python -m protos.generate`.
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DefenseStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEFENSE_STATUS_UNSPECIFIED: _ClassVar[DefenseStatus]
    DEFENSE_STATUS_ACCEPTED: _ClassVar[DefenseStatus]
    DEFENSE_STATUS_REJECTED: _ClassVar[DefenseStatus]
DEFENSE_STATUS_UNSPECIFIED: DefenseStatus
DEFENSE_STATUS_ACCEPTED: DefenseStatus
DEFENSE_STATUS_REJECTED: DefenseStatus

class ImageBatch(_message.Message):
    __slots__ = ("shape", "data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class DefenseMetadata(_message.Message):
    __slots__ = ("name", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class SubmitDefenseRequest(_message.Message):
    __slots__ = ("metadata", "chunk")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    metadata: DefenseMetadata
    chunk: bytes
    def __init__(self, metadata: _Optional[_Union[DefenseMetadata, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class Defense(_message.Message):
    __slots__ = ("name", "team", "status", "description", "sha256", "size_bytes", "num_classes", "clean_accuracy", "rejection_reasons", "submitted_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    CLEAN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    REJECTION_REASONS_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    team: str
    status: DefenseStatus
    description: str
    sha256: str
    size_bytes: int
    num_classes: int
    clean_accuracy: float
    rejection_reasons: _containers.RepeatedScalarFieldContainer[str]
    submitted_at: float
    def __init__(self, name: _Optional[str] = ..., team: _Optional[str] = ..., status: _Optional[_Union[DefenseStatus, str]] = ..., description: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., num_classes: _Optional[int] = ..., clean_accuracy: _Optional[float] = ..., rejection_reasons: _Optional[_Iterable[str]] = ..., submitted_at: _Optional[float] = ...) -> None: ...

class SubmitDefenseResponse(_message.Message):
    __slots__ = ("defense",)
    DEFENSE_FIELD_NUMBER: _ClassVar[int]
    defense: Defense
    def __init__(self, defense: _Optional[_Union[Defense, _Mapping]] = ...) -> None: ...

class ListDefensesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDefensesResponse(_message.Message):
    __slots__ = ("defenses",)
    DEFENSES_FIELD_NUMBER: _ClassVar[int]
    defenses: _containers.RepeatedCompositeFieldContainer[Defense]
    def __init__(self, defenses: _Optional[_Iterable[_Union[Defense, _Mapping]]] = ...) -> None: ...

class GetDefenseRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetDefenseResponse(_message.Message):
    __slots__ = ("defense",)
    DEFENSE_FIELD_NUMBER: _ClassVar[int]
    defense: Defense
    def __init__(self, defense: _Optional[_Union[Defense, _Mapping]] = ...) -> None: ...

class RunInfo(_message.Message):
    __slots__ = ("run_id", "defense", "attack", "team", "num_samples", "budget_per_sample", "max_batch", "max_message_bytes", "num_classes", "finished", "queries_used", "best_distances", "started_at", "attack_config_digest")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DEFENSE_FIELD_NUMBER: _ClassVar[int]
    ATTACK_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    BUDGET_PER_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    QUERIES_USED_FIELD_NUMBER: _ClassVar[int]
    BEST_DISTANCES_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTACK_CONFIG_DIGEST_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    defense: str
    attack: str
    team: str
    num_samples: int
    budget_per_sample: int
    max_batch: int
    max_message_bytes: int
    num_classes: int
    finished: bool
    queries_used: _containers.RepeatedScalarFieldContainer[int]
    best_distances: _containers.RepeatedScalarFieldContainer[float]
    started_at: float
    attack_config_digest: str
    def __init__(self, run_id: _Optional[str] = ..., defense: _Optional[str] = ..., attack: _Optional[str] = ..., team: _Optional[str] = ..., num_samples: _Optional[int] = ..., budget_per_sample: _Optional[int] = ..., max_batch: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., num_classes: _Optional[int] = ..., finished: _Optional[bool] = ..., queries_used: _Optional[_Iterable[int]] = ..., best_distances: _Optional[_Iterable[float]] = ..., started_at: _Optional[float] = ..., attack_config_digest: _Optional[str] = ...) -> None: ...

class StartRunRequest(_message.Message):
    __slots__ = ("defense", "attack", "attack_config_digest")
    DEFENSE_FIELD_NUMBER: _ClassVar[int]
    ATTACK_FIELD_NUMBER: _ClassVar[int]
    ATTACK_CONFIG_DIGEST_FIELD_NUMBER: _ClassVar[int]
    defense: str
    attack: str
    attack_config_digest: str
    def __init__(self, defense: _Optional[str] = ..., attack: _Optional[str] = ..., attack_config_digest: _Optional[str] = ...) -> None: ...

class StartRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: RunInfo
    def __init__(self, run: _Optional[_Union[RunInfo, _Mapping]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class GetRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: RunInfo
    def __init__(self, run: _Optional[_Union[RunInfo, _Mapping]] = ...) -> None: ...

class GetRunSamplesRequest(_message.Message):
    __slots__ = ("run_id", "offset", "limit")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    offset: int
    limit: int
    def __init__(self, run_id: _Optional[str] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class GetRunSamplesResponse(_message.Message):
    __slots__ = ("offset", "images", "labels")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    offset: int
    images: ImageBatch
    labels: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, offset: _Optional[int] = ..., images: _Optional[_Union[ImageBatch, _Mapping]] = ..., labels: _Optional[_Iterable[int]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("run_id", "request_id", "sample_indices", "images")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_INDICES_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    request_id: str
    sample_indices: _containers.RepeatedScalarFieldContainer[int]
    images: ImageBatch
    def __init__(self, run_id: _Optional[str] = ..., request_id: _Optional[str] = ..., sample_indices: _Optional[_Iterable[int]] = ..., images: _Optional[_Union[ImageBatch, _Mapping]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("labels", "remaining", "replayed")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedScalarFieldContainer[int]
    remaining: _containers.RepeatedScalarFieldContainer[int]
    replayed: bool
    def __init__(self, labels: _Optional[_Iterable[int]] = ..., remaining: _Optional[_Iterable[int]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class SubmitAdversarialsRequest(_message.Message):
    __slots__ = ("run_id", "sample_indices", "images")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_INDICES_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    sample_indices: _containers.RepeatedScalarFieldContainer[int]
    images: ImageBatch
    def __init__(self, run_id: _Optional[str] = ..., sample_indices: _Optional[_Iterable[int]] = ..., images: _Optional[_Union[ImageBatch, _Mapping]] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("sample_index", "label", "adversarial", "distance", "best_distance", "accepted", "charged", "note")
    SAMPLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ADVERSARIAL_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    BEST_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    CHARGED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    sample_index: int
    label: int
    adversarial: bool
    distance: float
    best_distance: float
    accepted: bool
    charged: bool
    note: str
    def __init__(self, sample_index: _Optional[int] = ..., label: _Optional[int] = ..., adversarial: _Optional[bool] = ..., distance: _Optional[float] = ..., best_distance: _Optional[float] = ..., accepted: _Optional[bool] = ..., charged: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...

class SubmitAdversarialsResponse(_message.Message):
    __slots__ = ("verdicts",)
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    verdicts: _containers.RepeatedCompositeFieldContainer[Verdict]
    def __init__(self, verdicts: _Optional[_Iterable[_Union[Verdict, _Mapping]]] = ...) -> None: ...

class FinishRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class FinishRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: RunInfo
    def __init__(self, run: _Optional[_Union[RunInfo, _Mapping]] = ...) -> None: ...

class RobustAccuracy(_message.Message):
    __slots__ = ("eps", "accuracy")
    EPS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    eps: float
    accuracy: float
    def __init__(self, eps: _Optional[float] = ..., accuracy: _Optional[float] = ...) -> None: ...

class DefenseStanding(_message.Message):
    __slots__ = ("rank", "name", "team", "mean_l2", "median_l2", "clean_accuracy", "robust_accuracy", "attacks_faced", "submitted_at")
    RANK_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    MEAN_L2_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_L2_FIELD_NUMBER: _ClassVar[int]
    CLEAN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ROBUST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ATTACKS_FACED_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    rank: int
    name: str
    team: str
    mean_l2: float
    median_l2: float
    clean_accuracy: float
    robust_accuracy: _containers.RepeatedCompositeFieldContainer[RobustAccuracy]
    attacks_faced: _containers.RepeatedScalarFieldContainer[str]
    submitted_at: float
    def __init__(self, rank: _Optional[int] = ..., name: _Optional[str] = ..., team: _Optional[str] = ..., mean_l2: _Optional[float] = ..., median_l2: _Optional[float] = ..., clean_accuracy: _Optional[float] = ..., robust_accuracy: _Optional[_Iterable[_Union[RobustAccuracy, _Mapping]]] = ..., attacks_faced: _Optional[_Iterable[str]] = ..., submitted_at: _Optional[float] = ...) -> None: ...

class AttackStanding(_message.Message):
    __slots__ = ("rank", "attack", "mean_l2", "defenses_faced", "teams")
    RANK_FIELD_NUMBER: _ClassVar[int]
    ATTACK_FIELD_NUMBER: _ClassVar[int]
    MEAN_L2_FIELD_NUMBER: _ClassVar[int]
    DEFENSES_FACED_FIELD_NUMBER: _ClassVar[int]
    TEAMS_FIELD_NUMBER: _ClassVar[int]
    rank: int
    attack: str
    mean_l2: float
    defenses_faced: int
    teams: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rank: _Optional[int] = ..., attack: _Optional[str] = ..., mean_l2: _Optional[float] = ..., defenses_faced: _Optional[int] = ..., teams: _Optional[_Iterable[str]] = ...) -> None: ...

class GetLeaderboardRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetLeaderboardResponse(_message.Message):
    __slots__ = ("defenses", "attacks", "num_samples")
    DEFENSES_FIELD_NUMBER: _ClassVar[int]
    ATTACKS_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    defenses: _containers.RepeatedCompositeFieldContainer[DefenseStanding]
    attacks: _containers.RepeatedCompositeFieldContainer[AttackStanding]
    num_samples: int
    def __init__(self, defenses: _Optional[_Iterable[_Union[DefenseStanding, _Mapping]]] = ..., attacks: _Optional[_Iterable[_Union[AttackStanding, _Mapping]]] = ..., num_samples: _Optional[int] = ...) -> None: ...

class GetReportRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetReportResponse(_message.Message):
    __slots__ = ("html",)
    HTML_FIELD_NUMBER: _ClassVar[int]
    html: str
    def __init__(self, html: _Optional[str] = ...) -> None: ...
