"""What the two SQL backends share: every statement that reads or writes the same way in SQLite and
PostgreSQL, written once with `?` placeholders (`SqlStore`), and the grouping of a commit's write
operations (`group_ops`).

A backend supplies its connections (`_read`: one autocommit statement; `_transaction`: a write
transaction yielding a connection), its placeholder (`_sql` rewrites `?`), and what differs between
the databases: the schema, budget reservations, `put_defense`, `query_labels`, and how the group
commit's statements are sent (`write` hands `_apply` its executemany).
"""

from __future__ import annotations

import abc
import json
import time
from dataclasses import dataclass, field

import numpy as np

from arena.ground.contract import DefenseStatus
from arena.server.store.base import Store
from arena.server.store.rows import (
    OPEN,
    PHASES,
    TEAM,
    Action,
    AdversarialRecord,
    AdversarialRow,
    Charge,
    DefenseRow,
    EvaluationMeta,
    FinishRun,
    NameTaken,
    QueryRecord,
    RequestRecord,
    RunRow,
    RunSpend,
    StoredRequest,
    StoreError,
    WriteOp,
)

DEFENSE_COLUMNS = ("name, team, status, description, sha256, size_bytes, num_classes, clean_accuracy,"
                   " clean_correct, rejection_reasons, serving_mode, submitted_at, disqualified_reason")
RUN_COLUMNS = ("run_id, team, defense, attack, num_samples, budget, started_at, finished_at, split,"
               " attack_config_digest, disqualified_reason")


def defense_values(row: DefenseRow) -> tuple:
    """A DefenseRow as the values of DEFENSE_COLUMNS."""
    return (row.name, row.team, DefenseStatus(row.status).value, row.description, row.sha256, int(row.size_bytes),
            int(row.num_classes), float(row.clean_accuracy), np.asarray(row.clean_correct, dtype=np.bool_).tobytes(),
            json.dumps(list(row.rejection_reasons)), row.serving_mode, float(row.submitted_at),
            row.disqualified_reason)


def placeholders(n: int) -> str:
    return ", ".join("?" * n)


@dataclass
class GroupedOps:
    """One commit's write operations, merged per (run, sample) where they add up."""

    charges: dict[tuple[str, int], int] = field(default_factory=dict)   # also charged to the run's account
    spends: dict[tuple[str, int], int] = field(default_factory=dict)    # the run's own usage only
    requests: list[tuple] = field(default_factory=list)
    queries: list[tuple] = field(default_factory=list)
    adversarials: list[tuple] = field(default_factory=list)
    finishes: list[tuple] = field(default_factory=list)

    def spent(self) -> dict[tuple[str, int], int]:
        """Per (run, sample), what the run itself spent: its charges and its shared-ledger spends."""
        return {key: self.spends.get(key, 0) + self.charges.get(key, 0)
                for key in self.spends.keys() | self.charges.keys()}


def group_ops(ops: list[WriteOp]) -> GroupedOps:
    grouped = GroupedOps()
    for op in ops:
        if isinstance(op, (Charge, RunSpend)):
            into = grouped.charges if isinstance(op, Charge) else grouped.spends
            key = (op.run_id, int(op.sample))
            into[key] = into.get(key, 0) + int(op.count)
        elif isinstance(op, RequestRecord):
            grouped.requests.append((op.run_id, op.request_id, op.digest, op.labels, op.remaining, op.created_at))
        elif isinstance(op, QueryRecord):
            grouped.queries.append((op.run_id, int(op.sample), op.image_digest, int(op.label)))
        elif isinstance(op, AdversarialRecord):
            grouped.adversarials.append((op.run_id, int(op.sample), float(op.distance), int(op.label), op.image,
                                         float(op.found_at)))
        elif isinstance(op, FinishRun):
            grouped.finishes.append((op.finished_at, op.run_id))
        else:
            raise TypeError(f"unknown write operation {op!r}")
    return grouped


