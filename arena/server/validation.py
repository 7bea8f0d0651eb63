"""Submission validation (docs/rules.md section 3): every rule checked, every failure reported.

`validate(data, evaluation, limits)` runs on a worker thread and returns a `Validation` with all
failed rules (empty when accepted), the clean accuracy and per-sample clean correctness on the
evaluation set, and how the defense must be served (`arena.ground.inference`):

static  size limit; parses as ONNX; onnx.checker (full check); exactly one input float32
        [N,3,64,64] with N dynamic and one output float32 [N,C]; only the default operator
        domain (""/"ai.onnx") everywhere, subgraphs included, no local functions; no random
        operators (Random*, Multinomial, Bernoulli, Dropout in training mode).
runtime ONNX Runtime loads it; output [n,C] with C >= 2; per-image latency under the budget
        (checked first: a too-slow model is rejected after a few single-image runs);
        determinism: the same labels on an identical repeated run, alone and at every batch
        size the arena runs (1, 2, 4, ... max_chunk);
        batch coupling: the same labels for an image at the same size and position whatever the
        content of the other images (probes: clean evaluation images, noise-blended images, and
        points a hair apart across the decision boundary, found by bisection);
        clean accuracy on the public split.
What a team sees (rules v3): validation runs the model on the public split's images and on probes
made from them and from seeded noise, never on a private image (the private split's clean
correctness is measured after acceptance: `arena.server.private_accuracy`), and a rejection names
the rules that failed and their limits, never runtime text or values the model can influence
(ONNX Runtime's error text, shapes or counts the model produced, measured times): those go to
`Validation.details`, which the server logs for the operator only.
Labels come from `arena.ground.contract.labels_from_logits` everywhere: logits that are not all finite
are a failure (FAILED_LABEL), which counts as misclassified (docs/rules.md section 5).
The server runs all of this in a child process under limits (`arena.server.sandbox`).
How it is served (rules v3, section 3): a defense whose logits are bit-identical at every size,
position and neighbour is served batched; any other deterministic, uncoupled one (its logits, and
so its labels on the boundary, differ with the batch size: GEMM blocking) is served one image per
run (`per_image`), which gives every image the label it has alone whatever the request's size or
the batcher's grouping. Labels that change between batch sizes are no reason to reject.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto

from arena.ground.contract import IMAGE_SHAPE, labels_from_logits
from arena.ground.inference import (
    SERVING_BATCHED,
    SERVING_PER_IMAGE,
    DefenseModel,
    chunk_sizes,
    make_session,
)

ALLOWED_DOMAINS = ("", "ai.onnx")
RANDOM_OPS = frozenset({
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
})
_REASON_CHARS = 400


@dataclass(frozen=True)
class Limits:
    """The limits a submission is validated against (size, per-image latency, chunk sizes, threads)."""

    max_bytes: int = 100 << 20
    latency_ms: float = 100.0
    max_chunk: int = 64
    threads: int | None = None
    probe_seed: int = 0
    nice_after_latency: int = 0       # in a validation child: yield the cores once latency is known


@dataclass
class Validation:
    """The verdict on a submission: every failed rule, and for an accepted one its clean accuracy, per-
    sample correctness and serving mode."""

    reasons: list[str] = field(default_factory=list)
    num_classes: int = 0
    clean_correct: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.bool_))
    clean_accuracy: float = 0.0
    serving_mode: str = ""
    model: DefenseModel | None = None       # the loaded defense, ready to serve when accepted
    details: list[str] = field(default_factory=list)   # runtime text: the operator's log only, never a team's

    def fail(self, reason: str, detail: object = None) -> None:
        """A failed rule, as the team sees it; `detail` (runtime text, model-made values) is for the log."""
        self.reasons.append(reason)
        if detail is not None:
            self.details.append(f"{reason.split(':')[0]}: {_short(detail) if isinstance(detail, BaseException) else detail}")

    @property
    def accepted(self) -> bool:
        return not self.reasons


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


# ------------------------------------------------------------------ static checks


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str | None] | None:
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for d in tensor.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def _elem(value_info: onnx.ValueInfoProto) -> str:
    if not value_info.type.HasField("tensor_type"):
        return "a non-tensor"
    return TensorProto.DataType.Name(value_info.type.tensor_type.elem_type).lower()


def check_io(model: onnx.ModelProto) -> list[str]:
    """Exactly one input float32 [N,3,64,64] (N dynamic) and one output float32 [N,C]."""
    reasons = []
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    outputs = list(model.graph.output)
    if len(inputs) != 1:
        reasons.append(f"inputs: exactly one graph input is required, found {len(inputs)} "
                       f"({', '.join(i.name for i in inputs) or 'none'})")
    else:
        (inp,) = inputs
        dims = _dims(inp)
        if _elem(inp) != "float":
            reasons.append(f"input {inp.name!r}: must be float32, is {_elem(inp)}")
        if dims is None or len(dims) != 4 or dims[1:] != list(IMAGE_SHAPE):
            reasons.append(f"input {inp.name!r}: shape must be [N,3,64,64], is {_shape_text(dims)}")
        elif isinstance(dims[0], int):
            reasons.append(f"input {inp.name!r}: the batch dimension N must be dynamic, is fixed at {dims[0]}")
    if len(outputs) != 1:
        reasons.append(f"outputs: exactly one graph output is required, found {len(outputs)} "
                       f"({', '.join(o.name for o in outputs) or 'none'})")
    else:
        (out,) = outputs
        dims = _dims(out)
        if _elem(out) != "float":
            reasons.append(f"output {out.name!r}: must be float32 logits, is {_elem(out)}")
        if dims is not None and len(dims) != 2:
            reasons.append(f"output {out.name!r}: shape must be [N,C], is {_shape_text(dims)}")
        # a declared output N is not checked: exporters often freeze it to the example batch;
        # the runtime checks verify the real output shape at every batch size the arena uses
    return reasons


def _shape_text(dims) -> str:
    if dims is None:
        return "unknown (no shape)"
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


def _graphs(graph: onnx.GraphProto):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _graphs(g)


def check_operators(model: onnx.ModelProto) -> list[str]:
    """Only the default domain, no local functions, no random operators (subgraphs included)."""
    reasons = []
    bad_imports = sorted({o.domain for o in model.opset_import if o.domain not in ALLOWED_DOMAINS})
    if bad_imports:
        reasons.append(f"opset_import: only the default ONNX domain is accepted, found {bad_imports}")
    if len(model.functions):
        reasons.append(f"functions: local functions are not accepted, found "
                       f"{sorted(f.domain + '.' + f.name for f in model.functions)}")
    bad_nodes: set[str] = set()
    random_nodes: set[str] = set()
    for graph in _graphs(model.graph):
        constants = {t.name: t for t in graph.initializer}
        for node in graph.node:
            if node.domain not in ALLOWED_DOMAINS:
                bad_nodes.add(f"{node.domain}.{node.op_type}")
            if node.op_type in RANDOM_OPS:
                random_nodes.add(node.op_type)
            if node.op_type == "Dropout" and _dropout_training(node, constants):
                random_nodes.add("Dropout (training mode)")
    if bad_nodes:
        reasons.append(f"operators: only the default ONNX domain is accepted, found {sorted(bad_nodes)}")
    if random_nodes:
        reasons.append(f"operators: random operators are not accepted, found {sorted(random_nodes)}")
    return reasons


def _dropout_training(node: onnx.NodeProto, constants: dict[str, onnx.TensorProto]) -> bool:
    for attr in node.attribute:  # opset < 7: is_test=0 means training
        if attr.name == "is_test" and attr.i == 0:
            return True
    if len(node.input) >= 3 and node.input[2]:
        tensor = constants.get(node.input[2])
        if tensor is None:  # computed at run time: could be true
            return True
        return bool(np.any(onnx.numpy_helper.to_array(tensor)))
    return False


# ------------------------------------------------------------------ runtime checks

WARMUP_FACTOR = 20          # the warm-up run is stopped at this many times the latency budget
WARMUP_MIN_MS = 2000.0      # ... but never before this (first runs allocate)
TIMED_CUT_FACTOR = 3        # a timed run is stopped at this many times the budget: over it anyway
TIMED_RUNS = 5              # the latency is the median of this many timed runs


class _CutOff(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"stopped after {seconds:.3f} s")
        self.seconds = seconds


def _capped_run(model: DefenseModel, images: np.ndarray, cap_s: float) -> np.ndarray:
    """The model's logits, the run terminated (ORT RunOptions.terminate) after cap_s seconds.
    A single operator that never yields is left to the validation's wall-clock limit."""
    options = ort.RunOptions()
    timer = threading.Timer(cap_s, lambda: setattr(options, "terminate", True))
    timer.daemon = True
    start = time.perf_counter()
    timer.start()
    try:
        return np.asarray(model.session.run([model.output_name], {model.input_name: images}, options)[0])
    except Exception:
        if options.terminate or time.perf_counter() - start >= cap_s:
            raise _CutOff(cap_s) from None
        raise
    finally:
        timer.cancel()


