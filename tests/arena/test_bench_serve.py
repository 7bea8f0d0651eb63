"""`arena bench serve` at a toy size: every path measured, the headline where it is promised."""

from __future__ import annotations

import argparse
import json

from arena.bench import serve as bench


def test_bench_serve_measures_every_path():
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--batches", "1,4", "--clients", "1,2", "--seconds", "0.4", "--rounds", "1",
                              "--latency-requests", "20", "--http-seconds", "0.3", "--durability", "normal"])
    bench.HEADLINE = (4, 2)  # the toy grid has no batch 64
    try:
        result = bench.run(args)
    finally:
        bench.HEADLINE = (64, 4)
    figures = result["figures"]
    for b in (1, 4):
        for c in (1, 2):
            for key in ("ort_ips", "grpc_ips", "bare_ips"):
                assert figures[f"{key}_b{b}_c{c}"] > 0
            assert figures[f"ratio_b{b}_c{c}"] == figures[f"grpc_ips_b{b}_c{c}"] / figures[f"ort_ips_b{b}_c{c}"]
    assert figures["ratio"] == figures["ratio_b4_c2"] and figures["bare_ratio"] == figures["bare_ratio_b4_c2"]
    assert figures["p50_ms"] > figures["ort_p50_ms"] > 0 and figures["bare_p50_ms"] > 0
    assert figures["speedup_vs_http_c1"] > 0
    # models in worker processes against models in the server's process, and against bare gRPC
    for b in (1, 4):
        for c in (1, 2):
            assert figures[f"workers_vs_inproc_b{b}_c{c}"] == figures[f"grpc_ips_b{b}_c{c}"] / figures[f"inproc_ips_b{b}_c{c}"]
    assert figures["workers_vs_inproc"] == figures["workers_vs_inproc_b4_c2"]
    # the hostile submissions were rejected, each on its own limit, while Predicts went on
    hostile_rows = [row[0] for row in result["rows"] if row[0].startswith(("slow:", "bomb:"))]
    assert hostile_rows == [hostile_rows[0], hostile_rows[1]]
    assert "rejected (latency)" in hostile_rows[0] and "rejected (memory)" in hostile_rows[1], hostile_rows
    for name in ("slow", "bomb"):
        assert figures[f"hostile_{name}_reject_s"] > 0 and figures[f"hostile_{name}_predicts"] >= 1
    # every request was charged and committed by the arena
    assert figures["server_commit_jobs"] > 0
    assert all(len(row) == len(result["columns"]) for row in result["rows"])
    json.dumps(figures)
