"""The storage layer: URLs, content-addressed blobs, the pinned evaluation set, records."""

from __future__ import annotations

import numpy as np
import pytest

from arena.server import evaluation
from arena.server.records import build_records
from arena.server.store import (
    AdversarialRecord,
    Charge,
    DefenseRow,
    FinishRun,
    RunRow,
    StoreError,
    open_store,
)


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
        open_store("postgresql://localhost/arena")


def test_blobs_are_content_addressed(tmp_path):
    store = open_store(tmp_path)
    digest = store.blobs.put(b"model bytes")
    assert store.blobs.put(b"model bytes") == digest
    assert store.blobs.path(digest).name == digest and store.blobs.get(digest) == b"model bytes"
    store.blobs.path(digest).write_bytes(b"tampered")
    with pytest.raises(StoreError, match="corrupt"):
        store.blobs.get(digest)
    store.close()


def test_evaluation_set_is_pinned(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((3, 3, 64, 64), dtype=np.float32)
    data = evaluation.from_arrays(x, np.array([0, 1, 2]))
    store = open_store(tmp_path)
    evaluation.pin(store, data, "test")
    evaluation.pin(store, data, "test again")                # same set: fine
    other = evaluation.from_arrays(x[:2], np.array([0, 1]))
    with pytest.raises(StoreError, match="another evaluation set"):
        evaluation.pin(store, other, "other")
    back = evaluation.from_store(store)
    assert np.array_equal(back.images, x) and back.labels.tolist() == [0, 1, 2]
    assert np.allclose(back.worst_case, data.worst_case)
    store.close()


def test_records_and_write_ops(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((3, 3, 64, 64), dtype=np.float32)
    store = open_store(tmp_path)
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
    # the records builder also takes a folder
    defenses, runs, ev = build_records(tmp_path)
    assert len(runs) == 1
