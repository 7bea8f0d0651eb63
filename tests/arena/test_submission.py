"""Submission validation (docs/rules.md section 3): every failed rule in one INVALID_ARGUMENT,
the rejection recorded and visible, nothing of it served."""

from __future__ import annotations

import uuid

import numpy as np
import onnx
import pytest
from grpc import StatusCode
from onnx import TensorProto, helper, numpy_helper

from arena.top.bench import toy_models
from arena.server import validation
from arena.ground.client import ArenaClient
from arena.server.records import build_records
from protos import arena_v1_pb2 as pb

from .conftest import WRONG, NUM_SAMPLES, rpc_error


def graph_model(nodes, inits, input_shape=("N", 3, 64, 64), output_shape=("N", 10), extra_inputs=(),
                opsets=(("", 17),), check=True) -> bytes:
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, list(input_shape)), *extra_inputs],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(output_shape))],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 8
    return model.SerializeToString()


def pooled_linear(prefix_nodes=(), source="images", classes=10) -> tuple[list, dict]:
    rng = np.random.default_rng(0)
    nodes = list(prefix_nodes) + [
        helper.make_node("GlobalAveragePool", [source], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w", "b"], ["logits"]),
    ]
    return nodes, {"w": rng.standard_normal((3, classes)).astype(np.float32),
                   "b": rng.standard_normal(classes).astype(np.float32)}


def submit_error(client, data: bytes, name: str):
    error = rpc_error(client.submit_defense, data, name)
    assert error.code() == StatusCode.INVALID_ARGUMENT, error.details()
    return error.details()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_accepted_defense_has_clean_accuracy_and_per_sample_correctness(arena, client):
    defense = client.get_defense("tiny")
    assert defense.status == pb.DEFENSE_STATUS_ACCEPTED and defense.num_classes == 10
    assert defense.clean_accuracy == pytest.approx((NUM_SAMPLES - len(WRONG)) / NUM_SAMPLES)
    defenses, _, evaluation = build_records(arena.server.arena.store)
    (tiny,) = [d for d in defenses if d.name == "tiny"]
    assert tiny.clean_correct.tolist() == [i not in WRONG for i in range(NUM_SAMPLES)]
    assert evaluation.num_samples == NUM_SAMPLES


@pytest.mark.parametrize("kind", ["truncated", "corrupt", "not-onnx", "empty"])
def test_broken_uploads_are_rejected_and_recorded(arena, client, kind):
    data = {
        "truncated": arena.tiny[: len(arena.tiny) // 2],
        "corrupt": bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)),
        "not-onnx": b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,
        "empty": b"",
    }[kind]
    name = unique(kind)
    details = submit_error(client, data, name)
    assert "file:" in details
    defense = client.get_defense(name)
    assert defense.status == pb.DEFENSE_STATUS_REJECTED and defense.rejection_reasons
    assert name in [d.name for d in client.list_defenses()]
    # nothing of it is served
    assert rpc_error(client.start_run, name, "a").code() == StatusCode.NOT_FOUND


def test_oversized_upload(arena, client):
    name = unique("huge")
    details = submit_error(client, b"\x00" * (3 << 19), name)       # 1.5 MiB, the limit is 1 MiB
    assert "size limit" in details
    assert client.get_defense(name).status == pb.DEFENSE_STATUS_REJECTED


def test_every_failed_rule_is_reported_at_once(arena, client):
    """Fixed batch size, a random operator, a custom-domain operator: three rules in one error."""
    nodes, inits = pooled_linear(
        [helper.make_node("RandomNormalLike", ["images"], ["noise"]),
         helper.make_node("Add", ["images", "noise"], ["noisy"]),
         helper.make_node("Identity", ["noisy"], ["custom"], domain="com.example")],
        source="custom")
    data = graph_model(nodes, inits, input_shape=(1, 3, 64, 64),
                       opsets=(("", 17), ("com.example", 1)))
    name = unique("many")
    details = submit_error(client, data, name)
    assert "batch dimension N must be dynamic" in details
    assert "RandomNormalLike" in details
    assert "com.example" in details
    reasons = client.get_defense(name).rejection_reasons
    assert len(reasons) >= 3


