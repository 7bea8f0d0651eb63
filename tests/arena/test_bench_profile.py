"""`arena bench serve --profile`: the summary of py-spy's stacks against a hand count, and a real
recording that finds the function that burns the CPU."""

from __future__ import annotations

import threading
import time

import pytest

from arena.top.bench import profile


def test_summary_counts_self_and_inclusive_samples(tmp_path):
    raw = tmp_path / "stacks.txt"
    raw.write_text(
        "thread (1): loop;run (/x/events.py:80);predict (/a/queries.py:70);fast (/a/charging.py:73) 6\n"
        "thread (1): loop;run (/x/events.py:80);predict (/a/queries.py:75) 2\n"
        "thread (2): infer_0;work (/a/batching.py:300);Session.run (/o/ort.py:10) 10\n"
        "thread (2): infer_0;work (/a/batching.py:301);fast (/a/charging.py:74) 2\n"
        "garbage line without a count\n")
    s = profile.summarise(raw)
    assert s["samples"] == 20
    # lines of one function count together; a function twice in a stack counts once inclusive
    assert s["self"] == {"fast (charging.py)": 8, "predict (queries.py)": 2, "Session.run (ort.py)": 10}
    assert s["inclusive"]["run (events.py)"] == 8 and s["inclusive"]["work (batching.py)"] == 12
    text = profile.table("t", s, images=1000, cpu=0.5, threads={"loop": 0.2, "infer": 0.3}, rate=100)
    assert "500.0 us of CPU per image" in text
    assert "| infer | 300.0 |" in text and text.index("| infer |") < text.index("| loop |")
    # Session.run: 10 of 20 samples, 10 samples at 100 Hz over 1000 images = 100 us/image
    assert "| `Session.run (ort.py)` | 50.0 | 100.0 | 50.0 |" in text
    assert "| `fast (charging.py)` | 40.0 | 80.0 | 40.0 |" in text


def test_record_finds_the_hot_function(tmp_path):
    def burn_the_cpu(stop):
        while not stop.is_set():
            sum(i * i for i in range(1000))

    stop = threading.Event()
    thread = threading.Thread(target=burn_the_cpu, args=(stop,), name="burner-7")
    thread.start()
    try:
        try:
            cpu, threads = profile.record(tmp_path / "s.txt", lambda: time.sleep(1.5), rate=200)
        except SystemExit as error:   # a sandbox that forbids ptrace: say so rather than pass
            pytest.skip(f"py-spy cannot attach here: {error}")
    finally:
        stop.set()
        thread.join()
    s = profile.summarise(tmp_path / "s.txt")
    top = [fn for fn, _ in s["self"].most_common(3)]
    assert any("burn_the_cpu" in fn for fn in top), top
    assert threads["burner"] > 0.3 and cpu >= threads["burner"] - 0.05   # /proc counts in clock ticks


def test_bench_serve_profile_writes_profiles_and_ablations(tmp_path):
    """`arena bench serve --profile DIR` on the toy grid: both profiles, the raw stacks, and the
    table of the rules' work switched off, whose patches are undone afterwards."""
    import argparse

    from arena.ground import charging
    from arena.server import images, queries, writer
    from arena.top.bench import serve as bench

    originals = (charging.SampleCharger.fast, images.in_unit_interval, queries.image_digests,
                 writer.GroupCommitWriter.commit_blocking)
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--batches", "4", "--clients", "2", "--seconds", "0.3", "--rounds", "1",
                              "--latency-requests", "5", "--http-seconds", "0.2", "--durability", "normal",
                              "--no-hostile", "--profile", str(tmp_path), "--profile-seconds", "1.2"])
    bench.HEADLINE = (4, 2)
    try:
        try:
            result = bench.run(args)
        except SystemExit as error:
            pytest.skip(f"py-spy cannot attach here: {error}")
    finally:
        bench.HEADLINE = (64, 4)
    text = (tmp_path / "profile.md").read_text()
    assert "### arena-inprocess" in text and "### bare" in text
    assert (tmp_path / "arena-inprocess.txt").stat().st_size > 0 and (tmp_path / "bare.txt").stat().st_size > 0
    for row in ("| as served |", "| without checks |", "| without digests |", "| without commit |",
                "| without all three |", "| bare server | "):
        assert row in text, row
    assert any("the rules' work, switched off" in note for note in result["notes"])
    assert (charging.SampleCharger.fast, images.in_unit_interval, queries.image_digests,
            writer.GroupCommitWriter.commit_blocking) == originals
