# GENERATED FILE: do not edit. Made from protos/arena_v1.proto by `python -m protos.generate`.
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Split(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPLIT_UNSPECIFIED: _ClassVar[Split]
    SPLIT_PUBLIC: _ClassVar[Split]
    SPLIT_PRIVATE: _ClassVar[Split]

class Phase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PHASE_UNSPECIFIED: _ClassVar[Phase]
    PHASE_OPEN: _ClassVar[Phase]
    PHASE_FINAL: _ClassVar[Phase]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_TEAM: _ClassVar[Role]
    ROLE_ORGANIZER: _ClassVar[Role]

class DefenseStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEFENSE_STATUS_UNSPECIFIED: _ClassVar[DefenseStatus]
    DEFENSE_STATUS_ACCEPTED: _ClassVar[DefenseStatus]
    DEFENSE_STATUS_REJECTED: _ClassVar[DefenseStatus]
SPLIT_UNSPECIFIED: Split
SPLIT_PUBLIC: Split
SPLIT_PRIVATE: Split
PHASE_UNSPECIFIED: Phase
PHASE_OPEN: Phase
PHASE_FINAL: Phase
ROLE_UNSPECIFIED: Role
ROLE_TEAM: Role
ROLE_ORGANIZER: Role
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

class Competition(_message.Message):
    __slots__ = ("phase", "budget_per_sample", "public_samples", "private_samples", "team", "role", "private_split_source", "demo")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    BUDGET_PER_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_SPLIT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    DEMO_FIELD_NUMBER: _ClassVar[int]
    phase: Phase
    budget_per_sample: int
    public_samples: int
    private_samples: int
    team: str
    role: Role
    private_split_source: str
    demo: bool
    def __init__(self, phase: _Optional[_Union[Phase, str]] = ..., budget_per_sample: _Optional[int] = ..., public_samples: _Optional[int] = ..., private_samples: _Optional[int] = ..., team: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., private_split_source: _Optional[str] = ..., demo: _Optional[bool] = ...) -> None: ...

class GetCompetitionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCompetitionResponse(_message.Message):
    __slots__ = ("competition",)
    COMPETITION_FIELD_NUMBER: _ClassVar[int]
    competition: Competition
    def __init__(self, competition: _Optional[_Union[Competition, _Mapping]] = ...) -> None: ...

class SetPhaseRequest(_message.Message):
    __slots__ = ("phase", "reason")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    phase: Phase
    reason: str
    def __init__(self, phase: _Optional[_Union[Phase, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class SetPhaseResponse(_message.Message):
    __slots__ = ("competition",)
    COMPETITION_FIELD_NUMBER: _ClassVar[int]
    competition: Competition
    def __init__(self, competition: _Optional[_Union[Competition, _Mapping]] = ...) -> None: ...

class SetBudgetRequest(_message.Message):
    __slots__ = ("budget_per_sample", "reason")
    BUDGET_PER_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    budget_per_sample: int
    reason: str
    def __init__(self, budget_per_sample: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class SetBudgetResponse(_message.Message):
    __slots__ = ("competition",)
    COMPETITION_FIELD_NUMBER: _ClassVar[int]
    competition: Competition
    def __init__(self, competition: _Optional[_Union[Competition, _Mapping]] = ...) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ("team", "role", "reason")
    TEAM_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    team: str
    role: Role
    reason: str
    def __init__(self, team: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class CreateTokenResponse(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class RevokeTokensRequest(_message.Message):
    __slots__ = ("team", "reason")
    TEAM_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    team: str
    reason: str
    def __init__(self, team: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeTokensResponse(_message.Message):
    __slots__ = ("revoked",)
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    revoked: int
    def __init__(self, revoked: _Optional[int] = ...) -> None: ...

class DisqualifyRequest(_message.Message):
    __slots__ = ("defense", "run_id", "reason")
    DEFENSE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    defense: str
    run_id: str
    reason: str
    def __init__(self, defense: _Optional[str] = ..., run_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DisqualifyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Action(_message.Message):
    __slots__ = ("at", "organizer", "action", "target", "reason")
    AT_FIELD_NUMBER: _ClassVar[int]
    ORGANIZER_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    at: float
    organizer: str
    action: str
    target: str
    reason: str
    def __init__(self, at: _Optional[float] = ..., organizer: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListActionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListActionsResponse(_message.Message):
    __slots__ = ("actions",)
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedCompositeFieldContainer[Action]
    def __init__(self, actions: _Optional[_Iterable[_Union[Action, _Mapping]]] = ...) -> None: ...

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
    __slots__ = ("name", "team", "status", "description", "sha256", "size_bytes", "num_classes", "clean_accuracy", "rejection_reasons", "submitted_at", "clean_accuracy_private", "disqualified_reason", "serving_mode")
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
    CLEAN_ACCURACY_PRIVATE_FIELD_NUMBER: _ClassVar[int]
    DISQUALIFIED_REASON_FIELD_NUMBER: _ClassVar[int]
    SERVING_MODE_FIELD_NUMBER: _ClassVar[int]
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
    clean_accuracy_private: float
    disqualified_reason: str
    serving_mode: str
    def __init__(self, name: _Optional[str] = ..., team: _Optional[str] = ..., status: _Optional[_Union[DefenseStatus, str]] = ..., description: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., num_classes: _Optional[int] = ..., clean_accuracy: _Optional[float] = ..., rejection_reasons: _Optional[_Iterable[str]] = ..., submitted_at: _Optional[float] = ..., clean_accuracy_private: _Optional[float] = ..., disqualified_reason: _Optional[str] = ..., serving_mode: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("run_id", "defense", "attack", "team", "num_samples", "budget_per_sample", "max_batch", "max_message_bytes", "num_classes", "finished", "queries_used", "best_distances", "started_at", "split", "remaining", "run_queries", "attack_config_digest", "disqualified_reason")
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
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    RUN_QUERIES_FIELD_NUMBER: _ClassVar[int]
    ATTACK_CONFIG_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DISQUALIFIED_REASON_FIELD_NUMBER: _ClassVar[int]
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
    split: Split
    remaining: _containers.RepeatedScalarFieldContainer[int]
    run_queries: _containers.RepeatedScalarFieldContainer[int]
    attack_config_digest: str
    disqualified_reason: str
    def __init__(self, run_id: _Optional[str] = ..., defense: _Optional[str] = ..., attack: _Optional[str] = ..., team: _Optional[str] = ..., num_samples: _Optional[int] = ..., budget_per_sample: _Optional[int] = ..., max_batch: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., num_classes: _Optional[int] = ..., finished: _Optional[bool] = ..., queries_used: _Optional[_Iterable[int]] = ..., best_distances: _Optional[_Iterable[float]] = ..., started_at: _Optional[float] = ..., split: _Optional[_Union[Split, str]] = ..., remaining: _Optional[_Iterable[int]] = ..., run_queries: _Optional[_Iterable[int]] = ..., attack_config_digest: _Optional[str] = ..., disqualified_reason: _Optional[str] = ...) -> None: ...

class StartRunRequest(_message.Message):
    __slots__ = ("defense", "attack", "split", "attack_config_digest")
    DEFENSE_FIELD_NUMBER: _ClassVar[int]
    ATTACK_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    ATTACK_CONFIG_DIGEST_FIELD_NUMBER: _ClassVar[int]
    defense: str
    attack: str
    split: Split
    attack_config_digest: str
    def __init__(self, defense: _Optional[str] = ..., attack: _Optional[str] = ..., split: _Optional[_Union[Split, str]] = ..., attack_config_digest: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("labels", "remaining", "replayed", "charged_samples")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    CHARGED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedScalarFieldContainer[int]
    remaining: _containers.RepeatedScalarFieldContainer[int]
    replayed: bool
    charged_samples: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, labels: _Optional[_Iterable[int]] = ..., remaining: _Optional[_Iterable[int]] = ..., replayed: _Optional[bool] = ..., charged_samples: _Optional[_Iterable[int]] = ...) -> None: ...

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
    __slots__ = ("sample_index", "label", "adversarial", "distance", "best_distance", "accepted", "charged", "note", "charged_sample")
    SAMPLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ADVERSARIAL_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    BEST_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    CHARGED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    CHARGED_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    sample_index: int
    label: int
    adversarial: bool
    distance: float
    best_distance: float
    accepted: bool
    charged: bool
    note: str
    charged_sample: int
    def __init__(self, sample_index: _Optional[int] = ..., label: _Optional[int] = ..., adversarial: _Optional[bool] = ..., distance: _Optional[float] = ..., best_distance: _Optional[float] = ..., accepted: _Optional[bool] = ..., charged: _Optional[bool] = ..., note: _Optional[str] = ..., charged_sample: _Optional[int] = ...) -> None: ...

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

class ListRunsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunInfo]
    def __init__(self, runs: _Optional[_Iterable[_Union[RunInfo, _Mapping]]] = ...) -> None: ...

class RobustAccuracy(_message.Message):
    __slots__ = ("eps", "accuracy")
    EPS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    eps: float
    accuracy: float
    def __init__(self, eps: _Optional[float] = ..., accuracy: _Optional[float] = ...) -> None: ...

class DefenseStanding(_message.Message):
    __slots__ = ("rank", "name", "team", "mean_l2", "median_l2", "clean_accuracy", "robust_accuracy", "attacks_faced", "submitted_at", "mean_ci_low", "mean_ci_high", "diff_next", "diff_next_ci_low", "diff_next_ci_high", "separated_from_next", "diff_next_p", "covered_samples", "unbroken", "faced", "referee_covered")
    RANK_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    MEAN_L2_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_L2_FIELD_NUMBER: _ClassVar[int]
    CLEAN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ROBUST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ATTACKS_FACED_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    MEAN_CI_LOW_FIELD_NUMBER: _ClassVar[int]
    MEAN_CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    DIFF_NEXT_FIELD_NUMBER: _ClassVar[int]
    DIFF_NEXT_CI_LOW_FIELD_NUMBER: _ClassVar[int]
    DIFF_NEXT_CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    SEPARATED_FROM_NEXT_FIELD_NUMBER: _ClassVar[int]
    DIFF_NEXT_P_FIELD_NUMBER: _ClassVar[int]
    COVERED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    UNBROKEN_FIELD_NUMBER: _ClassVar[int]
    FACED_FIELD_NUMBER: _ClassVar[int]
    REFEREE_COVERED_FIELD_NUMBER: _ClassVar[int]
    rank: int
    name: str
    team: str
    mean_l2: float
    median_l2: float
    clean_accuracy: float
    robust_accuracy: _containers.RepeatedCompositeFieldContainer[RobustAccuracy]
    attacks_faced: _containers.RepeatedScalarFieldContainer[str]
    submitted_at: float
    mean_ci_low: float
    mean_ci_high: float
    diff_next: float
    diff_next_ci_low: float
    diff_next_ci_high: float
    separated_from_next: bool
    diff_next_p: float
    covered_samples: int
    unbroken: int
    faced: _containers.RepeatedCompositeFieldContainer[AttackFaced]
    referee_covered: bool
    def __init__(self, rank: _Optional[int] = ..., name: _Optional[str] = ..., team: _Optional[str] = ..., mean_l2: _Optional[float] = ..., median_l2: _Optional[float] = ..., clean_accuracy: _Optional[float] = ..., robust_accuracy: _Optional[_Iterable[_Union[RobustAccuracy, _Mapping]]] = ..., attacks_faced: _Optional[_Iterable[str]] = ..., submitted_at: _Optional[float] = ..., mean_ci_low: _Optional[float] = ..., mean_ci_high: _Optional[float] = ..., diff_next: _Optional[float] = ..., diff_next_ci_low: _Optional[float] = ..., diff_next_ci_high: _Optional[float] = ..., separated_from_next: _Optional[bool] = ..., diff_next_p: _Optional[float] = ..., covered_samples: _Optional[int] = ..., unbroken: _Optional[int] = ..., faced: _Optional[_Iterable[_Union[AttackFaced, _Mapping]]] = ..., referee_covered: _Optional[bool] = ...) -> None: ...

class AttackFaced(_message.Message):
    __slots__ = ("attack", "budget", "samples")
    ATTACK_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    attack: str
    budget: int
    samples: int
    def __init__(self, attack: _Optional[str] = ..., budget: _Optional[int] = ..., samples: _Optional[int] = ...) -> None: ...

class AttackStanding(_message.Message):
    __slots__ = ("rank", "attack", "mean_l2", "defenses_faced", "teams", "team", "queries", "mean_ci_low", "mean_ci_high", "diff_next", "diff_next_ci_low", "diff_next_ci_high", "separated_from_next", "diff_next_p", "budget", "referee", "defenses_listed", "own_defenses")
    RANK_FIELD_NUMBER: _ClassVar[int]
    ATTACK_FIELD_NUMBER: _ClassVar[int]
    MEAN_L2_FIELD_NUMBER: _ClassVar[int]
    DEFENSES_FACED_FIELD_NUMBER: _ClassVar[int]
    TEAMS_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    MEAN_CI_LOW_FIELD_NUMBER: _ClassVar[int]
    MEAN_CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    DIFF_NEXT_FIELD_NUMBER: _ClassVar[int]
    DIFF_NEXT_CI_LOW_FIELD_NUMBER: _ClassVar[int]
    DIFF_NEXT_CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    SEPARATED_FROM_NEXT_FIELD_NUMBER: _ClassVar[int]
    DIFF_NEXT_P_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    REFEREE_FIELD_NUMBER: _ClassVar[int]
    DEFENSES_LISTED_FIELD_NUMBER: _ClassVar[int]
    OWN_DEFENSES_FIELD_NUMBER: _ClassVar[int]
    rank: int
    attack: str
    mean_l2: float
    defenses_faced: int
    teams: _containers.RepeatedScalarFieldContainer[str]
    team: str
    queries: int
    mean_ci_low: float
    mean_ci_high: float
    diff_next: float
    diff_next_ci_low: float
    diff_next_ci_high: float
    separated_from_next: bool
    diff_next_p: float
    budget: int
    referee: bool
    defenses_listed: int
    own_defenses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rank: _Optional[int] = ..., attack: _Optional[str] = ..., mean_l2: _Optional[float] = ..., defenses_faced: _Optional[int] = ..., teams: _Optional[_Iterable[str]] = ..., team: _Optional[str] = ..., queries: _Optional[int] = ..., mean_ci_low: _Optional[float] = ..., mean_ci_high: _Optional[float] = ..., diff_next: _Optional[float] = ..., diff_next_ci_low: _Optional[float] = ..., diff_next_ci_high: _Optional[float] = ..., separated_from_next: _Optional[bool] = ..., diff_next_p: _Optional[float] = ..., budget: _Optional[int] = ..., referee: _Optional[bool] = ..., defenses_listed: _Optional[int] = ..., own_defenses: _Optional[_Iterable[str]] = ...) -> None: ...

class Disqualified(_message.Message):
    __slots__ = ("kind", "name", "team", "reason", "detail")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    team: str
    reason: str
    detail: str
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., team: _Optional[str] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class GetLeaderboardRequest(_message.Message):
    __slots__ = ("split",)
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    split: Split
    def __init__(self, split: _Optional[_Union[Split, str]] = ...) -> None: ...

class GetLeaderboardResponse(_message.Message):
    __slots__ = ("defenses", "attacks", "num_samples", "split", "disqualified", "bootstrap_resamples", "fill_cap", "attack_defenses", "attack_set_rule", "notice")
    DEFENSES_FIELD_NUMBER: _ClassVar[int]
    ATTACKS_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    DISQUALIFIED_FIELD_NUMBER: _ClassVar[int]
    BOOTSTRAP_RESAMPLES_FIELD_NUMBER: _ClassVar[int]
    FILL_CAP_FIELD_NUMBER: _ClassVar[int]
    ATTACK_DEFENSES_FIELD_NUMBER: _ClassVar[int]
    ATTACK_SET_RULE_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    defenses: _containers.RepeatedCompositeFieldContainer[DefenseStanding]
    attacks: _containers.RepeatedCompositeFieldContainer[AttackStanding]
    num_samples: int
    split: Split
    disqualified: _containers.RepeatedCompositeFieldContainer[Disqualified]
    bootstrap_resamples: int
    fill_cap: float
    attack_defenses: _containers.RepeatedScalarFieldContainer[str]
    attack_set_rule: str
    notice: str
    def __init__(self, defenses: _Optional[_Iterable[_Union[DefenseStanding, _Mapping]]] = ..., attacks: _Optional[_Iterable[_Union[AttackStanding, _Mapping]]] = ..., num_samples: _Optional[int] = ..., split: _Optional[_Union[Split, str]] = ..., disqualified: _Optional[_Iterable[_Union[Disqualified, _Mapping]]] = ..., bootstrap_resamples: _Optional[int] = ..., fill_cap: _Optional[float] = ..., attack_defenses: _Optional[_Iterable[str]] = ..., attack_set_rule: _Optional[str] = ..., notice: _Optional[str] = ...) -> None: ...

class GetReportRequest(_message.Message):
    __slots__ = ("split",)
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    split: Split
    def __init__(self, split: _Optional[_Union[Split, str]] = ...) -> None: ...

class GetReportResponse(_message.Message):
    __slots__ = ("html",)
    HTML_FIELD_NUMBER: _ClassVar[int]
    html: str
    def __init__(self, html: _Optional[str] = ...) -> None: ...