def check_latency(model: DefenseModel, image: np.ndarray, limits: Limits) -> str | None:
    """The latency rule on one image: the median of TIMED_RUNS timed runs (after the warm-up),
    decided as soon as a majority is on one side; runs past TIMED_CUT_FACTOR x the budget are
    stopped. Returns the reason when over the budget, else None."""
    budget_s = limits.latency_ms / 1e3
    cap_s = TIMED_CUT_FACTOR * budget_s
    majority = TIMED_RUNS // 2 + 1
    times: list[float] = []
    over = under = 0
    while over < majority and under < majority:
        start = time.perf_counter()
        try:
            _capped_run(model, image, cap_s)
            elapsed = time.perf_counter() - start
        except _CutOff:
            elapsed = cap_s
        times.append(elapsed)
        over += elapsed > budget_s
        under += elapsed <= budget_s
    if over >= majority:
        return f"latency: one image takes longer than the limit; the limit is {limits.latency_ms:g} ms"
    return None


def _run(model: DefenseModel, batch: np.ndarray) -> np.ndarray:
    return np.asarray(model.session.run([model.output_name], {model.input_name: batch})[0])


def _label(model: DefenseModel, image: np.ndarray) -> int:
    return int(labels_from_logits(_run(model, image[None]))[0])


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit (NaN equals the same NaN; -0.0 differs from 0.0): what batch invariance means."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def probe_images(model: DefenseModel, clean: np.ndarray, seed: int) -> np.ndarray:
    """Images where batch effects would show: clean, noise-blended, noise, and boundary pairs."""
    rng = np.random.default_rng(seed)
    k = min(8, clean.shape[0])
    base = clean[:k] if k else rng.random((4, *IMAGE_SHAPE), dtype=np.float32)
    noise = rng.random(base.shape, dtype=np.float32)
    blends = [np.clip((1 - a) * base + a * noise, 0, 1).astype(np.float32) for a in (0.3, 0.6)]
    probes = np.concatenate([base, *blends, noise], axis=0)
    return np.concatenate([probes, boundary_pairs(lambda x: _label(model, x), probes, pairs=4)], axis=0)


