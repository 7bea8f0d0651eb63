"""ONNX export: the arena's contract, parity with torch, and nothing written on failure."""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from arena.top.cli import main
from defenses import export
from defenses.export import ExportError, checkpoint_metadata, export_checkpoint, export_onnx


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "model.onnx"
    parity = export_checkpoint(trained_run, out, samples=300)
    return out, parity


def test_parity_with_torch(exported):
    _, parity = exported
    assert parity.samples == 300 and parity.labels_equal and parity.max_abs_diff <= 1e-4


def test_graph_follows_the_defense_contract(exported, trained):
    path, _ = exported
    graph = onnx.load(str(path))
    (inp,), (outp,) = graph.graph.input, graph.graph.output
    assert inp.name == "images" and outp.name == "logits"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 64, 64]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {node.domain for node in graph.graph.node} <= {""}
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta["dataset"] == "demo" and meta["classes"] == "10" and meta["method"] == "natural"
    assert meta["arch"] == "resnet-small" and float(meta["eps"]) == pytest.approx(8 / 255)
    assert float(meta["beta"]) == 6.0 and float(meta["clean_accuracy"]) == pytest.approx(trained.meta.clean_accuracy, abs=1e-4)
    assert json.loads(meta["class_names"])[0] == "disk"


def test_labels_do_not_depend_on_the_batch(exported, trained):
    path, _ = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((7, 3, 64, 64), dtype=np.float32)
    whole = session.run(["logits"], {"images": x})[0]
    singles = np.concatenate([session.run(["logits"], {"images": x[i : i + 1]})[0] for i in range(7)])
    assert whole.shape == (7, 10)
    np.testing.assert_allclose(whole, singles, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(whole, trained.model(torch.from_numpy(x)).numpy(), atol=1e-4)


def test_existing_output_is_refused(exported, trained):
    path, _ = exported
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="--force"):
        export_onnx(trained.model, path, samples=10)
    assert path.read_bytes() == before


def test_parity_failure_writes_nothing(trained, tmp_path, monkeypatch):
    broken = copy.deepcopy(trained.model)
    with torch.no_grad():
        broken.net.linear.bias += 0.01
    real = export.to_onnx_bytes
    monkeypatch.setattr(export, "to_onnx_bytes", lambda model: real(broken))
    out = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match="max |logit diff|.*nothing written"):
        export_onnx(trained.model, out, metadata=checkpoint_metadata(trained.meta), samples=20)
    assert list(tmp_path.iterdir()) == []


def test_cli_export_prints_parity(trained_run, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert main(["export", str(trained_run.parent), "--out", str(out), "--samples", "50"]) == 0
    printed = capsys.readouterr().out
    assert "parity on 50 validation images: max |logit diff|" in printed and out.is_file()
    assert main(["export", str(trained_run), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
