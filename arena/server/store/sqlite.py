"""The SQLite backend (the embedded default): `sqlite:///path/to/arena.db`, WAL mode.

synchronous=FULL fsyncs the WAL at each commit; `durability="normal"` trades power-loss
durability for latency and still survives kill -9.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from arena.server.store.blobs import BlobStore
from arena.server.digests import IMAGE_DIGESTS, LEGACY_IMAGE_DIGEST
from arena.server.store.rows import (
    OPEN,
    SCHEMA_VERSION,
    DefenseRow,
    EvaluationMeta,
    CapReached,
    PhaseClosed,
    Reservation,
    StoreError,
    WriteOp,
    merged_counts,
)
from arena.server.store.sql import DEFENSE_COLUMNS, SqlStore, defense_values, group_ops, placeholders


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    token_sha256 TEXT PRIMARY KEY, team TEXT NOT NULL, created_at REAL NOT NULL,
    role TEXT NOT NULL DEFAULT 'team', revoked_at REAL);
CREATE TABLE IF NOT EXISTS defenses (
    name TEXT PRIMARY KEY, team TEXT NOT NULL, status TEXT NOT NULL, description TEXT NOT NULL,
    sha256 TEXT NOT NULL, size_bytes INTEGER NOT NULL, num_classes INTEGER NOT NULL,
    clean_accuracy REAL NOT NULL, clean_correct BLOB NOT NULL, rejection_reasons TEXT NOT NULL,
    serving_mode TEXT NOT NULL, submitted_at REAL NOT NULL, disqualified_reason TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, team TEXT NOT NULL, defense TEXT NOT NULL, attack TEXT NOT NULL,
    num_samples INTEGER NOT NULL, budget INTEGER NOT NULL, started_at REAL NOT NULL, finished_at REAL,
    split TEXT NOT NULL DEFAULT 'public', attack_config_digest TEXT NOT NULL DEFAULT '',
    disqualified_reason TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS budget_usage (
    account TEXT NOT NULL, sample INTEGER NOT NULL, used INTEGER NOT NULL,
    PRIMARY KEY (account, sample)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS actions (
    at REAL NOT NULL, organizer TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,
    reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS usage (
    run_id TEXT NOT NULL, sample INTEGER NOT NULL, used INTEGER NOT NULL,
    PRIMARY KEY (run_id, sample)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS requests (
    run_id TEXT NOT NULL, request_id TEXT NOT NULL, digest BLOB NOT NULL, labels BLOB NOT NULL,
    remaining BLOB NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (run_id, request_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queries (
    run_id TEXT NOT NULL, sample INTEGER NOT NULL, image_sha256 BLOB NOT NULL, label INTEGER NOT NULL,
    PRIMARY KEY (run_id, sample, image_sha256)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS adversarials (
    run_id TEXT NOT NULL, sample INTEGER NOT NULL, distance REAL NOT NULL, label INTEGER NOT NULL,
    image BLOB NOT NULL, found_at REAL NOT NULL,
    PRIMARY KEY (run_id, sample)) WITHOUT ROWID;
"""


