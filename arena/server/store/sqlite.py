"""The SQLite backend (the embedded default): `sqlite:///path/to/arena.db`, WAL mode.

synchronous=FULL fsyncs the WAL at each commit; `durability="normal"` trades power-loss
durability for latency and still survives kill -9.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from arena.contract import DefenseStatus
from arena.server.store.base import Store
from arena.server.store.blobs import BlobStore
from arena.server.store.rows import (
    OPEN,
    PHASES,
    SCHEMA_VERSION,
    TEAM,
    Action,
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
    merged_counts,
)


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


class SqliteStore(Store):
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

    # -------------------------------------------------------------- evaluation set

    def evaluation(self) -> EvaluationMeta | None:
        row = self._reader().execute("SELECT value FROM meta WHERE key = 'evaluation'").fetchone()
        if row is None:
            return None
        return EvaluationMeta.from_json(row[0])

    def init_evaluation(self, meta: EvaluationMeta) -> None:
        value = meta.to_json()
        with self._transaction() as conn:
            conn.execute("INSERT INTO meta(key, value) VALUES ('evaluation', ?)", (value,))

    # -------------------------------------------------------------- tokens

    def add_token(self, team: str, token_sha256: str, role: str = TEAM, action: Action | None = None) -> None:
        with self._transaction() as conn:
            # a team is one identity: a token of another role under its name would read its runs
            if conn.execute("SELECT 1 FROM tokens WHERE team = ? AND role <> ?", (team, role)).fetchone():
                raise NameTaken(f"team {team!r} already exists with another role")
            conn.execute("INSERT INTO tokens(token_sha256, team, created_at, role) VALUES (?, ?, ?, ?)",
                         (token_sha256, team, time.time(), role))
            self._record(conn, action)

    def team_for_token(self, token_sha256: str) -> str | None:
        identity = self.token_identity(token_sha256)
        return None if identity is None else identity[0]

    def token_identity(self, token_sha256: str) -> tuple[str, str] | None:
        row = self._reader().execute(
            "SELECT team, role FROM tokens WHERE token_sha256 = ? AND revoked_at IS NULL", (token_sha256,)).fetchone()
        return None if row is None else (row[0], row[1])

    def revoke_tokens(self, team: str, action: Action | None = None) -> int:
        with self._transaction() as conn:
            count = conn.execute("UPDATE tokens SET revoked_at = ? WHERE team = ? AND revoked_at IS NULL",
                                 (time.time(), team)).rowcount
            self._record(conn, action)
        return int(count)

    # -------------------------------------------------------------- competition (rules v2)

    def phase(self) -> str:
        row = self._reader().execute("SELECT value FROM meta WHERE key = 'phase'").fetchone()
        return OPEN if row is None else row[0]

    def set_phase(self, phase: str, action: Action | None = None) -> None:
        if phase not in PHASES:
            raise StoreError(f"phase must be one of {PHASES}, got {phase!r}")
        with self._transaction() as conn:
            conn.execute("INSERT INTO meta(key, value) VALUES ('phase', ?)"
                         " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (phase,))
            self._record(conn, action)

    def budget(self) -> int | None:
        row = self._reader().execute("SELECT value FROM meta WHERE key = 'budget'").fetchone()
        return None if row is None else int(row[0])

    def set_budget(self, budget: int, action: Action | None = None) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT INTO meta(key, value) VALUES ('budget', ?)"
                         " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (str(int(budget)),))
            self._record(conn, action)

    def disqualify(self, kind: str, name: str, reason: str, action: Action | None = None) -> bool:
        table, key = {"defense": ("defenses", "name"), "run": ("runs", "run_id")}[kind]
        with self._transaction() as conn:
            found = conn.execute(f"UPDATE {table} SET disqualified_reason = ? WHERE {key} = ?",
                                 (reason, name)).rowcount
            if found:
                self._record(conn, action)
        return bool(found)

    def actions(self) -> list[Action]:
        rows = self._reader().execute("SELECT at, organizer, action, target, reason FROM actions ORDER BY rowid")
        return [Action(float(a), o, act, t, r) for a, o, act, t, r in rows]

    @staticmethod
    def _record(conn, action: Action | None) -> None:
        if action is not None:
            conn.execute("INSERT INTO actions(at, organizer, action, target, reason) VALUES (?, ?, ?, ?, ?)",
                         (action.at, action.organizer, action.action, action.target, action.reason))

    def budget_usage(self, account: str, num_samples: int) -> np.ndarray:
        used = np.zeros(num_samples, dtype=np.int64)
        for sample, count in self._reader().execute("SELECT sample, used FROM budget_usage WHERE account = ?",
                                                    (account,)):
            if sample < num_samples:
                used[sample] = count
        return used

    # -------------------------------------------------------------- defenses

    def put_defense(self, row: DefenseRow, require_open: bool = False) -> None:
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
            conn.execute(
                "INSERT OR REPLACE INTO defenses(name, team, status, description, sha256, size_bytes, num_classes,"
                " clean_accuracy, clean_correct, rejection_reasons, serving_mode, submitted_at, disqualified_reason)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.name, row.team, row.status, row.description, row.sha256, int(row.size_bytes),
                 int(row.num_classes), float(row.clean_accuracy),
                 np.asarray(row.clean_correct, dtype=np.bool_).tobytes(),
                 json.dumps(list(row.rejection_reasons)), row.serving_mode, float(row.submitted_at),
                 row.disqualified_reason),
            )

    @staticmethod
    def _defense(r) -> DefenseRow:
        return DefenseRow(
            name=r[0], team=r[1], status=DefenseStatus(r[2]), description=r[3], sha256=r[4], size_bytes=int(r[5]),
            num_classes=int(r[6]), clean_accuracy=float(r[7]),
            clean_correct=np.frombuffer(r[8], dtype=np.bool_).copy(),
            rejection_reasons=tuple(json.loads(r[9])), serving_mode=r[10], submitted_at=float(r[11]),
            disqualified_reason=r[12],
        )

    _DEFENSE_COLUMNS = ("name, team, status, description, sha256, size_bytes, num_classes, clean_accuracy,"
                        " clean_correct, rejection_reasons, serving_mode, submitted_at, disqualified_reason")

    def get_defense(self, name: str) -> DefenseRow | None:
        r = self._reader().execute(f"SELECT {self._DEFENSE_COLUMNS} FROM defenses WHERE name = ?", (name,)).fetchone()
        return None if r is None else self._defense(r)

    def list_defenses(self) -> list[DefenseRow]:
        rows = self._reader().execute(f"SELECT {self._DEFENSE_COLUMNS} FROM defenses ORDER BY submitted_at, name")
        return [self._defense(r) for r in rows.fetchall()]

    # -------------------------------------------------------------- runs

    _RUN_COLUMNS = ("run_id, team, defense, attack, num_samples, budget, started_at, finished_at, split,"
                    " attack_config_digest, disqualified_reason")

    def create_run(self, row: RunRow) -> None:
        with self._transaction() as conn:
            conn.execute(
                f"INSERT INTO runs({self._RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.run_id, row.team, row.defense, row.attack, row.num_samples, row.budget,
                 row.started_at, row.finished_at, row.split, row.attack_config_digest, row.disqualified_reason),
            )

    @staticmethod
    def _run(r) -> RunRow:
        return RunRow(run_id=r[0], team=r[1], defense=r[2], attack=r[3], num_samples=int(r[4]),
                      budget=int(r[5]), started_at=float(r[6]), finished_at=None if r[7] is None else float(r[7]),
                      split=r[8], attack_config_digest=r[9], disqualified_reason=r[10])

    def get_run(self, run_id: str) -> RunRow | None:
        r = self._reader().execute(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if r is None else self._run(r)

    def list_runs(self) -> list[RunRow]:
        rows = self._reader().execute(f"SELECT {self._RUN_COLUMNS} FROM runs ORDER BY started_at, run_id")
        return [self._run(r) for r in rows.fetchall()]

    def usage(self, run_id: str, num_samples: int) -> np.ndarray:
        used = np.zeros(num_samples, dtype=np.int64)
        for sample, count in self._reader().execute("SELECT sample, used FROM usage WHERE run_id = ?", (run_id,)):
            used[sample] = count
        return used

    def best_distances(self, run_id: str, num_samples: int) -> np.ndarray:
        best = np.full(num_samples, np.inf)
        for sample, distance in self._reader().execute(
                "SELECT sample, distance FROM adversarials WHERE run_id = ?", (run_id,)):
            best[sample] = distance
        return best

    def adversarials(self, run_id: str) -> list[AdversarialRow]:
        rows = self._reader().execute(
            "SELECT sample, distance, label, image, found_at FROM adversarials WHERE run_id = ? ORDER BY sample",
            (run_id,))
        return [AdversarialRow(int(s), float(d), int(lab), bytes(img), float(t)) for s, d, lab, img, t in rows]

    def get_request(self, run_id: str, request_id: str) -> StoredRequest | None:
        r = self._reader().execute(
            "SELECT digest, labels, remaining FROM requests WHERE run_id = ? AND request_id = ?",
            (run_id, request_id)).fetchone()
        if r is None:
            return None
        return StoredRequest(bytes(r[0]), np.frombuffer(r[1], dtype="<i4").copy(),
                             np.frombuffer(r[2], dtype="<u4").copy())

    def request_ids(self, run_id: str) -> set[str]:
        rows = self._reader().execute("SELECT request_id FROM requests WHERE run_id = ?", (run_id,))
        return {r[0] for r in rows}

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
                f"SELECT sample, used FROM budget_usage WHERE account = ? AND sample IN ({', '.join('?' * samples.size)})",
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
        charges: dict[tuple[str, int], int] = {}
        spends: dict[tuple[str, int], int] = {}
        requests, queries, adversarials, finishes = [], [], [], []
        for op in ops:
            if isinstance(op, Charge):
                key = (op.run_id, int(op.sample))
                charges[key] = charges.get(key, 0) + int(op.count)
            elif isinstance(op, RunSpend):
                key = (op.run_id, int(op.sample))
                spends[key] = spends.get(key, 0) + int(op.count)
            elif isinstance(op, RequestRecord):
                requests.append((op.run_id, op.request_id, op.digest, op.labels, op.remaining, op.created_at))
            elif isinstance(op, QueryRecord):
                queries.append((op.run_id, int(op.sample), op.image_sha256, int(op.label)))
            elif isinstance(op, AdversarialRecord):
                adversarials.append((op.run_id, int(op.sample), float(op.distance), int(op.label), op.image,
                                     float(op.found_at)))
            elif isinstance(op, FinishRun):
                finishes.append((op.finished_at, op.run_id))
            else:
                raise TypeError(f"unknown write operation {op!r}")
        with self._transaction() as conn:
            spent = {key: spends.get(key, 0) + charges.get(key, 0) for key in spends.keys() | charges.keys()}
            if spent:
                conn.executemany(
                    "INSERT INTO usage(run_id, sample, used) VALUES (?, ?, ?)"
                    " ON CONFLICT(run_id, sample) DO UPDATE SET used = used + excluded.used",
                    [(r, s, c) for (r, s), c in spent.items()])
            if charges:
                # the same charge on the budget account the run spends (account_key in SQL)
                conn.executemany(
                    "INSERT INTO budget_usage(account, sample, used)"
                    " SELECT team || '/' || defense || '/' || split, ?, ? FROM runs WHERE run_id = ? AND true"
                    " ON CONFLICT(account, sample) DO UPDATE SET used = used + excluded.used",
                    [(s, c, r) for (r, s), c in charges.items()])
            if requests:
                conn.executemany(
                    "INSERT INTO requests(run_id, request_id, digest, labels, remaining, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)", requests)
            if queries:
                conn.executemany(
                    "INSERT OR IGNORE INTO queries(run_id, sample, image_sha256, label) VALUES (?, ?, ?, ?)",
                    queries)
            if adversarials:
                conn.executemany(
                    "INSERT INTO adversarials(run_id, sample, distance, label, image, found_at)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(run_id, sample) DO UPDATE SET"
                    " distance = excluded.distance, label = excluded.label, image = excluded.image,"
                    " found_at = excluded.found_at WHERE excluded.distance < adversarials.distance",
                    adversarials)
            if finishes:
                conn.executemany("UPDATE runs SET finished_at = ? WHERE run_id = ? AND finished_at IS NULL",
                                 finishes)


def _version_message(path: Path, found: int) -> str:
    if found == 1:
        return (f"{path}: this store was made under competition rules v1 (schema 1). Rules v2 need a public "
                "and a private evaluation split, per-team budgets and phases, which its runs and evaluation set "
                "do not have, so it cannot be migrated in place without inventing a private split. Start the v2 "
                "competition on a new --store; the v1 store stays readable with the previous release "
                "(`arena leaderboard --store PATH`, robustness-arena 0.1).")
    return f"{path}: schema version {found}, this arena reads version {SCHEMA_VERSION}"