def boundary_pairs(label_of, images: np.ndarray, pairs: int = 4, steps: int = 40) -> np.ndarray:
    """Points a hair apart on either side of the decision boundary of `label_of` (one image ->
    label), found by bisection between images of different labels. Returns [2*found,3,64,64]."""
    labels = np.array([label_of(images[i]) for i in range(len(images))])
    out = []
    for i in range(len(images)):
        if len(out) >= 2 * pairs:
            break
        j = next((j for j in range(len(images)) if labels[j] != labels[i]), None)
        if j is None or j < i:
            continue
        lo, hi = bisect_boundary(label_of, images[i], images[j], steps)
        out += [lo, hi]
    return np.asarray(out, dtype=np.float32).reshape(-1, *IMAGE_SHAPE)


def bisect_boundary(label_of, a: np.ndarray, b: np.ndarray, steps: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Bisection on t in (1-t)a + tb until the two float32 points are as close as float32 allows."""
    la = label_of(a)
    lo_t, hi_t = 0.0, 1.0
    lo, hi = a, b
    for _ in range(steps):
        mid_t = (lo_t + hi_t) / 2
        mid = ((1 - mid_t) * a.astype(np.float64) + mid_t * b.astype(np.float64)).astype(np.float32)
        if np.array_equal(mid, lo) or np.array_equal(mid, hi):
            break
        if label_of(mid) == la:
            lo_t, lo = mid_t, mid
        else:
            hi_t, hi = mid_t, mid
    return lo, hi


def _arrangements(n_probes: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Index batches of `size` covering every probe; -1 marks a filler image. Positions and
    neighbours change from one size to the next."""
    order = rng.permutation(n_probes)
    batches = []
    for start in range(0, n_probes, size):
        idx = np.full(size, -1)
        chunk = order[start:start + size]
        offset = int(rng.integers(0, size - len(chunk) + 1))
        idx[offset:offset + len(chunk)] = chunk
        batches.append(idx)
    return batches


class _ModelError(Exception):
    """A run failed or gave a wrong shape; the reason is already recorded."""


@dataclass
class _BatchProbe:
    """What the runs at sizes above 1 showed: labels that change on an identical repeated run
    (`unstable`), labels that change when only the other images of the batch change (`coupled`),
    and whether every probe's logits were bit-identical to its logits alone (`bit_identical`)."""

    unstable: bool = False
    coupled: bool = False
    bit_identical: bool = True


def _checked_run(model: DefenseModel, batch: np.ndarray, num_classes: int, result: Validation) -> np.ndarray:
    try:
        out = _run(model, batch)
    except Exception as error:
        result.fail(f"runtime: the model fails on a batch of {len(batch)} valid images", error)
        raise _ModelError from None
    if out.shape != (len(batch), num_classes):
        result.fail(f"output: a batch of {len(batch)} images must give logits [{len(batch)},C] with the same C",
                    f"shape {list(out.shape)}")
        raise _ModelError
    return out


def _probe_batches(model: DefenseModel, probes: np.ndarray, alone: np.ndarray, num_classes: int, limits: Limits,
                   rng: np.random.Generator, result: Validation) -> _BatchProbe:
    """Every probe at every size the arena runs (2, 4, ... max_chunk), at varying positions among
    noise images (fillers A); the first batch of each size run twice (an identical repeated run);
    every batch run once more with half its probes kept at their positions and every other image
    replaced by a flat grey one (fillers B): the same size and position, other content. At size 2,
    every probe next to black and next to white: content coupling moves labels most next to the
    most different images, and the boundary pairs at the slightest. No evaluation image is a
    companion (a verdict must not depend on a private one). About twice the model runs of the
    probe that only compared sizes (docs/benchmarks.md)."""
    found = _BatchProbe()
    for size in chunk_sizes(limits.max_chunk)[1:]:
        filler_a = rng.random((size, *IMAGE_SHAPE), dtype=np.float32)
        filler_b = np.broadcast_to(rng.random((size, 1, 1, 1), dtype=np.float32), (size, *IMAGE_SHAPE))
        for j, idx in enumerate(_arrangements(len(probes), size, rng)):
            real = idx >= 0
            batch = filler_a.copy()
            batch[real] = probes[idx[real]]
            first = _checked_run(model, batch, num_classes, result)
            labels = labels_from_logits(first)
            found.bit_identical &= _same_bits(first[real], alone[idx[real]])
            if j == 0:
                again = _checked_run(model, batch, num_classes, result)
                found.unstable |= bool(np.any(labels != labels_from_logits(again)))
                found.bit_identical &= _same_bits(first, again)
            keep = real & (np.arange(size) % 2 == j % 2)    # alternate halves from batch to batch
            if keep.any():
                other = filler_b.copy()
                other[keep] = batch[keep]
                out = _checked_run(model, other, num_classes, result)
                found.coupled |= bool(np.any(labels_from_logits(out)[keep] != labels[keep]))
                found.bit_identical &= _same_bits(out[keep], first[keep])
    if limits.max_chunk >= 2 and not found.coupled:
        black = np.zeros((1, *IMAGE_SHAPE), np.float32)
        white = np.ones_like(black)

        def label_next_to(x: np.ndarray, companion: np.ndarray) -> int:
            out = _checked_run(model, np.concatenate([x[None], companion]), num_classes, result)
            return int(labels_from_logits(out)[0])

        found.coupled = any(label_next_to(x, black) != label_next_to(x, white) for x in probes)
    return found


def check_runtime(model: DefenseModel, evaluation_x: np.ndarray, evaluation_y: np.ndarray,
                  limits: Limits, result: Validation) -> None:
    first = evaluation_x[:1] if len(evaluation_x) else np.zeros((1, *IMAGE_SHAPE), np.float32)
    # Latency first, so a too-slow model is rejected after a few single-image runs, not after
    # the hundreds of runs below. The first run is the warm-up; it is cut off at WARMUP_FACTOR
    # times the budget (a model that slow is rejected without waiting for it).
    try:
        single = _capped_run(model, first, max(WARMUP_FACTOR * limits.latency_ms, WARMUP_MIN_MS) / 1e3)
    except _CutOff as cut:
        result.fail(f"latency: one image takes longer than the limit (its first run was stopped at "
                    f"{cut.seconds * 1e3:.0f} ms); the limit is {limits.latency_ms:g} ms")
        return
    except Exception as error:
        result.fail("runtime: the model fails on a valid image", error)
        return
    if single.ndim != 2 or single.shape[0] != 1 or single.shape[1] < 2:
        result.fail("output: must be logits [N,C] with C >= 2", f"shape {list(single.shape)} for N=1")
        return
    if single.dtype != np.float32:
        result.fail("output: must be float32", single.dtype)
        return
    result.num_classes = int(single.shape[1])
    latency = check_latency(model, first, limits)
    if latency is not None:
        result.fail(latency)
        return
    if limits.nice_after_latency:
        os.nice(limits.nice_after_latency)   # the long probes below yield to serving

    rng = np.random.default_rng(limits.probe_seed)
    try:
        probes = probe_images(model, evaluation_x, limits.probe_seed)
        run1 = np.concatenate([_run(model, p[None]) for p in probes])
        run2 = np.concatenate([_run(model, p[None]) for p in probes])
    except Exception as error:
        result.fail("runtime: the model fails on a valid image", error)
        return
    if run1.shape != (len(probes), result.num_classes):
        result.fail("output: the number of classes C changes from one image to another", list(run1.shape))
        return
    # Rules section 3 (v3): floating-point differences between batch sizes are no reason to
    # reject; only labels that change on an identical repeated run, or with the content of the
    # other images at the same size and position, are. Logits bit-identical everywhere: served
    # batched; otherwise served one image at a time, whose labels are those of run1.
    try:
        found = _probe_batches(model, probes, run1, result.num_classes, limits, rng, result)
    except _ModelError:
        return
    if np.any(labels_from_logits(run1) != labels_from_logits(run2)) or found.unstable:
        result.fail("determinism: labels change on an identical repeated run (the same images in the same batch)")
    elif found.coupled:
        result.fail("batch invariance: labels depend on the content of other images in the batch "
                       "(the same image at the same position and batch size, next to other images)")
    bit_identical = found.bit_identical and _same_bits(run1, run2)
    result.serving_mode = SERVING_BATCHED if bit_identical else SERVING_PER_IMAGE
    model.mode = result.serving_mode
    model.max_chunk = limits.max_chunk if bit_identical else 1

    if len(evaluation_x):
        try:
            labels = model.labels(evaluation_x)
        except Exception as error:
            result.fail("runtime: the model fails on the public split's images", error)
            return
        result.clean_correct = labels.astype(np.int64) == evaluation_y
        result.clean_accuracy = float(np.mean(result.clean_correct))


# ------------------------------------------------------------------ entry point


def validate(name: str, data: bytes, evaluation_x: np.ndarray, evaluation_y: np.ndarray,
             limits: Limits) -> Validation:
    """All of section 3's rules on an uploaded file. Blocking; call it on a worker thread."""
    result = Validation()
    reasons = result.reasons
    if len(data) == 0:
        reasons.append("file: the upload is empty")
        return result
    if len(data) > limits.max_bytes:
        reasons.append(f"file: {len(data)} bytes exceeds the size limit of {limits.max_bytes} bytes")
        return result
    try:
        model = onnx.load_model_from_string(data)
    except Exception as error:
        result.fail("file: not an ONNX model (it does not parse; truncated or corrupt?)", error)
        return result
    if not model.HasField("graph") or not model.graph.node:
        reasons.append("file: not an ONNX model (no graph; truncated, corrupt or another format?)")
        return result
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as error:
        reasons.append(f"onnx.checker: {_short(error)}")
    io_reasons = check_io(model)
    reasons += io_reasons
    reasons += check_operators(model)
    if io_reasons:
        return result  # nothing can be fed to it
    try:
        session = make_session(data, limits.threads)
    except Exception as error:
        result.fail("onnxruntime: the model cannot be loaded", error)
        return result
    defense = DefenseModel(name, session, SERVING_BATCHED, limits.max_chunk, len(data))
    check_runtime(defense, evaluation_x, evaluation_y, limits, result)
    if result.accepted:
        result.model = defense
    return result