class SqliteStore(SqlStore):
    """SQLite in WAL mode: one writer connection (serialised by a lock), one reader per thread."""

    def __init__(self, url: str, *, durability: str = "full") -> None:
        if durability not in ("full", "normal"):
            raise StoreError(f"durability must be 'full' or 'normal', got {durability!r}")
        self.url = url
        path = urlparse(url).path
        if not path or path == "/":
            raise StoreError(f"database URL {url!r} names no file")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.blobs = BlobStore(self.path.parent / "blobs")
        self._synchronous = durability.upper()
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self._serving_fd: int | None = None
        with self._write_lock:
            conn = self._connect()
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None and int(row[0]) != SCHEMA_VERSION:
                conn.close()
                raise StoreError(_version_message(self.path, int(row[0])))
            conn.executescript(_SCHEMA)
            if row is None:
                conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('phase', ?)", (OPEN,))
                conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('image_digest', ?)", (IMAGE_DIGESTS[0],))
            digest = conn.execute("SELECT value FROM meta WHERE key = 'image_digest'").fetchone()
            self.image_digest = digest[0] if digest else LEGACY_IMAGE_DIGEST
            self._writer = conn

    # -------------------------------------------------------------- connections

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.path}: not a usable SQLite database ({error})") from None
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError("the store is closed")
            conn = self._connect()
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self):
        with self._write_lock:
            if self._closed:
                raise StoreError("the store is closed")
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def claim_serving(self) -> None:
        """An exclusive lock on `<db>.serving` for as long as this store is open: the budget ledger
        lives in the server's memory, so a second server on the same file would overdraw."""
        fd = os.open(f"{self.path}.serving", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{self.path}: another arena server already serves this store; several replicas "
                             "need a shared database (--database-url postgresql://..., docs/deploy.md)") from None
        self._serving_fd = fd

    def close(self) -> None:
        with self._write_lock:
            if self._serving_fd is not None:
                os.close(self._serving_fd)
                self._serving_fd = None
            self._closed = True
            with self._connections_lock:
                for conn in self._connections:
                    try:
                        conn.close()
                    except sqlite3.Error:
                        pass
                self._connections.clear()


    def _read(self, sql: str, params=()):
        return self._reader().execute(sql, params)

    # -------------------------------------------------------------- what SQLite does its own way

    def init_evaluation(self, meta: EvaluationMeta) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT INTO meta(key, value) VALUES ('evaluation', ?)", (meta.to_json(),))

    def put_defense(self, row: DefenseRow, require_open: bool = False, team_cap: int | None = None) -> None:
        """Inserts a defense; replaces an existing one only if it was rejected (same name). With
        `require_open`, refused (PhaseClosed) unless the phase is open, in the same transaction as
        the insert: a submission racing the switch to the final phase lands before it or not at all."""
        with self._transaction() as conn:
            if require_open:
                phase = conn.execute("SELECT value FROM meta WHERE key = 'phase'").fetchone()
                if phase is not None and phase[0] != OPEN:
                    raise PhaseClosed("submissions are closed: the competition is in its final phase")
            old = conn.execute("SELECT status FROM defenses WHERE name = ?", (row.name,)).fetchone()
            if old is not None and old[0] != "rejected":
                raise StoreError(f"defense {row.name!r} already exists")
            if team_cap is not None and self._count_accepted(conn, row.team) >= team_cap:
                raise CapReached(f"team {row.team!r} already has {team_cap} accepted defenses")
            conn.execute(f"INSERT OR REPLACE INTO defenses({DEFENSE_COLUMNS}) VALUES ({placeholders(13)})",
                         defense_values(row))

    def query_labels(self, run_id: str, keys: list[tuple[int, bytes]]) -> dict[tuple[int, bytes], int]:
        conn = self._reader()
        found: dict[tuple[int, bytes], int] = {}
        for sample, digest in set(keys):
            r = conn.execute("SELECT label FROM queries WHERE run_id = ? AND sample = ? AND image_sha256 = ?",
                             (run_id, int(sample), digest)).fetchone()
            if r is not None:
                found[(int(sample), digest)] = int(r[0])
        return found

    # -------------------------------------------------------------- budgets

    def reserve(self, account: str, samples: np.ndarray, counts: np.ndarray, budget: int, *,
                run_id: str | None = None, request_id: str | None = None,
                digest: bytes | None = None) -> Reservation:
        """Atomic across processes too (BEGIN IMMEDIATE holds the database's write lock); the
        server itself keeps its ledger in memory (`shared_ledger` is False) and never calls this,
        so request ids are only checked for an answer, not claimed."""
        samples, counts = merged_counts(samples, counts)
        with self._transaction() as conn:
            if request_id is not None and conn.execute(
                    "SELECT 1 FROM requests WHERE run_id = ? AND request_id = ?", (run_id, request_id)).fetchone():
                return Reservation(False, samples, np.zeros(0, np.int64), replay=True)
            if run_id is not None and conn.execute(
                    "SELECT 1 FROM runs WHERE run_id = ? AND finished_at IS NOT NULL", (run_id,)).fetchone():
                return Reservation(False, samples, np.zeros(0, np.int64), closed=True)
            if samples.size == 0:
                return Reservation(True, samples, np.zeros(0, np.int64))
            found = dict(conn.execute(
                f"SELECT sample, used FROM budget_usage WHERE account = ? AND sample IN ({placeholders(samples.size)})",
                (account, *samples.tolist())).fetchall())
            used = np.array([found.get(int(s), 0) for s in samples], dtype=np.int64)
            if (used + counts > budget).any():
                return Reservation(False, samples, used)
            conn.executemany(
                "INSERT INTO budget_usage(account, sample, used) VALUES (?, ?, ?)"
                " ON CONFLICT(account, sample) DO UPDATE SET used = used + excluded.used",
                [(account, int(s), int(c)) for s, c in zip(samples, counts)])
        return Reservation(True, samples, used + counts)

    def release(self, account: str, samples: np.ndarray, counts: np.ndarray, *, run_id: str | None = None,
                request_id: str | None = None) -> None:
        samples, counts = merged_counts(samples, counts)
        with self._transaction() as conn:
            conn.executemany("UPDATE budget_usage SET used = max(used - ?, 0) WHERE account = ? AND sample = ?",
                             [(int(c), account, int(s)) for s, c in zip(samples, counts)])

    # -------------------------------------------------------------- the write path

    def write(self, ops: list[WriteOp]) -> None:
        grouped = group_ops(ops)
        with self._transaction() as conn:
            self._apply(conn.executemany, grouped)


def _version_message(path: Path, found: int) -> str:
    if found == 1:
        return (f"{path}: this store was made under competition rules v1 (schema 1). Rules v2 need a public "
                "and a private evaluation split, per-team budgets and phases, which its runs and evaluation set "
                "do not have, so it cannot be migrated in place without inventing a private split. Start the v2 "
                "competition on a new --store; the v1 store stays readable with the previous release "
                "(`arena leaderboard --store PATH`, robustness-arena 0.1).")
    return f"{path}: schema version {found}, this arena reads version {SCHEMA_VERSION}"
