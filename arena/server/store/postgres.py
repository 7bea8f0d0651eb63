"""The PostgreSQL backend (psycopg 3): `postgresql://user[:password]@host[:port]/dbname[?host=/socket/dir]`.

Several `arena serve` replicas share one database; nothing they must agree on lives in one
process's memory:
- budgets: `reserve` is one call of the function `arena_reserve` (one statement, one round trip):
  it locks the (account, sample) rows in sample order (so two reservations never deadlock),
  checks every sample against the budget and adds the counts only if all fit, so the reservation
  is all or nothing and two replicas can never both spend the last query (`shared_ledger`);
- replays, query hashes, adversarials and finished runs are rows every replica reads;
- blobs (ONNX models, the evaluation images) are `bytea` rows of the table `blobs`, so every
  replica reaches them with no shared file system to configure, and they are backed up and
  restored with the rest of the database (`pg_dump`).

What reads and writes the same in both databases is written once, in `sql.py` (with `?`
placeholders, rewritten to `%s` here); this module holds the schema, the connections and what
PostgreSQL does its own way (budget reservations shared by replicas, the pipelined group commit).
Adding a table means one migration in `_MIGRATIONS` and the same table in `sqlite.py`'s schema.

Schema versions: `_MIGRATIONS[v]` takes a database from version v-1 to v; they run at open under
a transaction-scoped advisory lock, so replicas starting together migrate once.
"""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager
from hashlib import sha256
from urllib.parse import urlparse

import numpy as np
import psycopg

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

_MIGRATION_LOCK = 0x4152454E41  # pg_advisory_xact_lock key: "ARENA"

_MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tokens (
    token_sha256 TEXT PRIMARY KEY, team TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL);
CREATE TABLE defenses (
    name TEXT PRIMARY KEY, team TEXT NOT NULL, status TEXT NOT NULL, description TEXT NOT NULL,
    sha256 TEXT NOT NULL, size_bytes BIGINT NOT NULL, num_classes INTEGER NOT NULL,
    clean_accuracy DOUBLE PRECISION NOT NULL, clean_correct BYTEA NOT NULL, rejection_reasons TEXT NOT NULL,
    serving_mode TEXT NOT NULL, submitted_at DOUBLE PRECISION NOT NULL);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, team TEXT NOT NULL, defense TEXT NOT NULL, attack TEXT NOT NULL,
    num_samples INTEGER NOT NULL, budget BIGINT NOT NULL, started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION);
-- budgets: one row per (account, sample); an account is a team's budget on a defense and split
-- (rows.account_key: team/defense/split), shared by the team's runs there (docs/rules.md section 4)
CREATE TABLE budget_usage (
    account TEXT NOT NULL, sample INTEGER NOT NULL, used BIGINT NOT NULL CHECK (used >= 0),
    PRIMARY KEY (account, sample));
-- what each run itself spent (the boards show it per attack entry)
CREATE TABLE usage (
    run_id TEXT NOT NULL, sample INTEGER NOT NULL, used BIGINT NOT NULL,
    PRIMARY KEY (run_id, sample));
-- a request id's answer; labels NULL: claimed by an attempt still running (its reservation made)
CREATE TABLE requests (
    run_id TEXT NOT NULL, request_id TEXT NOT NULL, digest BYTEA NOT NULL, labels BYTEA,
    remaining BYTEA, created_at DOUBLE PRECISION NOT NULL, adopted BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (run_id, request_id));
CREATE TABLE queries (
    run_id TEXT NOT NULL, sample INTEGER NOT NULL, image_sha256 BYTEA NOT NULL, label INTEGER NOT NULL,
    PRIMARY KEY (run_id, sample, image_sha256));
CREATE TABLE adversarials (
    run_id TEXT NOT NULL, sample INTEGER NOT NULL, distance DOUBLE PRECISION NOT NULL, label INTEGER NOT NULL,
    image BYTEA NOT NULL, found_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, sample));
CREATE TABLE blobs (digest TEXT PRIMARY KEY, data BYTEA NOT NULL);

