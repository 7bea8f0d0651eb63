"""A label never depends on the batch: images lying on a decision boundary (two points a hair
apart with different labels, found by bisection) get the same labels alone, in batches of any
size at any position, and merged with other clients' requests by the micro-batcher.

Rules v3 (section 3): a defense whose logits differ in the last bits between batch sizes is
accepted and served one image at a time; only labels that change on an identical repeated run,
or with the content of the other images in the batch, reject a defense."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import numpy as np
import pytest

from arena.top.bench import toy_models
from arena.ground.client import ArenaClient
from arena.server.transport import predict_call
from arena.ground.wire import encode
from arena.ground.inference import SERVING_PER_IMAGE, chunk_sizes, make_session, split_batch
from arena.server import ServerConfig, evaluation, start_server, validation
from arena.server.auth import create_token
from arena.server.core import ArenaConfig
from arena.server.validation import bisect_boundary
from attackers.local import LocalOracle
from protos import arena_v1_pb2 as pb

from .conftest import NUM_SAMPLES, model_labels, rpc_error, synthetic_images


def predict_together(server, batcher, team: str, requests: list) -> tuple[list, int]:
    """The requests sent at once through the core (answers, and how many merged runs they made).
    Noise images take the charging rule's search off the loop, so the requests reach the batcher
    in different ticks: it waits for company (its max_wait_s) meanwhile, so that they merge."""
    async def together():
        before = batcher.stats.merged_runs
        answers = await asyncio.gather(*(server.arena.queries.predict(team, predict_call(q)) for q in requests))
        return answers, batcher.stats.merged_runs - before

    wait, batcher._max_wait_s = batcher._max_wait_s, 1.0
    try:
        return server.call(together())
    finally:
        batcher._max_wait_s = wait


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
    batcher = server.arena.registry.batcher(defense)
    sizes = [1, 3, 7, 16, 5]
    runs = [server.call(server.arena.runs.start("alpha", defense, "merge")) for _ in range(3)]
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

        answers, merged = predict_together(server, batcher, "alpha", requests)
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


# ------------------------------------------------------------------ rules v3: no false rejections

FP_SAMPLES = 16
MIXER_SEED = 1      # a mixer whose last-bit differences flip boundary probes (the old probe rejected it)

FLOAT_NOISE = {     # deterministic at each size, not coupled: logits differ in the last bits with N
    "ulps": lambda: toy_models.batch_ulps(by="size"),
    "mixer": lambda: toy_models.mlp_mixer(seed=MIXER_SEED),
    "mixer-legacy": lambda: toy_models.mlp_mixer(seed=MIXER_SEED, initializers_as_inputs=True),
}


@pytest.fixture(scope="module")
def fp_arena(tmp_path_factory):
    """A real server (validation and workers in child processes) with the default chunk size 64
    and requests of up to 64 images, so the batcher may hand ONNX Runtime any size up to 64."""
    tiny = toy_models.tiny_cnn(seed=0).SerializeToString()
    images = synthetic_images(FP_SAMPLES, seed=5)
    server = start_server(ServerConfig(
        store=tmp_path_factory.mktemp("fp-store"), host="127.0.0.1", port=0,
        evaluation=evaluation.from_arrays(images, model_labels(tiny, images).astype(np.int64)),
        arena=ArenaConfig(budget=10**6, max_batch=64, max_chunk=64, latency_ms=2000.0, max_upload_mb=1.0)))
    server.images = images
    server.token = create_token(server.arena.store, "fp")
    yield server
    server.stop()


def _different_bits(model_bytes: bytes, images: np.ndarray) -> bool:
    """Whether some image's logits alone differ, in any bit, from its logits in a batch of two."""
    session = make_session(model_bytes)
    alone = np.concatenate([session.run(None, {"images": x[None]})[0] for x in images])
    pairs = np.concatenate([session.run(None, {"images": images[i:i + 2]})[0] for i in range(0, len(images) - 1, 2)])
    return alone[:len(pairs)].tobytes() != pairs.tobytes()


