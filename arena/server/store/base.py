"""The storage interface every backend implements (`Store`); `opening.open_store(url)` picks one.

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

import numpy as np

from arena.server.digests import LEGACY_IMAGE_DIGEST
from arena.server.store.blobs import BlobStore
from arena.server.store.rows import (
    TEAM,
    Action,
    AdversarialRow,
    DefenseRow,
    EvaluationMeta,
    Reservation,
    RunRow,
    StoredRequest,
    WriteOp,
    account_key,
)


class Store(abc.ABC):
    """What the arena keeps. One implementation per database; `open_store` picks it by URL."""

    url: str
    blobs: BlobStore
    # True: budgets are reserved in the database (`reserve`), so several server processes can share
    # it; False: one server process owns the store and keeps the ledger in memory (faster).
    shared_ledger: bool = False
    # The digest that keys Predict's records of images answered adversarial (arena.server.digests):
    # chosen when the store is created and kept for its life; a store from before it was recorded
    # holds sha256 digests.
    image_digest: str = LEGACY_IMAGE_DIGEST

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
    @abc.abstractmethod
    def organizer_teams(self) -> set[str]:
        """Teams with an organizer token, revoked or not (the boards mark their entries as the referee's)."""
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
    def budget_usage(self, account: str, num_samples: int) -> np.ndarray:
        """Per sample, what the budget account (`rows.account_key`) has spent."""

    def account_usage(self, team: str, defense: str, split: str, num_samples: int) -> np.ndarray:
        """Per sample, what the team spent on the defense and split, over all its runs."""
        return self.budget_usage(account_key(team, defense, split), num_samples)
    # defenses
    @abc.abstractmethod
    def put_defense(self, row: DefenseRow, require_open: bool = False, team_cap: int | None = None) -> None:
        """`team_cap`: refused (CapReached), in the same transaction as the insert, when the team
        already has that many accepted defenses that were not disqualified."""
    @abc.abstractmethod
    def get_defense(self, name: str) -> DefenseRow | None: ...
    @abc.abstractmethod
    def list_defenses(self) -> list[DefenseRow]: ...
    @abc.abstractmethod
    def take_submission(self, team: str, day: str, cap: int) -> bool:
        """Counts one submission of `team` on UTC `day` ("YYYY-MM-DD") if it had fewer than
        `cap`, atomically against every replica; False (nothing counted) at the cap."""
    @abc.abstractmethod
    def return_submission(self, team: str, day: str) -> None:
        """Gives back a counted submission that got no verdict (the arena was shutting down)."""
    @abc.abstractmethod
    def set_clean_correct(self, name: str, clean_correct: np.ndarray) -> None:
        """Completes an accepted defense's per-sample clean correctness (its private part is
        measured after acceptance: `arena.server.private_accuracy`)."""
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
    # budgets: an account (a run id today; any string) and a sample index -> queries used
    @abc.abstractmethod
    def reserve(self, account: str, samples: np.ndarray, counts: np.ndarray, budget: int, *,
                run_id: str | None = None, request_id: str | None = None,
                digest: bytes | None = None) -> Reservation:
        """All or nothing, atomically against every other process: adds counts[i] to (account,
        samples[i]) if every sample stays within `budget`, else adds nothing. Guards, checked
        first: the run `run_id` is not finished (else `closed`), and it holds no answer for
        `request_id` (else `replay`). A shared-ledger store also claims `request_id` (with the
        request's `digest`) together with the reservation, so that a retry reaching another
        replica while the first attempt runs, or after it was cut off, adopts the claim
        (`adopted`: granted, nothing reserved) instead of paying twice."""
    @abc.abstractmethod
    def release(self, account: str, samples: np.ndarray, counts: np.ndarray, *, run_id: str | None = None,
                request_id: str | None = None) -> None:
        """Gives back what a granted `reserve` took (the request failed before its answer), with
        its claim on `request_id`; a shared-ledger store gives back nothing if another attempt
        adopted the claim (its answer is what the reservation pays for)."""
    def claim_serving(self) -> None:
        """Called by a server before it serves from this store. A store whose ledger lives in the
        server's memory (`shared_ledger` False) refuses a second server: two would hand out the
        same budget twice."""
    # the group-commit write path
    @abc.abstractmethod
    def write(self, ops: list[WriteOp]) -> None: ...
    @abc.abstractmethod
    def close(self) -> None: ...
