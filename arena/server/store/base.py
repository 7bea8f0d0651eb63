"""The storage interface every backend implements (`Store`), and `open_store(url)`.

Callers only use the `Store` methods and the write operations of `rows` (`Charge`,
`RequestRecord`, `QueryRecord`, `AdversarialRecord`, `FinishRun`).

Write path: `Store.write(ops)` applies a list of operations in ONE transaction. The server's
group-commit writer (`arena.server.writer`) hands it everything that piled up while the previous
commit ran (the charges, replay records and query hashes of merged micro-batches, verified
adversarials), so a commit covers many requests and a label is only returned once its charge is
durable.
"""

from __future__ import annotations

import abc
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from arena.server.store.blobs import BlobStore
from arena.server.store.rows import (
    DB_NAME,
    TEAM,
    Action,
    AdversarialRow,
    DefenseRow,
    EvaluationMeta,
    RunRow,
    StoredRequest,
    StoreError,
    WriteOp,
)


class Store(abc.ABC):
    """What the arena keeps. One implementation per database; `open_store` picks it by URL."""

    url: str
    blobs: BlobStore

    # evaluation set
    @abc.abstractmethod
    def evaluation(self) -> EvaluationMeta | None: ...
    @abc.abstractmethod
    def init_evaluation(self, meta: EvaluationMeta) -> None: ...
    # teams, tokens and roles
    @abc.abstractmethod
    def add_token(self, team: str, token_sha256: str, role: str = TEAM, action: Action | None = None) -> None: ...
    @abc.abstractmethod
    def team_for_token(self, token_sha256: str) -> str | None: ...
    @abc.abstractmethod
    def token_identity(self, token_sha256: str) -> tuple[str, str] | None:
        """(team, role) of a token that was not revoked."""
    @abc.abstractmethod
    def revoke_tokens(self, team: str, action: Action | None = None) -> int: ...
    # the competition (rules v2): every organizer write records its Action in the same transaction
    @abc.abstractmethod
    def phase(self) -> str: ...
    @abc.abstractmethod
    def set_phase(self, phase: str, action: Action | None = None) -> None: ...
    @abc.abstractmethod
    def budget(self) -> int | None: ...
    @abc.abstractmethod
    def set_budget(self, budget: int, action: Action | None = None) -> None: ...
    @abc.abstractmethod
    def disqualify(self, kind: str, name: str, reason: str, action: Action | None = None) -> bool: ...
    @abc.abstractmethod
    def actions(self) -> list[Action]: ...
    @abc.abstractmethod
    def account_usage(self, team: str, defense: str, split: str, num_samples: int) -> np.ndarray:
        """Per sample, what the team spent on the defense and split, over all its runs."""
    # defenses
    @abc.abstractmethod
    def put_defense(self, row: DefenseRow, require_open: bool = False) -> None: ...
    @abc.abstractmethod
    def get_defense(self, name: str) -> DefenseRow | None: ...
    @abc.abstractmethod
    def list_defenses(self) -> list[DefenseRow]: ...
    # runs
    @abc.abstractmethod
    def create_run(self, row: RunRow) -> None: ...
    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunRow | None: ...
    @abc.abstractmethod
    def list_runs(self) -> list[RunRow]: ...
    @abc.abstractmethod
    def usage(self, run_id: str, num_samples: int) -> np.ndarray: ...
    @abc.abstractmethod
    def best_distances(self, run_id: str, num_samples: int) -> np.ndarray: ...
    @abc.abstractmethod
    def adversarials(self, run_id: str) -> list[AdversarialRow]: ...
    @abc.abstractmethod
    def get_request(self, run_id: str, request_id: str) -> StoredRequest | None: ...
    @abc.abstractmethod
    def request_ids(self, run_id: str) -> set[str]: ...
    @abc.abstractmethod
    def query_labels(self, run_id: str, keys: list[tuple[int, bytes]]) -> dict[tuple[int, bytes], int]: ...
    # the group-commit write path
    @abc.abstractmethod
    def write(self, ops: list[WriteOp]) -> None: ...
    @abc.abstractmethod
    def close(self) -> None: ...


def open_store(url: str | Path, *, durability: str = "full") -> Store:
    """Opens (creating if needed) the store at a database URL, or at a store folder (-> SQLite)."""
    text = str(url)
    if "://" not in text:
        folder = Path(text)
        folder.mkdir(parents=True, exist_ok=True)
        text = f"sqlite:///{(folder / DB_NAME).resolve()}"
    parsed = urlparse(text)
    if parsed.scheme == "sqlite":
        from arena.server.store.sqlite import SqliteStore

        return SqliteStore(text, durability=durability)
    raise StoreError(f"database URL {text!r}: unsupported scheme {parsed.scheme!r} (supported: sqlite:///path)")


def default_url(store_dir: str | Path) -> str:
    return f"sqlite:///{(Path(store_dir) / DB_NAME).resolve()}"
