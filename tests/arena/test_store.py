"""The storage layer: URLs, content-addressed blobs, the pinned evaluation set, records, budget
reservations. Every test taking `store_url` runs against both backends (SQLite, and PostgreSQL on
the session's throwaway server)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from arena.server import evaluation
from arena.server.records import build_records
from arena.server.store import (
    SCHEMA_VERSION,
    AdversarialRecord,
    Charge,
    DefenseRow,
    FinishRun,
    RequestRecord,
    RunRow,
    StoreError,
    open_store,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/db/arena.db"
    return request.getfixturevalue("postgres_url")


def tamper(store, digest: str) -> None:
    """Overwrites a blob's content behind the store's back."""
    if store.url.startswith("sqlite"):
        store.blobs.path(digest).write_bytes(b"tampered")
    else:
        with store._transaction() as conn:
            conn.execute("UPDATE blobs SET data = %s WHERE digest = %s", (b"tampered", digest))


def defense(name, status="accepted", team="t", n=3):
    return DefenseRow(name=name, team=team, status=status, description="", sha256="0" * 64, size_bytes=1,
                      num_classes=10, clean_accuracy=2 / 3, clean_correct=np.array([True, False, True][:n]),
                      rejection_reasons=() if status == "accepted" else ("x",), serving_mode="batched",
                      submitted_at=1.0)


def test_urls(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/a/arena.db")
    assert (tmp_path / "a" / "arena.db").exists() and store.url.startswith("sqlite:///")
    store.close()
    store = open_store(tmp_path / "b")                       # a folder -> sqlite under it
    assert (tmp_path / "b" / "arena.db").exists()
    assert store._reader().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    with pytest.raises(StoreError, match="unsupported scheme"):
        open_store("mysql://localhost/arena")


def test_postgres_urls_and_schema_version(postgres, postgres_url):
    from arena.server.store.postgres import PostgresStore

    store = open_store(postgres_url)
    assert isinstance(store, PostgresStore) and store.shared_ledger
    with store._transaction() as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    store.close()
    with pytest.raises(StoreError, match="schema version 99"):
        open_store(postgres_url)
    with pytest.raises(StoreError, match="cannot connect"):
        open_store(postgres.url("no_such_database"))
    # replicas opening a new database together migrate it once
    fresh = postgres.new_database()
    stores: list = []
    threads = [threading.Thread(target=lambda: stores.append(open_store(fresh))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(stores) == 4
    for s in stores:
        s.close()


def test_blobs_are_content_addressed(store_url):
    store = open_store(store_url)
    digest = store.blobs.put(b"model bytes")
    assert store.blobs.put(b"model bytes") == digest
    assert store.blobs.get(digest) == b"model bytes"
    tamper(store, digest)
    with pytest.raises(StoreError, match="corrupt"):
        store.blobs.get(digest)
    store.close()


def test_sqlite_blobs_are_files(tmp_path):
    store = open_store(tmp_path)
    digest = store.blobs.put(b"model bytes")
    assert store.blobs.path(digest).name == digest and store.blobs.path(digest).read_bytes() == b"model bytes"
    store.close()


def test_evaluation_set_is_pinned(store_url):
    rng = np.random.default_rng(0)
    x = rng.random((3, 3, 64, 64), dtype=np.float32)
    data = evaluation.from_arrays(x, np.array([0, 1, 2]))
    store = open_store(store_url)
    evaluation.pin(store, data, "test")
    evaluation.pin(store, data, "test again")                # same set: fine
    other = evaluation.from_arrays(x[:2], np.array([0, 1]))
    with pytest.raises(StoreError, match="another evaluation set"):
        evaluation.pin(store, other, "other")
    back = evaluation.from_store(store)
    assert np.array_equal(back.images, x) and back.labels.tolist() == [0, 1, 2]
    assert np.allclose(back.worst_case, data.worst_case)
    store.close()


def test_records_and_write_ops(store_url):
    rng = np.random.default_rng(0)
    x = rng.random((3, 3, 64, 64), dtype=np.float32)
    store = open_store(store_url)
    evaluation.pin(store, evaluation.from_arrays(x, np.array([0, 1, 2])), "test")
    store.put_defense(defense("d1"))
    store.put_defense(defense("bad", status="rejected", n=0))
    with pytest.raises(StoreError):
        store.put_defense(defense("d1"))                     # accepted names are final
    store.put_defense(defense("bad"))                         # a rejected one may be replaced
    store.create_run(RunRow("r1", "t", "d1", "atk", 3, 10, 5.0, None))
    store.write([Charge("r1", 0, 2), Charge("r1", 0, 1), Charge("r1", 2, 4),
                 AdversarialRecord("r1", 1, 0.5, 3, x[1].tobytes(), 6.0)])
    store.write([AdversarialRecord("r1", 1, 0.7, 4, x[0].tobytes(), 7.0),   # farther: ignored
                 AdversarialRecord("r1", 2, 0.2, 4, x[2].tobytes(), 7.0), FinishRun("r1", 8.0)])
    assert store.usage("r1", 3).tolist() == [3, 0, 4]
    defenses, runs, ev = build_records(store)
    assert sorted(d.name for d in defenses) == ["bad", "d1"]
    assert [d for d in defenses if d.name == "d1"][0].clean_correct.tolist() == [True, False, True]
    (run,) = runs
    assert run.finished and run.distances.tolist() == [np.inf, 0.5, 0.2]
    assert ev.num_samples == 3
    (adv1, adv2) = store.adversarials("r1")
    assert adv1.label == 3 and adv1.image == x[1].tobytes()
    store.close()
    # the records builder also takes a URL
    defenses, runs, ev = build_records(store_url)
    assert len(runs) == 1


def test_reserve_is_all_or_nothing(store_url):
    store = open_store(store_url)
    # unsorted, repeated, zero counts: merged per sample
    r = store.reserve("run-a", np.array([2, 0, 2, 1]), np.array([1, 3, 2, 0]), budget=5)
    assert r.granted and r.samples.tolist() == [0, 2] and r.used.tolist() == [3, 3]
    r = store.reserve("run-a", np.array([0, 2]), np.array([2, 3]), budget=5)        # sample 2 -> 6 > 5
    assert not r.granted and r.samples.tolist() == [0, 2] and r.used.tolist() == [3, 3]
    assert store.budget_usage("run-a", 3).tolist() == [3, 0, 3]                              # nothing taken
    r = store.reserve("run-a", np.array([0, 2]), np.array([2, 2]), budget=5)           # exactly to the budget
    assert r.granted and r.used.tolist() == [5, 5]
    assert store.budget_usage("run-b", 3).tolist() == [0, 0, 0]                              # accounts are separate
    store.release("run-a", np.array([2, 0]), np.array([1, 2]))
    assert store.budget_usage("run-a", 3).tolist() == [3, 0, 4]
    empty = store.reserve("run-a", np.array([], np.int64), np.array([], np.int64), budget=5)
    assert empty.granted and empty.used.size == 0
    # the finished-run guard: refused, nothing taken, even with nothing to take
    store.put_defense(defense("d1"))
    store.create_run(RunRow("run-a", "t", "d1", "atk", 3, 5, 5.0, None))
    assert store.reserve("run-a", np.array([1]), np.array([1]), budget=5, run_id="run-a").granted
    store.write([FinishRun("run-a", 9.0)])
    for samples in ([1], []):
        r = store.reserve("run-a", np.array(samples, np.int64), np.ones(len(samples), np.int64), budget=5,
                          run_id="run-a")
        assert not r.granted and r.closed
    assert store.budget_usage("run-a", 3).tolist() == [3, 1, 4]
    # the replay guard: an answered request id reserves nothing
    store.create_run(RunRow("run-c", "t", "d1", "atk", 3, 5, 5.0, None))
    store.write([RequestRecord("run-c", "answered", b"d", b"", b"", 1.0)])
    r = store.reserve("run-c", np.array([0]), np.array([1]), budget=5, run_id="run-c", request_id="answered",
                      digest=b"d")
    assert not r.granted and r.replay and not r.closed
    r = store.reserve("run-c", np.array([0]), np.array([1]), budget=5, run_id="run-c", request_id="new",
                      digest=b"n")
    assert r.granted and not r.replay
    assert store.budget_usage("run-c", 3).tolist() == [1, 0, 0]
    store.close()


def test_concurrent_reservations_never_overdraw(store_url):
    """8 threads with their own connections race for overlapping samples: exactly the budget is
    granted per sample, and every granted reservation is in the count."""
    budget, samples = 37, 6
    opened = open_store(store_url)
    granted = np.zeros(samples, np.int64)
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        store = opened if seed % 2 else open_store(store_url)   # shared and own store objects
        for _ in range(60):
            picked = rng.integers(0, samples, rng.integers(1, 5))
            counts = np.ones_like(picked)
            r = store.reserve("race", picked, counts, budget)
            if r.granted:
                with lock:
                    np.add.at(granted, picked, 1)
        if store is not opened:
            store.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    used = opened.budget_usage("race", samples)
    assert used.tolist() == granted.tolist()
    assert (used <= budget).all() and (used == budget).sum() >= 3
    opened.close()


def test_postgres_lost_connections_are_store_errors_then_reconnect(postgres, postgres_url):
    """A database restart or failover cuts the connections: the next call is a StoreError (the
    server answers UNAVAILABLE, clients retry) and the one after reconnects."""
    import psycopg

    store = open_store(postgres_url)
    store.put_defense(defense("d1"))
    dbname = postgres_url.split("/")[3].split("?")[0]
    with psycopg.connect(postgres.url(), autocommit=True) as admin:
        killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                               " WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,)).fetchone()[0]
    assert killed >= 1
    with pytest.raises(StoreError):
        store.get_defense("d1")
    assert store.get_defense("d1").name == "d1"
    with psycopg.connect(postgres.url(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))
    with pytest.raises(StoreError):
        store.write([FinishRun("nope", 1.0)])
    store.write([FinishRun("nope", 1.0)])
    store.close()


def test_a_failed_write_leaves_nothing_and_the_store_usable(store_url):
    store = open_store(store_url)
    store.put_defense(defense("d1"))
    store.create_run(RunRow("r1", "t", "d1", "atk", 3, 10, 5.0, None))
    store.write([Charge("r1", 0, 2)])
    with pytest.raises(Exception):
        # one transaction: the first adversarial and the charge go with the record that breaks a
        # constraint in the database (image NOT NULL)
        store.write([AdversarialRecord("r1", 1, 0.5, 3, b"x", 6.0), Charge("r1", 2, 1),
                     AdversarialRecord("r1", 2, 0.5, 3, None, 6.0)])
    assert store.adversarials("r1") == [] and store.usage("r1", 3).tolist() == [2, 0, 0]
    store.write([Charge("r1", 1, 1), FinishRun("r1", 7.0)])
    assert store.usage("r1", 3).tolist() == [2, 1, 0] and store.get_run("r1").finished
    store.close()


def test_one_server_per_sqlite_store(tmp_path):
    """The SQLite ledger lives in the server's memory: a second server on the same file is refused
    (PostgreSQL stores take any number)."""
    first, second = open_store(tmp_path), open_store(tmp_path)
    first.claim_serving()
    with pytest.raises(StoreError, match="another arena server already serves this store"):
        second.claim_serving()
    first.close()
    second.claim_serving()                                    # released with the store
    second.close()


def test_postgres_stores_serve_together(postgres_url):
    first, second = open_store(postgres_url), open_store(postgres_url)
    first.claim_serving()
    second.claim_serving()
    first.close()
    second.close()


def test_postgres_request_claims(postgres_url):
    """A shared-ledger reservation claims its request id: a retry elsewhere adopts the claim (one
    charge for the request, whoever answers), another request under the id is refused, a failed
    attempt gives back its charge and its claim unless adopted."""
    store = open_store(postgres_url)
    store.put_defense(defense("d1"))
    store.create_run(RunRow("r", "t", "d1", "atk", 3, 5, 5.0, None))

    def reserve(request_id, digest, samples=(0, 1), budget=5):
        return store.reserve("r", np.array(samples), np.ones(len(samples), np.int64), budget, run_id="r",
                             request_id=request_id, digest=digest)

    first = reserve("x", b"dx")
    assert first.granted and not first.adopted and store.budget_usage("r", 3).tolist() == [1, 1, 0]
    assert store.get_request("r", "x") is None and store.request_ids("r") == set()     # claimed, not answered
    retry = reserve("x", b"dx")                              # the retry, on another replica
    assert retry.granted and retry.adopted and store.budget_usage("r", 3).tolist() == [1, 1, 0]
    other = reserve("x", b"something else")
    assert not other.granted and other.mismatch
    store.release("r", np.array([0, 1]), np.ones(2, np.int64), run_id="r", request_id="x")   # adopted: kept
    assert store.budget_usage("r", 3).tolist() == [1, 1, 0]
    store.write([RequestRecord("r", "x", b"dx", b"\x01\x00\x00\x00" * 2, b"\x04\x00\x00\x00" * 2, 9.0)])
    store.write([RequestRecord("r", "x", b"dx", b"\x07\x00\x00\x00" * 2, b"\x04\x00\x00\x00" * 2, 9.5)])
    assert store.get_request("r", "x").labels.tolist() == [1, 1]                         # the first answer stays
    assert reserve("x", b"dx").replay and store.request_ids("r") == {"x"}
    # a failed attempt that nobody adopted gives back its charge and its claim
    assert reserve("y", b"dy").granted and store.budget_usage("r", 3).tolist() == [2, 2, 0]
    store.release("r", np.array([0, 1]), np.ones(2, np.int64), run_id="r", request_id="y")
    assert store.budget_usage("r", 3).tolist() == [1, 1, 0]
    again = reserve("y", b"dy")
    assert again.granted and not again.adopted and store.budget_usage("r", 3).tolist() == [2, 2, 0]
    # a refusal leaves no claim behind
    assert not reserve("z", b"dz", samples=(2,), budget=0).granted
    assert reserve("z", b"dz", samples=(2,)).granted and store.budget_usage("r", 3).tolist() == [2, 2, 1]
    store.close()


def test_one_commit_merges_charges_and_spends_per_run_and_sample():
    """group_ops (what both SQL backends commit): charges add up per (run, sample) and go to the
    budget account too; a shared-ledger spend only to the run's own usage; unknown ops are refused."""
    from arena.server.store import RunSpend
    from arena.server.store.sql import group_ops

    grouped = group_ops([Charge("r", 1, 2), Charge("r", 1, 3), Charge("r", 2, 1), RunSpend("r", 1, 4),
                         RunSpend("q", 0, 7), FinishRun("r", 5.0)])
    assert grouped.charges == {("r", 1): 5, ("r", 2): 1}
    assert grouped.spends == {("r", 1): 4, ("q", 0): 7}
    assert grouped.spent() == {("r", 1): 9, ("r", 2): 1, ("q", 0): 7}
    assert grouped.finishes == [(5.0, "r")]
    with pytest.raises(TypeError, match="unknown write operation"):
        group_ops([("r", 1, 2)])


def test_image_digest_is_chosen_at_creation_and_kept(store_url):
    """A new store keys the free-verification records by BLAKE3; a store created before the
    choice was recorded (no 'image_digest' in meta) keeps sha256, so its records stay valid."""
    import hashlib

    import blake3

    from arena.server.digests import image_digests

    store = open_store(store_url)
    assert store.image_digest == "blake3"
    with store._transaction() as conn:
        conn.execute("DELETE FROM meta WHERE key = 'image_digest'")   # as an older arena left it
    store.close()
    old = open_store(store_url)
    try:
        assert old.image_digest == "sha256"
    finally:
        old.close()
    reopened = open_store(store_url)   # and it stays so: nothing rewrites an existing store's choice
    try:
        assert reopened.image_digest == "sha256"
    finally:
        reopened.close()
    images = np.random.default_rng(0).random((3, 3, 64, 64), dtype=np.float32)
    assert image_digests(images, [2], "sha256") == [hashlib.sha256(images[2].tobytes()).digest()]
    assert image_digests(images, None, "blake3")[1] == blake3.blake3(images[1].tobytes()).digest()
    with pytest.raises(ValueError, match="unknown image digest"):
        image_digests(images, None, "md5")