-- All or nothing: adds p_counts[i] to (p_account, p_samples[i]) if every sample stays within
-- p_budget. p_samples must be sorted and distinct: rows are created and locked in that order, so
-- concurrent reservations never deadlock. Returns whether it was granted, and per sample the
-- count after it (granted) or as found (refused). Guards, first, when given:
-- - the request id p_request of p_run is not answered (else o_replay: nothing reserved);
-- - the run p_run is not finished (else o_closed);
-- - the request id p_request is not claimed (else, claimed by an
--   attempt still running or cut off (a retry that reached another replica), with the same digest
--   -> o_adopted (granted, nothing reserved: the claim's reservation pays for whichever attempt
--   answers first), another digest -> o_mismatch; unclaimed -> claimed here with the reservation.
CREATE FUNCTION arena_reserve(p_account TEXT, p_samples INTEGER[], p_counts BIGINT[], p_budget BIGINT,
                              p_run TEXT, p_request TEXT, p_digest BYTEA,
                              OUT o_granted BOOLEAN, OUT o_closed BOOLEAN, OUT o_replay BOOLEAN,
                              OUT o_adopted BOOLEAN, OUT o_mismatch BOOLEAN, OUT o_used BIGINT[])
LANGUAGE plpgsql AS $$
DECLARE
    v_answered BOOLEAN;
    v_digest BYTEA;
BEGIN
    -- no WAL flush for this commit: the answer is released only after the request's group commit,
    -- whose flush covers this earlier commit record too; a database crash before it loses the
    -- reservation and the answer together
    PERFORM set_config('synchronous_commit', 'off', true);
    o_granted := false; o_adopted := false; o_mismatch := false;
    -- an answered id replays, even once the run is finished
    o_replay := p_request IS NOT NULL AND EXISTS (
        SELECT 1 FROM requests WHERE run_id = p_run AND request_id = p_request AND labels IS NOT NULL);
    o_closed := NOT o_replay AND p_run IS NOT NULL AND EXISTS (
        SELECT 1 FROM runs WHERE run_id = p_run AND finished_at IS NOT NULL);
    IF o_replay OR o_closed THEN
        RETURN;
    END IF;
    IF p_request IS NOT NULL THEN
        -- claim the id; a concurrent claim makes this wait for its transaction, then conflict
        INSERT INTO requests(run_id, request_id, digest, created_at)
            VALUES (p_run, p_request, p_digest, extract(epoch FROM clock_timestamp()))
            ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            SELECT r.labels IS NOT NULL, r.digest INTO v_answered, v_digest
                FROM requests r WHERE r.run_id = p_run AND r.request_id = p_request FOR UPDATE;
            IF v_answered THEN
                o_replay := true;
            ELSIF v_digest <> p_digest THEN
                o_mismatch := true;
            ELSE
                UPDATE requests SET adopted = true WHERE run_id = p_run AND request_id = p_request;
                o_adopted := true;
                o_granted := true;
            END IF;
            RETURN;
        END IF;
    END IF;
    INSERT INTO budget_usage(account, sample, used)
        SELECT p_account, s, 0 FROM unnest(p_samples) AS s ORDER BY s ON CONFLICT DO NOTHING;
    PERFORM 1 FROM budget_usage u WHERE u.account = p_account AND u.sample = ANY(p_samples)
        ORDER BY u.sample FOR UPDATE;
    SELECT coalesce(bool_and(u.used + r.n <= p_budget), true), array_agg(u.used ORDER BY r.sample)
        INTO o_granted, o_used
        FROM unnest(p_samples, p_counts) AS r(sample, n)
        JOIN budget_usage u ON u.account = p_account AND u.sample = r.sample;
    IF o_granted THEN
        UPDATE budget_usage u SET used = u.used + r.n FROM unnest(p_samples, p_counts) AS r(sample, n)
            WHERE u.account = p_account AND u.sample = r.sample;
        SELECT array_agg(u.used ORDER BY u.sample) INTO o_used
            FROM budget_usage u WHERE u.account = p_account AND u.sample = ANY(p_samples);
    ELSIF p_request IS NOT NULL THEN   -- refused: the claim goes too
        DELETE FROM requests WHERE run_id = p_run AND request_id = p_request;
    END IF;
END $$;

-- Gives back what arena_reserve took (a request that failed before its answer), with its claim on
-- p_request; not if another attempt adopted the claim (that attempt's answer is what it paid).
CREATE FUNCTION arena_release(p_account TEXT, p_samples INTEGER[], p_counts BIGINT[], p_run TEXT,
                              p_request TEXT) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);   -- lost in a crash: an overcharge, never a gift
    IF p_request IS NOT NULL THEN
        DELETE FROM requests WHERE run_id = p_run AND request_id = p_request AND labels IS NULL AND NOT adopted;
        IF NOT FOUND THEN
            RETURN;
        END IF;
    END IF;
    PERFORM 1 FROM budget_usage u WHERE u.account = p_account AND u.sample = ANY(p_samples)
        ORDER BY u.sample FOR UPDATE;
    UPDATE budget_usage u SET used = greatest(u.used - r.n, 0) FROM unnest(p_samples, p_counts) AS r(sample, n)
        WHERE u.account = p_account AND u.sample = r.sample;
END $$;
""",
    # 2: competition rules v2 (docs/rules.md): splits, phases, roles, organizer actions, disqualification
    2: """
ALTER TABLE tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'team', ADD COLUMN revoked_at DOUBLE PRECISION;
ALTER TABLE defenses ADD COLUMN disqualified_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN split TEXT NOT NULL DEFAULT 'public',
    ADD COLUMN attack_config_digest TEXT NOT NULL DEFAULT '',
    ADD COLUMN disqualified_reason TEXT NOT NULL DEFAULT '';
CREATE TABLE actions (
    id BIGSERIAL PRIMARY KEY, at DOUBLE PRECISION NOT NULL, organizer TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT NOT NULL, reason TEXT NOT NULL);
INSERT INTO meta(key, value) VALUES ('phase', 'open') ON CONFLICT DO NOTHING;
""",
}


@functools.lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    """The shared statements' `?` placeholders as psycopg's `%s` (none of them holds a literal ? or %)."""
    return sql.replace("?", "%s")


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@", 1)
    return url


class PostgresBlobs:
    """Content-addressed blobs as rows (digest -> bytea), reachable from every replica."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def put(self, data: bytes | memoryview) -> str:
        digest = sha256(data).hexdigest()
        with self._store._transaction() as conn:
            conn.execute("INSERT INTO blobs(digest, data) VALUES (%s, %s) ON CONFLICT (digest) DO NOTHING",
                         (digest, bytes(data)))
        return digest

    def get(self, digest: str) -> bytes:
        row = self._store._read("SELECT data FROM blobs WHERE digest = %s", (digest,)).fetchone()
        if row is None:
            raise StoreError(f"blob {digest} is missing")
        data = bytes(row[0])
        if sha256(data).hexdigest() != digest:
            raise StoreError(f"blob {digest} is corrupt (its content does not match its name)")
        return data


class PostgresStore(SqlStore):
    """PostgreSQL: one connection per thread (autocommit; writes in explicit transactions), so a
    replica holds about as many connections as it has threads touching the store (up to ~20)."""

    shared_ledger = True
    _ACTIONS_ORDER = "id"

    def __init__(self, url: str, *, durability: str = "full") -> None:
        if durability not in ("full", "normal"):
            raise StoreError(f"durability must be 'full' or 'normal', got {durability!r}")
        self.url = url
        self._display = _redact(url)
        # normal: commits return before the WAL is flushed (survives a replica's kill -9, not a
        # crash of the database server itself)
        self._synchronous_commit = "on" if durability == "full" else "off"
        self.blobs = PostgresBlobs(self)
        self._local = threading.local()
        self._connections: dict[threading.Thread, psycopg.Connection] = {}
        self._connections_lock = threading.Lock()
        self._closed = False
        self._migrate()

    # -------------------------------------------------------------- connections and schema

    def _connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=30)
            conn.execute(f"SET synchronous_commit = {self._synchronous_commit}")
        except psycopg.Error as error:
            raise StoreError(f"{self._display}: cannot connect to PostgreSQL ({_one_line(error)})") from None
        with self._connections_lock:
            # threads come and go (the HTTP report's, one per request): their connections go with them
            for thread in [t for t in self._connections if not t.is_alive()]:
                self._connections.pop(thread).close()
            old = self._connections.pop(threading.current_thread(), None)
            if old is not None:
                old.close()
            self._connections[threading.current_thread()] = conn
        return conn

    def _reader(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            if self._closed:
                raise StoreError("the store is closed")
            conn = self._connect()
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self, pipeline: bool = False):
        """A transaction on this thread's connection; `pipeline`: BEGIN, the statements and COMMIT
        go out together and come back in one round trip (the group commit)."""
        if self._closed:
            raise StoreError("the store is closed")
        conn = self._reader()
        try:
            if pipeline:
                with conn.pipeline(), conn.transaction():
                    yield conn
            else:
                with conn.transaction():
                    yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:  # lost: the next call reconnects
            self._local.conn = None
            raise StoreError(f"{self._display}: {_one_line(error)}") from None

    def _read(self, sql: str, params=None) -> psycopg.Cursor:
        """One statement in autocommit on this thread's connection; a lost connection is a
        StoreError (clients see UNAVAILABLE and retry) and the next call reconnects."""
        if self._closed:
            raise StoreError("the store is closed")
        try:
            return self._reader().execute(sql, params)
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            self._local.conn = None
            raise StoreError(f"{self._display}: {_one_line(error)}") from None

    def _sql(self, sql: str) -> str:
        return _placeholders(sql)

    def _statement(self, sql: str, params) -> tuple:
        """One statement, atomic on its own (one round trip): its first row."""
        return self._read(sql, params).fetchone()

    def _migrate(self) -> None:
        with self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            exists = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]
            version = 0
            if exists:
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self._display}: schema version {version}, this arena reads version "
                                 f"{SCHEMA_VERSION} (a newer arena wrote it)")
            for step in range(version + 1, SCHEMA_VERSION + 1):
                conn.execute(_MIGRATIONS[step])
            if version != SCHEMA_VERSION:
                conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', %s)"
                             " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))
            if version == 0:   # a new database (Store.image_digest)
                conn.execute("INSERT INTO meta(key, value) VALUES ('image_digest', %s) ON CONFLICT (key) DO NOTHING",
                             (IMAGE_DIGESTS[0],))
            digest = conn.execute("SELECT value FROM meta WHERE key = 'image_digest'").fetchone()
            self.image_digest = digest[0] if digest else LEGACY_IMAGE_DIGEST

    def close(self) -> None:
        self._closed = True
        with self._connections_lock:
            for conn in self._connections.values():
                try:
                    conn.close()
                except psycopg.Error:
                    pass
            self._connections.clear()

    # -------------------------------------------------------------- what PostgreSQL does its own way

    def init_evaluation(self, meta: EvaluationMeta) -> None:
        value = meta.to_json()
        with self._transaction() as conn:
            conn.execute("INSERT INTO meta(key, value) VALUES ('evaluation', %s) ON CONFLICT DO NOTHING", (value,))
        pinned = self.evaluation()
        if pinned.fingerprint != meta.fingerprint:  # another replica pinned another set meanwhile
            raise StoreError(f"this store was created with another evaluation set ({pinned.num_samples} samples "
                             f"from {pinned.source!r})")

    def put_defense(self, row: DefenseRow, require_open: bool = False, team_cap: int | None = None) -> None:
        """Inserts a defense; replaces an existing one only if it was rejected (same name). With
        `require_open`, refused (PhaseClosed) unless the phase is open: the phase row is read FOR
        SHARE in the same transaction, so a concurrent switch to the final phase (which updates it)
        lands before this insert or after it, never in between."""
        with self._transaction() as conn:
            if require_open:
                phase = conn.execute("SELECT value FROM meta WHERE key = 'phase' FOR SHARE").fetchone()
                if phase is not None and phase[0] != OPEN:
                    raise PhaseClosed("submissions are closed: the competition is in its final phase")
            old = conn.execute("SELECT status FROM defenses WHERE name = %s FOR UPDATE", (row.name,)).fetchone()
            if old is not None and old[0] != "rejected":
                raise StoreError(f"defense {row.name!r} already exists")
            if team_cap is not None:   # one team's inserts one at a time, so that its count stays true
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("arena-defenses-of/" + row.team,))
                if self._count_accepted(conn, row.team) >= team_cap:
                    raise CapReached(f"team {row.team!r} already has {team_cap} accepted defenses")
            written = conn.execute(
                self._sql(f"INSERT INTO defenses({DEFENSE_COLUMNS}) VALUES ({placeholders(13)})"
                " ON CONFLICT (name) DO UPDATE SET team = excluded.team, status = excluded.status,"
                " description = excluded.description, sha256 = excluded.sha256,"
                " size_bytes = excluded.size_bytes, num_classes = excluded.num_classes,"
                " clean_accuracy = excluded.clean_accuracy, clean_correct = excluded.clean_correct,"
                " rejection_reasons = excluded.rejection_reasons, serving_mode = excluded.serving_mode,"
                " submitted_at = excluded.submitted_at WHERE defenses.status = 'rejected' RETURNING 1"),
                defense_values(row)).fetchone()
            if written is None:  # accepted meanwhile by another replica
                raise StoreError(f"defense {row.name!r} already exists")

    def query_labels(self, run_id: str, keys: list[tuple[int, bytes]]) -> dict[tuple[int, bytes], int]:
        keys = list(set(keys))
        if not keys:
            return {}
        rows = self._read(
            "SELECT q.sample, q.image_sha256, q.label FROM queries q"
            " JOIN unnest(%s::integer[], %s::bytea[]) AS k(sample, image_sha256)"
            " ON q.sample = k.sample AND q.image_sha256 = k.image_sha256 WHERE q.run_id = %s",
            ([int(s) for s, _ in keys], [d for _, d in keys], run_id))
        return {(int(s), bytes(d)): int(label) for s, d, label in rows}

    # -------------------------------------------------------------- budgets shared by replicas

    def reserve(self, account: str, samples: np.ndarray, counts: np.ndarray, budget: int, *,
                run_id: str | None = None, request_id: str | None = None,
                digest: bytes | None = None) -> Reservation:
        """See `Store.reserve`; with a request id, also claims it for the replicas (arena_reserve)."""
        samples, counts = merged_counts(samples, counts)
        if request_id is not None and (run_id is None or digest is None):
            raise ValueError("a request id is claimed within a run, with the request's digest")
        granted, closed, replay, adopted, mismatch, used = self._statement(   # one statement, one round trip
            "SELECT o_granted, o_closed, o_replay, o_adopted, o_mismatch, o_used"
            " FROM arena_reserve(%s, %s::integer[], %s::bigint[], %s, %s, %s, %s)",
            (account, samples.tolist(), counts.tolist(), int(budget), run_id, request_id, digest))
        return Reservation(bool(granted), samples, np.asarray(used or [], dtype=np.int64), closed=bool(closed),
                           replay=bool(replay), adopted=bool(adopted), mismatch=bool(mismatch))

    def release(self, account: str, samples: np.ndarray, counts: np.ndarray, *, run_id: str | None = None,
                request_id: str | None = None) -> None:
        samples, counts = merged_counts(samples, counts)
        if samples.size == 0 and request_id is None:
            return
        self._statement("SELECT arena_release(%s, %s::integer[], %s::bigint[], %s, %s)",
                        (account, samples.tolist(), counts.tolist(), run_id, request_id))

    # -------------------------------------------------------------- the write path

    def write(self, ops: list[WriteOp]) -> None:
        grouped = group_ops(ops)
        with self._transaction(pipeline=True) as conn, conn.cursor() as cur:
            self._apply(lambda sql, rows: cur.executemany(self._sql(sql), rows), grouped)
