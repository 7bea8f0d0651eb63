"""The arena's durable state: domain rows (`rows`), the `Store` interface and `open_store`
(`base`), content-addressed blobs (`blobs`) and the backends (`sqlite`, the embedded default;
`postgres`, for several replicas)."""

from arena.server.store.base import Store, default_url, open_store
from arena.server.store.blobs import BlobStore
from arena.server.store.rows import (
    DB_NAME,
    SCHEMA_VERSION,
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
    StoredRequest,
    StoreError,
    WriteOp,
)

__all__ = [
    "DB_NAME", "SCHEMA_VERSION", "AdversarialRecord", "AdversarialRow", "BlobStore", "Charge", "DefenseRow",
    "EvaluationMeta", "FinishRun", "QueryRecord", "RequestRecord", "Reservation", "RunRow", "Store", "StoreError",
    "StoredRequest", "WriteOp", "default_url", "open_store",
]
