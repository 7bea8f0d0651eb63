"""Runs record the attack's configuration digest; a store written before that column existed
(schema version 1) is migrated in place when opened, and its runs read with an empty digest."""

from __future__ import annotations

import sqlite3

import pytest

from arena.store import SCHEMA_VERSION, RunRow, StoreError, open_store

# The runs table and meta rows exactly as schema version 1 wrote them.
V1_RUNS = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, team TEXT NOT NULL, defense TEXT NOT NULL, attack TEXT NOT NULL,
    num_samples INTEGER NOT NULL, budget INTEGER NOT NULL, started_at REAL NOT NULL, finished_at REAL);
INSERT INTO meta(key, value) VALUES ('schema_version', '1');
INSERT INTO runs VALUES ('old', 'red', 'trades', 'hsja', 10, 1000, 1.0, 2.0);
"""


def test_digest_is_stored_with_the_run(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/arena.db")
    store.create_run(RunRow(run_id="r", team="t", defense="d", attack="cgba", num_samples=3, budget=10,
                            started_at=1.0, finished_at=None, attack_config_digest="ab" * 32))
    assert store.get_run("r").attack_config_digest == "ab" * 32
    assert store.list_runs()[0].attack_config_digest == "ab" * 32


def test_version_1_store_is_migrated(tmp_path):
    path = tmp_path / "arena.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_RUNS)
    store = open_store(f"sqlite:///{path}")
    old = store.get_run("old")
    assert (old.attack, old.finished, old.attack_config_digest) == ("hsja", True, "")
    store.create_run(RunRow(run_id="new", team="t", defense="d", attack="cgba", num_samples=3, budget=10,
                            started_at=3.0, finished_at=None, attack_config_digest="cd" * 32))
    assert [r.attack_config_digest for r in store.list_runs()] == ["", "cd" * 32]
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    assert open_store(f"sqlite:///{path}").get_run("old").attack_config_digest == ""  # opens again, no re-migration


def test_unknown_schema_version_is_refused(tmp_path):
    path = tmp_path / "arena.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_RUNS.replace("'schema_version', '1'", "'schema_version', '99'"))
    with pytest.raises(StoreError, match="schema version 99"):
        open_store(f"sqlite:///{path}")