def test_random_ops_and_training_dropout_are_refused():
    ratio = np.array(0.5, np.float32)
    train = np.array(True)
    nodes, inits = pooled_linear([helper.make_node("Dropout", ["images", "ratio", "train"], ["d"])], source="d")
    inits.update(ratio=ratio, train=train)
    reasons = validation.check_operators(onnx.load_model_from_string(graph_model(nodes, inits)))
    assert any("Dropout (training mode)" in r for r in reasons)
    inits["train"] = np.array(False)
    assert validation.check_operators(onnx.load_model_from_string(graph_model(nodes, inits))) == []
    for op in ("RandomUniformLike", "Bernoulli"):
        nodes, inits = pooled_linear([helper.make_node(op, ["images"], ["r"])], source="r")
        reasons = validation.check_operators(onnx.load_model_from_string(graph_model(nodes, inits)))
        assert any(op in r for r in reasons), op


def test_io_contract(arena, client):
    nodes, inits = pooled_linear()
    two_inputs = graph_model(nodes, inits,
                             extra_inputs=[helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1])])
    assert "exactly one graph input" in submit_error(client, two_inputs, unique("two-in"))
    wrong_size = graph_model(nodes, inits, input_shape=("N", 3, 32, 32))
    assert "[N,3,64,64]" in submit_error(client, wrong_size, unique("small"))
    rng = np.random.default_rng(0)
    int_out = [helper.make_node("ArgMax", ["f2"], ["logits"], axis=1, keepdims=0)]
    nodes2 = [helper.make_node("GlobalAveragePool", ["images"], ["p"]),
              helper.make_node("Flatten", ["p"], ["f2"], axis=1)] + int_out
    graph = helper.make_graph(nodes2, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 64, 64])],
                              [helper.make_tensor_value_info("logits", TensorProto.INT64, ["N"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    details = submit_error(client, model.SerializeToString(), unique("labels-out"))
    assert "float32 logits" in details and "[N,C]" in details
    assert rng is not None


def test_batch_dependent_defense_is_rejected(arena, client):
    """Subtracting the batch mean makes every label depend on the other images of the batch."""
    nodes, inits = pooled_linear([
        helper.make_node("ReduceMean", ["images"], ["m"], axes=[0], keepdims=1),
        helper.make_node("Sub", ["images", "m"], ["centred"]),
    ], source="centred")
    # a bias large enough that a lone image (centred to 0) still has a definite label
    details = submit_error(client, graph_model(nodes, inits), unique("batchnorm-train"))
    assert "batch invariance" in details


def test_latency_budget():
    tiny = toy_models.tiny_cnn().SerializeToString()
    x = np.random.default_rng(0).random((4, 3, 64, 64), dtype=np.float32)
    result = validation.validate("t", tiny, x, np.zeros(4, np.int64), validation.Limits(latency_ms=1e-6, max_chunk=8))
    assert any(r.startswith("latency:") for r in result.reasons)
    result = validation.validate("t", tiny, x, np.zeros(4, np.int64), validation.Limits(latency_ms=5000, max_chunk=8))
    assert result.accepted and result.serving_mode == "batched" and result.clean_correct.shape == (4,)


def test_names(arena, client):
    assert "metadata.name" in submit_error(client, arena.tiny, "bad name!")
    error = rpc_error(client.submit_defense, arena.tiny, "tiny")
    assert error.code() == StatusCode.ALREADY_EXISTS and "metadata.name" in error.details()
    # metadata must come first
    stream = iter([pb.SubmitDefenseRequest(chunk=arena.tiny)])
    error = rpc_error(client.defenses.SubmitDefense, stream, metadata=client.metadata)
    assert error.code() == StatusCode.INVALID_ARGUMENT and "metadata" in error.details()
    # a rejected name can be reused by its team, not taken by another
    name = unique("retry")
    submit_error(client, b"junk", name)
    with ArenaClient(arena.address, arena.beta) as beta:
        assert rpc_error(beta.submit_defense, arena.tiny, name).code() == StatusCode.ALREADY_EXISTS
    accepted = client.submit_defense(arena.tiny, name)
    assert accepted.status == pb.DEFENSE_STATUS_ACCEPTED and not accepted.rejection_reasons
    assert client.start_run(name, "a").defense == name
