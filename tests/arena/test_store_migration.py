"""Runs record the attack's configuration digest (rules v2, docs/rules.md section 6: a board names an
attack by team and name; the digest shows two configurations under one name). A store of schema
version 1 is refused with what to do (tests/arena/test_rules_v2.py)."""

from __future__ import annotations

from arena.server.store import RunRow, open_store


def test_digest_is_stored_with_the_run(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/arena.db")
    store.create_run(RunRow(run_id="r", team="t", defense="d", attack="cgba", num_samples=3, budget=10,
                            started_at=1.0, finished_at=None, attack_config_digest="ab" * 32))
    assert store.get_run("r").attack_config_digest == "ab" * 32
    assert store.list_runs()[0].attack_config_digest == "ab" * 32
    store.close()
