"""A label never depends on the batch: images lying on a decision boundary (two points a hair
apart with different labels, found by bisection) get the same labels alone, in batches of any
size at any position, and merged with other clients' requests by the micro-batcher."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import numpy as np
import pytest

from arena.bench import toy_models
from arena.wire import encode
from arena.inference import chunk_sizes, make_session, split_batch
from arena.server.validation import bisect_boundary
from protos import arena_v1_pb2 as pb

from .conftest import NUM_SAMPLES


def test_split_batch_uses_validated_sizes_only():
    for max_chunk in (1, 4, 64):
        sizes = set(chunk_sizes(max_chunk))
        for n in range(1, 300):
            chunks = split_batch(n, max_chunk)
            assert chunks[0][0] == 0 and chunks[-1][1] == n
            assert all(a == b for (_, a), (b, _) in itertools.pairwise(chunks))
            assert all(stop - start in sizes for start, stop in chunks)


def boundary_points(model_bytes: bytes, images: np.ndarray, pairs: int) -> list[tuple[np.ndarray, np.ndarray]]:
    session = make_session(model_bytes)

    def label(x):
        return int(session.run(None, {"images": x[None]})[0].argmax())

    labels = [label(x) for x in images]
    out = []
    for i, j in itertools.combinations(range(len(images)), 2):
        if labels[i] != labels[j]:
            lo, hi = bisect_boundary(label, images[i], images[j], steps=60)
            assert label(lo) != label(hi)
            out.append((lo, hi))
            if len(out) == pairs:
                break
    return out


@pytest.fixture(scope="module")
def resnet(arena):
    data = toy_models.resnet_like(widths=(8, 16), seed=3).SerializeToString()
    with arena.client() as c:
        c.submit_defense(data, "resnet-small")
    return data


# SQLite only: its merged part needs requests queued in one tick, and a shared ledger's
# reservations reach the batcher at different times (see test_budget.test_merged_batches_...)
@pytest.mark.parametrize("defense", ["tiny", "resnet-small"])
@pytest.mark.parametrize("arena", ["sqlite"], indirect=True)
def test_boundary_labels_do_not_depend_on_the_batch(arena, resnet, defense):
    model = arena.tiny if defense == "tiny" else resnet
    rng = np.random.default_rng(7)
    noise = rng.random((8, 3, 64, 64), dtype=np.float32)
    candidates = np.concatenate([arena.images, noise])
    points = boundary_points(model, candidates, pairs=3)
    assert points, "no two images with different labels"
    hair = max(float(np.abs(hi - lo).max()) for lo, hi in points)
    assert hair < 1e-5, hair  # really on the boundary

    with arena.client() as c:
        def fresh_run():
            # budgets are per team (rules v2): a new team, so a new budget
            nonlocal c
            c.close()
            c = arena.client(arena.new_team())
            return c.start_run(defense, f"invariance-{uuid.uuid4().hex[:6]}")

        run = fresh_run()
        spent = np.zeros(NUM_SAMPLES, int)

        charger = arena.server.arena.chargers["public"]   # rules v3: images are charged to the sample they are about

        def ask(images):
            nonlocal run, spent
            samples = np.arange(len(images)) % NUM_SAMPLES
            charges = np.bincount(charger.charged(images, samples), minlength=NUM_SAMPLES)
            if (spent + charges > run.budget_per_sample).any():
                run, spent = fresh_run(), np.zeros(NUM_SAMPLES, int)
            spent += charges
            return c.predict(run.run_id, images, samples)[0]

        flat = np.stack([p for pair in points for p in pair])
        alone = np.array([ask(flat[k:k + 1])[0] for k in range(len(flat))])
        assert all(alone[2 * k] != alone[2 * k + 1] for k in range(len(points)))

        # in batches of many sizes, at every kind of position, among different neighbours
        for size in (2, 3, 5, 7, 8, 16, 17, 31, 32):
            for start in {0, size // 2, size - 1}:
                filler = candidates[rng.integers(0, len(candidates), size)]
                for k in range(len(flat)):
                    batch = filler.copy()
                    batch[start] = flat[k]
                    if size > 1:
                        batch[(start + 1) % size] = flat[k ^ 1]   # its twin across the boundary
                    labels = ask(batch)
                    assert labels[start] == alone[k], (size, start, k)
                    if size > 1:
                        assert labels[(start + 1) % size] == alone[k ^ 1]

    # merged with other requests by the micro-batcher (queued in one tick -> one merged run)
    server = arena.server
    batcher = server.arena._batcher(defense)
    sizes = [1, 3, 7, 16, 5]
    runs = [server.call(server.arena.start_run("alpha", defense, "merge")) for _ in range(3)]
    for trial, state in enumerate(runs):
        requests, where = [], []
        for r, size in enumerate(sizes):
            batch = candidates[rng.integers(0, len(candidates), size)].copy()
            k = (trial + r) % len(flat)
            pos = int(rng.integers(0, size))
            batch[pos] = flat[k]
            where.append((pos, k))
            requests.append(pb.PredictRequest(run_id=state.row.run_id, request_id=f"m{r}",
                                              sample_indices=list(np.arange(size) % NUM_SAMPLES),
                                              images=encode(batch)))

        async def together():
            before = batcher.stats.merged_runs
            answers = await asyncio.gather(*(server.arena.predict("alpha", q) for q in requests))
            return answers, batcher.stats.merged_runs - before

        answers, merged = server.call(together())
        assert merged >= 1
        for answer, (pos, k) in zip(answers, where):
            assert answer.labels[pos] == alone[k]


def test_validation_serves_float_sensitive_models_one_image_per_run():
    """A model whose logits depend (by a hair) on the batch but whose labels do not is accepted and
    served per image, which is batch-invariant by construction."""
    from onnx import TensorProto, helper, numpy_helper

    from arena.server import validation

    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 10)).astype(np.float32)
    b = (np.arange(10) * 10.0).astype(np.float32)      # one label dominates whatever the batch
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], axes=[0], keepdims=1),
        helper.make_node("Sub", ["images", "m"], ["c"]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w", "b"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 64, 64])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = rng.random((6, 3, 64, 64), dtype=np.float32)
    result = validation.validate("f", model.SerializeToString(), x, np.full(6, 9), validation.Limits(max_chunk=8))
    assert result.accepted, result.reasons
    assert result.serving_mode == "per_image" and result.model.max_chunk == 1
    assert result.clean_accuracy == 1.0