class SqlStore(Store):
    """The statements SQLite and PostgreSQL run alike. Subclasses provide the connections."""

    _ACTIONS_ORDER = "rowid"    # the column that orders the organizer's actions as they were taken

    @abc.abstractmethod
    def _read(self, sql: str, params=()):
        """Runs one reading statement (already in this backend's placeholders); returns its cursor."""

    @abc.abstractmethod
    def _transaction(self):
        """A context manager: one write transaction, yielding its connection."""

    def _sql(self, sql: str) -> str:
        """`sql` with this backend's placeholders (SQLite's are `?`)."""
        return sql

    def _query(self, sql: str, params=()):
        return self._read(self._sql(sql), params)

    def _exec(self, conn, sql: str, params=()):
        return conn.execute(self._sql(sql), params)

    # -------------------------------------------------------------- evaluation set, phase, budget

    def _meta(self, key: str) -> str | None:
        row = self._query("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: str, action: Action | None) -> None:
        with self._transaction() as conn:
            self._exec(conn, "INSERT INTO meta(key, value) VALUES (?, ?)"
                             " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))
            self._record(conn, action)

    def evaluation(self) -> EvaluationMeta | None:
        value = self._meta("evaluation")
        return None if value is None else EvaluationMeta.from_json(value)

    def phase(self) -> str:
        return self._meta("phase") or OPEN

    def set_phase(self, phase: str, action: Action | None = None) -> None:
        if phase not in PHASES:
            raise StoreError(f"phase must be one of {PHASES}, got {phase!r}")
        self._set_meta("phase", phase, action)

    def budget(self) -> int | None:
        value = self._meta("budget")
        return None if value is None else int(value)

    def set_budget(self, budget: int, action: Action | None = None) -> None:
        self._set_meta("budget", str(int(budget)), action)

    # -------------------------------------------------------------- tokens

    def add_token(self, team: str, token_sha256: str, role: str = TEAM, action: Action | None = None) -> None:
        with self._transaction() as conn:
            # a team is one identity: a token of another role under its name would read its runs
            if self._exec(conn, "SELECT 1 FROM tokens WHERE team = ? AND role <> ?", (team, role)).fetchone():
                raise NameTaken(f"team {team!r} already exists with another role")
            self._exec(conn, "INSERT INTO tokens(token_sha256, team, created_at, role) VALUES (?, ?, ?, ?)",
                       (token_sha256, team, time.time(), role))
            self._record(conn, action)

    def team_for_token(self, token_sha256: str) -> str | None:
        identity = self.token_identity(token_sha256)
        return None if identity is None else identity[0]

    def token_identity(self, token_sha256: str) -> tuple[str, str] | None:
        row = self._query("SELECT team, role FROM tokens WHERE token_sha256 = ? AND revoked_at IS NULL",
                          (token_sha256,)).fetchone()
        return None if row is None else (row[0], row[1])

    def organizer_teams(self) -> set[str]:
        return {r[0] for r in self._query("SELECT DISTINCT team FROM tokens WHERE role = 'organizer'").fetchall()}

    def revoke_tokens(self, team: str, action: Action | None = None) -> int:
        with self._transaction() as conn:
            count = self._exec(conn, "UPDATE tokens SET revoked_at = ? WHERE team = ? AND revoked_at IS NULL",
                               (time.time(), team)).rowcount
            self._record(conn, action)
        return int(count)

    # -------------------------------------------------------------- the organizer (rules v2)

    def disqualify(self, kind: str, name: str, reason: str, action: Action | None = None) -> bool:
        table, key = {"defense": ("defenses", "name"), "run": ("runs", "run_id")}[kind]
        with self._transaction() as conn:
            found = self._exec(conn, f"UPDATE {table} SET disqualified_reason = ? WHERE {key} = ?",
                               (reason, name)).rowcount
            if found:
                self._record(conn, action)
        return bool(found)

    def actions(self) -> list[Action]:
        rows = self._query(f"SELECT at, organizer, action, target, reason FROM actions ORDER BY {self._ACTIONS_ORDER}")
        return [Action(float(a), o, act, t, r) for a, o, act, t, r in rows]

    def _record(self, conn, action: Action | None) -> None:
        """Every organizer write records its Action in the same transaction."""
        if action is not None:
            self._exec(conn, "INSERT INTO actions(at, organizer, action, target, reason) VALUES (?, ?, ?, ?, ?)",
                       (action.at, action.organizer, action.action, action.target, action.reason))

    # -------------------------------------------------------------- defenses

    @staticmethod
    def _defense(r) -> DefenseRow:
        return DefenseRow(
            name=r[0], team=r[1], status=DefenseStatus(r[2]), description=r[3], sha256=r[4], size_bytes=int(r[5]),
            num_classes=int(r[6]), clean_accuracy=float(r[7]),
            clean_correct=np.frombuffer(bytes(r[8]), dtype=np.bool_).copy(),
            rejection_reasons=tuple(json.loads(r[9])), serving_mode=r[10], submitted_at=float(r[11]),
            disqualified_reason=r[12],
        )

    def get_defense(self, name: str) -> DefenseRow | None:
        r = self._query(f"SELECT {DEFENSE_COLUMNS} FROM defenses WHERE name = ?", (name,)).fetchone()
        return None if r is None else self._defense(r)

    def list_defenses(self) -> list[DefenseRow]:
        rows = self._query(f"SELECT {DEFENSE_COLUMNS} FROM defenses ORDER BY submitted_at, name")
        return [self._defense(r) for r in rows.fetchall()]

    # -------------------------------------------------------------- the organizer's caps (rules v3)

    @staticmethod
    def _submissions_key(team: str, day: str) -> str:
        return f"submissions/{day}/{team}"

    def take_submission(self, team: str, day: str, cap: int) -> bool:
        # one conditional upsert: two replicas counting at once cannot both pass the cap
        with self._transaction() as conn:
            return self._exec(
                conn, "INSERT INTO meta(key, value) SELECT ?, '1' WHERE ? > 0 ON CONFLICT (key) DO UPDATE"
                      " SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT) WHERE CAST(meta.value AS INTEGER) < ?",
                (self._submissions_key(team, day), int(cap), int(cap))).rowcount == 1

    def return_submission(self, team: str, day: str) -> None:
        with self._transaction() as conn:
            self._exec(conn, "UPDATE meta SET value = CAST(CAST(value AS INTEGER) - 1 AS TEXT)"
                             " WHERE key = ? AND CAST(value AS INTEGER) > 0", (self._submissions_key(team, day),))

    def _count_accepted(self, conn, team: str) -> int:
        return int(self._exec(conn, "SELECT COUNT(*) FROM defenses WHERE team = ? AND status = 'accepted'"
                                    " AND disqualified_reason = ''", (team,)).fetchone()[0])

    def set_clean_correct(self, name: str, clean_correct: np.ndarray) -> None:
        with self._transaction() as conn:
            self._exec(conn, "UPDATE defenses SET clean_correct = ? WHERE name = ? AND status = 'accepted'",
                       (np.asarray(clean_correct, dtype=np.bool_).tobytes(), name))

    # -------------------------------------------------------------- runs

    def create_run(self, row: RunRow) -> None:
        with self._transaction() as conn:
            self._exec(conn, f"INSERT INTO runs({RUN_COLUMNS}) VALUES ({placeholders(11)})",
                       (row.run_id, row.team, row.defense, row.attack, row.num_samples, row.budget,
                        row.started_at, row.finished_at, row.split, row.attack_config_digest,
                        row.disqualified_reason))

    @staticmethod
    def _run(r) -> RunRow:
        return RunRow(run_id=r[0], team=r[1], defense=r[2], attack=r[3], num_samples=int(r[4]),
                      budget=int(r[5]), started_at=float(r[6]), finished_at=None if r[7] is None else float(r[7]),
                      split=r[8], attack_config_digest=r[9], disqualified_reason=r[10])

    def get_run(self, run_id: str) -> RunRow | None:
        r = self._query(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if r is None else self._run(r)

    def list_runs(self) -> list[RunRow]:
        rows = self._query(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at, run_id")
        return [self._run(r) for r in rows.fetchall()]

    def _per_sample(self, sql: str, key: str, num_samples: int, fill, dtype) -> np.ndarray:
        values = np.full(num_samples, fill, dtype=dtype)
        for sample, value in self._query(sql, (key,)):
            if sample < num_samples:
                values[sample] = value
        return values

    def budget_usage(self, account: str, num_samples: int) -> np.ndarray:
        return self._per_sample("SELECT sample, used FROM budget_usage WHERE account = ?", account, num_samples,
                                0, np.int64)

    def usage(self, run_id: str, num_samples: int) -> np.ndarray:
        return self._per_sample("SELECT sample, used FROM usage WHERE run_id = ?", run_id, num_samples, 0, np.int64)

    def best_distances(self, run_id: str, num_samples: int) -> np.ndarray:
        return self._per_sample("SELECT sample, distance FROM adversarials WHERE run_id = ?", run_id, num_samples,
                                np.inf, np.float64)

    def adversarials(self, run_id: str) -> list[AdversarialRow]:
        rows = self._query(
            "SELECT sample, distance, label, image, found_at FROM adversarials WHERE run_id = ? ORDER BY sample",
            (run_id,))
        return [AdversarialRow(int(s), float(d), int(lab), bytes(img), float(t)) for s, d, lab, img, t in rows]

    # -------------------------------------------------------------- replays (labels NULL: a claim, not an answer)

    def get_request(self, run_id: str, request_id: str) -> StoredRequest | None:
        r = self._query("SELECT digest, labels, remaining FROM requests WHERE run_id = ? AND request_id = ?"
                        " AND labels IS NOT NULL", (run_id, request_id)).fetchone()
        if r is None:
            return None
        return StoredRequest(bytes(r[0]), np.frombuffer(bytes(r[1]), dtype="<i4").copy(),
                             np.frombuffer(bytes(r[2]), dtype="<u4").copy())

    def request_ids(self, run_id: str) -> set[str]:
        rows = self._query("SELECT request_id FROM requests WHERE run_id = ? AND labels IS NOT NULL", (run_id,))
        return {r[0] for r in rows}

    # -------------------------------------------------------------- the write path

    def _apply(self, executemany, ops: GroupedOps) -> None:
        """One commit's statements, through the backend's `executemany(sql, rows)` inside its
        transaction. Rows are sorted and budget rows come first: the lock order of PostgreSQL's
        arena_reserve, so two replicas' commits and reservations never deadlock."""
        if ops.charges:
            # a server with its ledger in memory: the same charge on the budget account the run
            # spends (rows.account_key in SQL; "AND true": SQLite's upsert after a SELECT needs a WHERE)
            executemany(
                "INSERT INTO budget_usage(account, sample, used)"
                " SELECT team || '/' || defense || '/' || split, ?, ? FROM runs WHERE run_id = ? AND true"
                " ON CONFLICT (account, sample) DO UPDATE SET used = budget_usage.used + excluded.used",
                [(s, c, r) for (r, s), c in sorted(ops.charges.items())])
        spent = ops.spent()
        if spent:
            executemany(
                "INSERT INTO usage(run_id, sample, used) VALUES (?, ?, ?)"
                " ON CONFLICT (run_id, sample) DO UPDATE SET used = usage.used + excluded.used",
                [(r, s, c) for (r, s), c in sorted(spent.items())])
        if ops.requests:
            executemany(
                "INSERT INTO requests(run_id, request_id, digest, labels, remaining, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                # fills a replica's claim (PostgreSQL: labels NULL); an attempt that answered first
                # (a retry on another replica adopting the claim, or its original) stays the answer replayed
                " ON CONFLICT (run_id, request_id) DO UPDATE SET labels = excluded.labels,"
                " remaining = excluded.remaining, created_at = excluded.created_at"
                " WHERE requests.labels IS NULL", sorted(ops.requests))
        if ops.queries:
            executemany("INSERT INTO queries(run_id, sample, image_sha256, label) VALUES (?, ?, ?, ?)"
                        " ON CONFLICT DO NOTHING", ops.queries)
        if ops.adversarials:
            executemany(
                "INSERT INTO adversarials(run_id, sample, distance, label, image, found_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, sample) DO UPDATE SET"
                " distance = excluded.distance, label = excluded.label, image = excluded.image,"
                " found_at = excluded.found_at WHERE excluded.distance < adversarials.distance",
                ops.adversarials)
        if ops.finishes:
            executemany("UPDATE runs SET finished_at = ? WHERE run_id = ? AND finished_at IS NULL", ops.finishes)
