"""The arena's durable state behind a small storage layer.

`open_store(url)` takes a database URL and returns a `Store`; callers only use the `Store`
methods and the write operations below (`Charge`, `RequestRecord`, `QueryRecord`,
`AdversarialRecord`, ...), so a PostgreSQL implementation can follow without touching them.
Today: `sqlite:///path/to/arena.db` (SQLite in WAL mode).

Write path: `Store.write(ops)` applies a list of operations in ONE transaction. The server's
group-commit writer (`arena.writer`) hands it everything that piled up while the previous commit
ran (the charges, replay records and query hashes of merged micro-batches, verified
adversarials), so a commit covers many requests and a label is only returned once its charge
is durable (synchronous=FULL: the WAL is fsynced at each commit; `durability="normal"` trades
power-loss durability for latency and still survives kill -9).

Large files (ONNX models, the evaluation images) live beside the database in a content-addressed
blob folder (`BlobStore`): `blobs/<sha256[:2]>/<sha256>`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

SCHEMA_VERSION = 2
# Version 1 stores are migrated in place when opened: 1 -> 2 adds runs.attack_config_digest.
_MIGRATIONS = {1: "ALTER TABLE runs ADD COLUMN attack_config_digest TEXT NOT NULL DEFAULT ''"}
DB_NAME = "arena.db"


class StoreError(RuntimeError):
    """The store cannot be opened or does not match this server's configuration."""


# ------------------------------------------------------------------ rows


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


@dataclass(frozen=True)
class DefenseRow:
    name: str
    team: str
    status: str                  # "accepted" | "rejected"
    description: str
    sha256: str
    size_bytes: int
    num_classes: int
    clean_accuracy: float
    clean_correct: np.ndarray    # bool [N] (empty when rejected)
    rejection_reasons: tuple[str, ...]
    serving_mode: str            # "batched" | "per_image" ("" when rejected)
    submitted_at: float


@dataclass(frozen=True)
class RunRow:
    run_id: str
    team: str
    defense: str
    attack: str
    num_samples: int
    budget: int
    started_at: float
    finished_at: float | None
    attack_config_digest: str = ""   # sha256 hex of the attack's configuration ("" if not sent)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


@dataclass(frozen=True)
class StoredRequest:
    digest: bytes
    labels: np.ndarray           # int32 [n]
    remaining: np.ndarray        # uint32 [n]


@dataclass(frozen=True)
class AdversarialRow:
    sample: int
    distance: float
    label: int
    image: bytes                 # float32 [3,64,64] little-endian
    found_at: float


# ------------------------------------------------------------------ write operations


@dataclass(frozen=True)
class Charge:
    """Adds `count` queries to (run, sample)."""
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
    """The label returned for an image (sha256 of its bytes) queried for (run, sample)."""
    run_id: str
    sample: int
    image_sha256: bytes
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
    run_id: str
    finished_at: float


WriteOp = Charge | RequestRecord | QueryRecord | AdversarialRecord | FinishRun


# ------------------------------------------------------------------ blobs