@pytest.mark.parametrize("name", sorted(FLOAT_NOISE))
def test_float_noise_defense_is_accepted_and_served_deterministically(fp_arena, name):
    """The issue's two models (a patch-embedding MLP-mixer with LayerNorm and GELU, and the same as
    a legacy export listing its initializers as inputs) and a model whose logits move by a few ulps
    with N: the old validation rejected each ("labels change with the batch size"). Accepted, served
    one image at a time: a point a hair from the boundary gets its label alone whatever the
    request's size, its position, its companions or the batcher's grouping, and LocalOracle (with
    the stored serving mode) answers the same labels for every image of every request."""
    data = FLOAT_NOISE[name]().SerializeToString()
    with ArenaClient(fp_arena.address, fp_arena.token, timeout=120) as c:
        defense = c.submit_defense(data, name)             # raises if rejected
        assert defense.serving_mode == SERVING_PER_IMAGE   # told to the team, for its local oracle
        row = fp_arena.arena.store.get_defense(name)
        assert _different_bits(data, fp_arena.images), "the model is bit-identical across sizes here"
        assert row.serving_mode == SERVING_PER_IMAGE

        rng = np.random.default_rng(11)
        candidates = np.concatenate([fp_arena.images, rng.random((8, 3, 64, 64), dtype=np.float32)])
        points = boundary_points(data, candidates, pairs=3)
        flat = np.stack([p for pair in points for p in pair])
        if name == "ulps":   # its labels do change with the batch size: the old reason to reject
            session = make_session(data)
            in_pairs = [int(session.run(None, {"images": np.stack([x, candidates[0]])})[0][0].argmax()) for x in flat]
            alone_direct = [int(session.run(None, {"images": x[None]})[0].argmax()) for x in flat]
            assert in_pairs != alone_direct

        local = LocalOracle(data, budget=None, serving_mode=row.serving_mode)
        run = c.start_run(name, "float-noise")
        want = local.labels(flat, np.zeros(len(flat), np.int64))
        alone = np.array([c.predict(run.run_id, flat[k:k + 1], [k % FP_SAMPLES])[0][0] for k in range(len(flat))])
        assert alone.tolist() == want.tolist()
        assert all(alone[2 * k] != alone[2 * k + 1] for k in range(len(points)))

        for size in (3, 13, 16, 64):
            for start in (0, size // 2, size - 1):
                for k in range(len(flat)):
                    batch = np.concatenate([candidates, rng.random((size, 3, 64, 64), dtype=np.float32)])
                    batch = batch[rng.permutation(len(batch))[:size]].copy()
                    batch[start] = flat[k]
                    batch[(start + 1) % size] = flat[k ^ 1]            # its twin across the boundary
                    samples = np.arange(size) % FP_SAMPLES
                    labels = c.predict(run.run_id, batch, samples)[0]
                    assert labels[start] == alone[k] and labels[(start + 1) % size] == alone[k ^ 1], (size, start, k)
                    assert labels.tolist() == local.labels(batch, samples).tolist(), (size, start, k)

    # merged with other requests by the micro-batcher (queued in one tick -> one merged run)
    state = fp_arena.call(fp_arena.arena.runs.start("fp", name, "merge"))
    batcher = fp_arena.arena.registry.batcher(name)
    requests, where = [], []
    for r, size in enumerate([1, 3, 13, 16, 5, 26]):
        batch = candidates[rng.integers(0, len(candidates), size)].copy()
        pos, k = int(rng.integers(0, size)), r % len(flat)
        batch[pos] = flat[k]
        where.append((pos, k))
        requests.append(pb.PredictRequest(run_id=state.row.run_id, request_id=f"m{r}",
                                          sample_indices=list(np.arange(size) % FP_SAMPLES), images=encode(batch)))

    answers, merged = predict_together(fp_arena, batcher, "fp", requests)
    assert merged >= 1
    for answer, (pos, k) in zip(answers, where):
        assert answer.labels[pos] == alone[k]


@pytest.mark.parametrize("by", ["statistics", "ulps"])
def test_batch_coupled_defense_is_rejected_as_such(fp_arena, by):
    """Labels that depend on the content of the other images of the batch reject a defense, and the
    message says so: batch-statistics normalisation (labels move with any companion), and a model
    coupled by a few ulps (only points on the boundary, next to very different images, show it)."""
    model = toy_models.batch_stats_cnn() if by == "statistics" else toy_models.batch_ulps(by="content")
    with ArenaClient(fp_arena.address, fp_arena.token, timeout=120) as c:
        details = rpc_error(c.submit_defense, model.SerializeToString(), f"coupled-{by}").details()
    assert "batch invariance: labels depend on the content of other images in the batch" in details, details
    assert "determinism" not in details, details


class _Flaky:
    """An ONNX Runtime session whose logits get fresh noise (0.1 x their spread) on every run of at
    least `from_size` images: as if a kernel's reduction order changed from one run to the next."""

    def __init__(self, session, from_size: int) -> None:
        self._session, self._from_size = session, from_size
        self._rng = np.random.default_rng(0)

    def __getattr__(self, name):
        return getattr(self._session, name)

    def run(self, outputs, feeds, options=None):
        (logits,) = self._session.run(outputs, feeds, options)
        if logits.shape[0] >= self._from_size:
            logits = logits + (0.1 * logits.std() * self._rng.standard_normal(logits.shape)).astype(np.float32)
        return [logits]


@pytest.mark.parametrize("from_size", [1, 2])
def test_nondeterministic_defense_is_rejected_as_such(monkeypatch, from_size):
    """Labels that change on an identical repeated run reject a defense, with that reason (not a
    batch-size or coupling one), whether alone or only in batches."""
    monkeypatch.setattr(validation, "make_session",
                        lambda data, threads=None: _Flaky(make_session(data, threads), from_size))
    x = synthetic_images(8, seed=2)
    result = validation.validate("flaky", toy_models.tiny_cnn().SerializeToString(), x, np.zeros(8, np.int64),
                                 validation.Limits(max_chunk=16))
    assert result.reasons == ["determinism: labels change on an identical repeated run "
                              "(the same images in the same batch)"], result.reasons
