"""The arena's durable state: domain rows (`rows`), the `Store` interface (`base`), `open_store`
(`opening`), content-addressed blobs (`blobs`), the statements both SQL backends share (`sql`) and
the backends (`sqlite`, the embedded default; `postgres`, for several replicas)."""

from arena.server.store.base import Store
from arena.server.store.opening import default_url, open_store
from arena.server.store.blobs import BlobStore
from arena.server.store.rows import (
    DB_NAME,
    FINAL,
    OPEN,
    ORGANIZER,
    PHASES,
    PRIVATE,
    PUBLIC,
    ROLES,
    SCHEMA_VERSION,
    SPLITS,
    TEAM,
    Action,
    CapReached,
    NameTaken,
    PhaseClosed,
    AdversarialRecord,
    AdversarialRow,
    Charge,
    DefenseRow,
    EvaluationMeta,
    FinishRun,
    QueryRecord,
    RequestRecord,
    Reservation,
    RunRow,
    RunSpend,
    StoredRequest,
    StoreError,
    WriteOp,
    account_key,
)

__all__ = [
    "DB_NAME", "FINAL", "OPEN", "ORGANIZER", "PHASES", "PRIVATE", "PUBLIC", "ROLES", "SCHEMA_VERSION", "SPLITS",
    "TEAM", "Action", "CapReached", "NameTaken", "PhaseClosed", "AdversarialRecord", "AdversarialRow", "BlobStore", "Charge", "DefenseRow",
    "EvaluationMeta", "FinishRun", "QueryRecord", "RequestRecord", "Reservation", "RunRow", "RunSpend", "Store",
    "StoreError", "account_key",
    "StoredRequest", "WriteOp", "default_url", "open_store",
]