class BlobStore:
    """Content-addressed files: the name is the sha256 of the content; writes are atomic."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def put(self, data: bytes | memoryview) -> str:
        digest = sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return digest

    def get(self, digest: str) -> bytes:
        data = self.path(digest).read_bytes()
        if sha256(data).hexdigest() != digest:
            raise StoreError(f"blob {digest} is corrupt (its content does not match its name)")
        return data


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------ the store


class Store:
    """What the arena keeps. One implementation per database; `open_store` picks it by URL."""

    url: str
    blobs: BlobStore

    # evaluation set
    def evaluation(self) -> EvaluationMeta | None: raise NotImplementedError
    def init_evaluation(self, meta: EvaluationMeta) -> None: raise NotImplementedError
    # teams and tokens
    def add_token(self, team: str, token_sha256: str) -> None: raise NotImplementedError
    def team_for_token(self, token_sha256: str) -> str | None: raise NotImplementedError
    # defenses
    def put_defense(self, row: DefenseRow) -> None: raise NotImplementedError
    def get_defense(self, name: str) -> DefenseRow | None: raise NotImplementedError
    def list_defenses(self) -> list[DefenseRow]: raise NotImplementedError
    # runs
    def create_run(self, row: RunRow) -> None: raise NotImplementedError
    def get_run(self, run_id: str) -> RunRow | None: raise NotImplementedError
    def list_runs(self) -> list[RunRow]: raise NotImplementedError
    def usage(self, run_id: str, num_samples: int) -> np.ndarray: raise NotImplementedError
    def best_distances(self, run_id: str, num_samples: int) -> np.ndarray: raise NotImplementedError
    def adversarials(self, run_id: str) -> list[AdversarialRow]: raise NotImplementedError
    def get_request(self, run_id: str, request_id: str) -> StoredRequest | None: raise NotImplementedError
    def request_ids(self, run_id: str) -> set[str]: raise NotImplementedError
    def query_labels(self, run_id: str, keys: list[tuple[int, bytes]]) -> dict[tuple[int, bytes], int]:
        raise NotImplementedError
    # the group-commit write path
    def write(self, ops: list[WriteOp]) -> None: raise NotImplementedError
    def close(self) -> None: raise NotImplementedError


def open_store(url: str | Path, *, durability: str = "full") -> Store:
    """Opens (creating if needed) the store at a database URL, or at a store folder (-> SQLite)."""
    text = str(url)
    if "://" not in text:
        folder = Path(text)
        folder.mkdir(parents=True, exist_ok=True)
        text = f"sqlite:///{(folder / DB_NAME).resolve()}"
    parsed = urlparse(text)
    if parsed.scheme == "sqlite":
        return SqliteStore(text, durability=durability)
    raise StoreError(f"database URL {text!r}: unsupported scheme {parsed.scheme!r} (supported: sqlite:///path)")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    token_sha256 TEXT PRIMARY KEY, team TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS defenses (
    name TEXT PRIMARY KEY, team TEXT NOT NULL, status TEXT NOT NULL, description TEXT NOT NULL,
    sha256 TEXT NOT NULL, size_bytes INTEGER NOT NULL, num_classes INTEGER NOT NULL,
    clean_accuracy REAL NOT NULL, clean_correct BLOB NOT NULL, rejection_reasons TEXT NOT NULL,
    serving_mode TEXT NOT NULL, submitted_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, team TEXT NOT NULL, defense TEXT NOT NULL, attack TEXT NOT NULL,
    num_samples INTEGER NOT NULL, budget INTEGER NOT NULL, started_at REAL NOT NULL, finished_at REAL,
    attack_config_digest TEXT NOT NULL DEFAULT '');
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
        with self._write_lock:
            conn = self._connect()
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) in _MIGRATIONS:
                conn.execute("BEGIN IMMEDIATE")
                for version in range(int(row[0]), SCHEMA_VERSION):
                    conn.execute(_MIGRATIONS[version])
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
                conn.execute("COMMIT")
            elif int(row[0]) != SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {row[0]}, this arena reads version {SCHEMA_VERSION}")
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

    def close(self) -> None:
        with self._write_lock:
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
        d = json.loads(row[0])
        return EvaluationMeta(
            fingerprint=d["fingerprint"],
            num_samples=int(d["num_samples"]),
            labels=np.asarray(d["labels"], dtype=np.int64),
            worst_case=np.asarray(d["worst_case"], dtype=np.float64),
            class_names=tuple(d["class_names"]),
            images_blob=d["images_blob"],
            source=d["source"],
        )

    def init_evaluation(self, meta: EvaluationMeta) -> None:
        value = json.dumps({
            "fingerprint": meta.fingerprint,
            "num_samples": meta.num_samples,
            "labels": [int(v) for v in meta.labels],
            "worst_case": [float(v) for v in meta.worst_case],
            "class_names": list(meta.class_names),
            "images_blob": meta.images_blob,
            "source": meta.source,
        })
        with self._transaction() as conn:
            conn.execute("INSERT INTO meta(key, value) VALUES ('evaluation', ?)", (value,))

    # -------------------------------------------------------------- tokens

    def add_token(self, team: str, token_sha256: str) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT INTO tokens(token_sha256, team, created_at) VALUES (?, ?, ?)",
                         (token_sha256, team, time.time()))

    def team_for_token(self, token_sha256: str) -> str | None:
        row = self._reader().execute("SELECT team FROM tokens WHERE token_sha256 = ?", (token_sha256,)).fetchone()
        return None if row is None else row[0]

    # -------------------------------------------------------------- defenses

    def put_defense(self, row: DefenseRow) -> None:
        """Inserts a defense; replaces an existing one only if it was rejected (same name)."""
        with self._transaction() as conn:
            old = conn.execute("SELECT status FROM defenses WHERE name = ?", (row.name,)).fetchone()
            if old is not None and old[0] != "rejected":
                raise StoreError(f"defense {row.name!r} already exists")
            conn.execute(
                "INSERT OR REPLACE INTO defenses(name, team, status, description, sha256, size_bytes, num_classes,"
                " clean_accuracy, clean_correct, rejection_reasons, serving_mode, submitted_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.name, row.team, row.status, row.description, row.sha256, int(row.size_bytes),
                 int(row.num_classes), float(row.clean_accuracy),
                 np.asarray(row.clean_correct, dtype=np.bool_).tobytes(),
                 json.dumps(list(row.rejection_reasons)), row.serving_mode, float(row.submitted_at)),
            )

    @staticmethod
    def _defense(r) -> DefenseRow:
        return DefenseRow(
            name=r[0], team=r[1], status=r[2], description=r[3], sha256=r[4], size_bytes=int(r[5]),
            num_classes=int(r[6]), clean_accuracy=float(r[7]),
            clean_correct=np.frombuffer(r[8], dtype=np.bool_).copy(),
            rejection_reasons=tuple(json.loads(r[9])), serving_mode=r[10], submitted_at=float(r[11]),
        )

    _DEFENSE_COLUMNS = ("name, team, status, description, sha256, size_bytes, num_classes, clean_accuracy,"
                        " clean_correct, rejection_reasons, serving_mode, submitted_at")

    def get_defense(self, name: str) -> DefenseRow | None:
        r = self._reader().execute(f"SELECT {self._DEFENSE_COLUMNS} FROM defenses WHERE name = ?", (name,)).fetchone()
        return None if r is None else self._defense(r)

    def list_defenses(self) -> list[DefenseRow]:
        rows = self._reader().execute(f"SELECT {self._DEFENSE_COLUMNS} FROM defenses ORDER BY submitted_at, name")
        return [self._defense(r) for r in rows.fetchall()]

    # -------------------------------------------------------------- runs

    _RUN_COLUMNS = "run_id, team, defense, attack, num_samples, budget, started_at, finished_at, attack_config_digest"

    def create_run(self, row: RunRow) -> None:
        with self._transaction() as conn:
            conn.execute(
                f"INSERT INTO runs({self._RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.run_id, row.team, row.defense, row.attack, row.num_samples, row.budget,
                 row.started_at, row.finished_at, row.attack_config_digest),
            )

    @staticmethod
    def _run(r) -> RunRow:
        return RunRow(run_id=r[0], team=r[1], defense=r[2], attack=r[3], num_samples=int(r[4]),
                      budget=int(r[5]), started_at=float(r[6]), finished_at=None if r[7] is None else float(r[7]),
                      attack_config_digest=r[8])

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

    # -------------------------------------------------------------- the write path

    def write(self, ops: list[WriteOp]) -> None:
        charges: dict[tuple[str, int], int] = {}
        requests, queries, adversarials, finishes = [], [], [], []
        for op in ops:
            if isinstance(op, Charge):
                key = (op.run_id, int(op.sample))
                charges[key] = charges.get(key, 0) + int(op.count)
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
            if charges:
                conn.executemany(
                    "INSERT INTO usage(run_id, sample, used) VALUES (?, ?, ?)"
                    " ON CONFLICT(run_id, sample) DO UPDATE SET used = used + excluded.used",
                    [(r, s, c) for (r, s), c in charges.items()])
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


def default_url(store_dir: str | Path) -> str:
    return f"sqlite:///{(Path(store_dir) / DB_NAME).resolve()}"


__all__ = [
    "AdversarialRecord", "AdversarialRow", "BlobStore", "Charge", "DefenseRow", "EvaluationMeta", "FinishRun",
    "QueryRecord", "RequestRecord", "RunRow", "Store", "StoreError", "StoredRequest", "SqliteStore", "WriteOp",
    "default_url", "open_store",
]
