"""ONNX export of a trained defense (docs/rules.md section 3), checked against torch before it lands.

Graph: input "images" float32 [N,3,64,64] (N dynamic, values in [0,1]), output "logits" float32
[N,C]; normalisation inside; default-domain operators only (opset 17). Metadata props: dataset,
classes, class_names, arch, method, norm, eps, beta, epochs, clean_accuracy.

The file is written to a temporary name next to the target and renamed only after ONNX Runtime
reproduced torch on the validation split (same labels, max |logit difference| <= tolerance).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from arena.ground.contract import IMAGE_SHAPE
from defenses.atomic import atomic_write
from defenses.checkpoint import CheckpointMeta, load_checkpoint
from defenses.tensors import load_tensors, predict_logits

OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The exported graph does not reproduce the torch model, or breaks the defense contract."""


@dataclass
class Parity:
    """How closely the exported ONNX graph reproduces the torch model on sample images."""

    samples: int
    max_abs_diff: float
    labels_equal: bool
    onnx_accuracy: float

    def ok(self, tolerance: float = TOLERANCE) -> bool:
        return self.labels_equal and self.max_abs_diff <= tolerance


def to_onnx_bytes(model: torch.nn.Module) -> bytes:
    """The model (on the CPU, eval mode) as a serialized ONNX graph with the arena's names."""
    model = model.cpu().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated; the dynamo one needs onnxscript, not a dependency.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(2, *IMAGE_SHAPE),),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}},
            do_constant_folding=True,
        )
    return buffer.getvalue()


def checkpoint_metadata(meta: CheckpointMeta) -> dict[str, str]:
    """The metadata props of a trained checkpoint."""
    config = meta.config
    threat = config.threat
    accuracy = meta.clean_accuracy
    return {
        "dataset": config.data if config.data == "demo" else f"tiny-imagenet:{Path(config.data).name}",
        "classes": str(meta.num_classes),
        "class_names": json.dumps(list(meta.class_names)),
        "arch": config.arch,
        "method": config.method,
        "norm": threat.norm,
        "eps": repr(threat.eps),
        "beta": repr(config.beta),
        "epochs": str(meta.epoch),
        "clean_accuracy": "" if accuracy is None else f"{accuracy:.4f}",
    }


def _attach_metadata_and_check(raw: bytes, props: dict[str, str]) -> bytes:
    import onnx

    graph = onnx.load_from_string(raw)
    del graph.metadata_props[:]
    for key, value in props.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(graph, full_check=True)
    foreign = sorted({node.op_type for node in graph.graph.node if node.domain not in ("", "ai.onnx")})
    if foreign:
        raise ExportError(f"the graph uses operators outside the default ONNX domain: {', '.join(foreign)}")
    if [i.name for i in graph.graph.input] != [INPUT_NAME] or [o.name for o in graph.graph.output] != [OUTPUT_NAME]:
        raise ExportError("the graph must have exactly one input 'images' and one output 'logits'")
    return graph.SerializeToString()


def check_parity(onnx_bytes: bytes, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 250) -> Parity:
    """ONNX Runtime (CPU) vs torch on float images: max |logit difference|, label agreement."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    reference = predict_logits(model.cpu().eval(), images, batch_size).numpy()
    got = np.concatenate(
        [session.run([OUTPUT_NAME], {INPUT_NAME: images[i : i + batch_size].numpy()})[0] for i in range(0, len(images), batch_size)]
    )
    return Parity(
        samples=len(images),
        max_abs_diff=float(np.abs(got - reference).max()),
        labels_equal=bool((got.argmax(1) == reference.argmax(1)).all()),
        onnx_accuracy=float((got.argmax(1) == labels.numpy()).mean()),
    )


def export_onnx(
    model: torch.nn.Module,
    out: str | os.PathLike,
    *,
    metadata: dict[str, str] | None = None,
    data: str = "demo",
    classes: int | None = None,
    samples: int | None = None,
    force: bool = False,
    tolerance: float = TOLERANCE,
) -> Parity:
    """Export `model` (float [N,3,64,64] in [0,1] -> logits) to `out` with `metadata` as string
    props, after a parity check on the validation split of `data` (the first `samples` images
    if given). Raises FileExistsError for an existing `out` without force, ExportError when
    ONNX Runtime and torch disagree; in both cases nothing is written."""
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass --force to overwrite it")
    model = model.cpu().eval()
    val = load_tensors(data, "val", classes, samples)
    onnx_bytes = _attach_metadata_and_check(to_onnx_bytes(model), {k: str(v) for k, v in (metadata or {}).items()})
    parity = check_parity(onnx_bytes, model, val.floats(), val.labels)
    if not parity.ok(tolerance):
        raise ExportError(
            f"ONNX Runtime disagrees with torch on {parity.samples} validation images: max |logit diff| "
            f"{parity.max_abs_diff:.3g} (tolerance {tolerance:g}), labels equal: {parity.labels_equal}; nothing written"
        )
    with atomic_write(out) as handle:
        handle.write(onnx_bytes)
    return parity


def export_checkpoint(
    checkpoint: str | os.PathLike, out: str | os.PathLike, *, data: str | None = None, **kwargs
) -> Parity:
    """`export_onnx` of a checkpoint (file or run folder) with its metadata, checked on its own
    dataset's validation split (or on `data`)."""
    model, meta = load_checkpoint(checkpoint)
    return export_onnx(
        model, out, metadata=checkpoint_metadata(meta), data=data or meta.config.data, classes=meta.config.classes, **kwargs
    )
