"""Small ONNX image classifiers built with onnx.helper and numpy weights (no torch).

They follow the defense contract (docs/rules.md section 3): one input `images` float32
[N,3,64,64] with N dynamic, values in [0, 1]; one output `logits` float32 [N,C]. The tests and
`arena bench serve` use them where a trained defense is not needed.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from arena.ground.contract import IMAGE_SHAPE

OPSET = 17
INPUT = "images"
OUTPUT = "logits"


class _Graph:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def const(self, array: np.ndarray, prefix: str = "w") -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int = 3, stride: int = 1, gain: float = 1.0) -> str:
        std = gain * np.sqrt(2.0 / (cin * k * k))
        w = self.const((self.rng.standard_normal((cout, cin, k, k)) * std).astype(np.float32))
        b = self.const((self.rng.standard_normal(cout) * 0.01).astype(np.float32))
        pad = k // 2
        return self.node("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)

    def model(self, output: str, num_classes: int) -> onnx.ModelProto:
        self.nodes[-1].output[0] = OUTPUT
        graph = helper.make_graph(
            self.nodes,
            "toy",
            [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", *IMAGE_SHAPE])],
            [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", num_classes])],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="arena.toy_models")
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        return model


def _head(g: _Graph, x: str, channels: int, num_classes: int) -> str:
    pooled = g.node("GlobalAveragePool", [x])
    flat = g.node("Flatten", [pooled], axis=1)
    w = g.const((g.rng.standard_normal((channels, num_classes)) / np.sqrt(channels)).astype(np.float32))
    b = g.const((g.rng.standard_normal(num_classes) * 0.1).astype(np.float32))
    return g.node("Gemm", [flat, w, b])


def _normalise(g: _Graph, x: str) -> str:
    mean = g.const(np.array([0.48, 0.45, 0.40], np.float32).reshape(1, 3, 1, 1))
    std = g.const(np.array([0.27, 0.26, 0.28], np.float32).reshape(1, 3, 1, 1))
    return g.node("Div", [g.node("Sub", [x, mean]), std])


def tiny_cnn(num_classes: int = 10, width: int = 8, seed: int = 0) -> onnx.ModelProto:
    """Normalise -> conv3x3 -> ReLU -> global average pool -> linear: fast, for the tests."""
    g = _Graph(seed)
    x = _normalise(g, INPUT)
    x = g.node("Relu", [g.conv(x, 3, width, stride=2)])
    return g.model(_head(g, x, width, num_classes), num_classes)


def resnet_like(num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64), seed: int = 0) -> onnx.ModelProto:
    """A demo-sized ResNet: a stem, then per width a (strided) conv and one residual block."""
    g = _Graph(seed)
    x = _normalise(g, INPUT)
    cin = 3
    for i, w in enumerate(widths):
        x = g.node("Relu", [g.conv(x, cin, w, stride=1 if i == 0 else 2)])
        h = g.node("Relu", [g.conv(x, w, w)])
        h = g.conv(h, w, w, gain=0.5)
        x = g.node("Relu", [g.node("Add", [x, h])])
        cin = w
    return g.model(_head(g, x, cin, num_classes), num_classes)


def _batchnorm(g: _Graph, x: str, channels: int) -> str:
    scale = g.const((1.0 + 0.1 * g.rng.standard_normal(channels)).astype(np.float32))
    bias = g.const((0.1 * g.rng.standard_normal(channels)).astype(np.float32))
    mean = g.const((0.1 * g.rng.standard_normal(channels)).astype(np.float32))
    var = g.const((1.0 + 0.1 * g.rng.random(channels)).astype(np.float32))
    return g.node("BatchNormalization", [x, scale, bias, mean, var], epsilon=1e-5)


def _conv_nobias(g: _Graph, x: str, cin: int, cout: int, k: int, stride: int, gain: float = 1.0) -> str:
    std = gain * np.sqrt(2.0 / (cin * k * k))
    w = g.const((g.rng.standard_normal((cout, cin, k, k)) * std).astype(np.float32))
    return g.node("Conv", [x, w], kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)


def small_preact_resnet(num_classes: int = 10, widths: tuple[int, ...] = (32, 64, 128), seed: int = 0) -> onnx.ModelProto:
    """The shape and cost of the demo's defense (defenses.models.small_resnet: a pre-activation
    ResNet with a stride-4 stem and one block per stage at 16, 8 and 4 pixels), with random
    weights: what `arena bench serve` serves by default."""
    g = _Graph(seed)
    x = _normalise(g, INPUT)
    x = _conv_nobias(g, x, 3, widths[0], 3, 4)
    cin = widths[0]
    for i, w in enumerate(widths):
        stride = 1 if i == 0 else 2
        out = g.node("Relu", [_batchnorm(g, x, cin)])
        shortcut = _conv_nobias(g, out, cin, w, 1, stride) if (stride != 1 or cin != w) else x
        h = _conv_nobias(g, out, cin, w, 3, stride)
        h = _conv_nobias(g, g.node("Relu", [_batchnorm(g, h, w)]), w, w, 3, 1, gain=0.5)
        x = g.node("Add", [h, shortcut])
        cin = w
    x = g.node("Relu", [_batchnorm(g, x, cin)])
    return g.model(_head(g, x, cin, num_classes), num_classes)


def _linear(g: _Graph, x: str, din: int, dout: int) -> str:
    w = g.const((g.rng.standard_normal((din, dout)) / np.sqrt(din)).astype(np.float32))
    return g.node("Add", [g.node("MatMul", [x, w]), g.const((0.02 * g.rng.standard_normal(dout)).astype(np.float32))])


def _layer_norm(g: _Graph, x: str, dim: int) -> str:
    scale = g.const((1.0 + 0.1 * g.rng.standard_normal(dim)).astype(np.float32))
    bias = g.const((0.1 * g.rng.standard_normal(dim)).astype(np.float32))
    return g.node("LayerNormalization", [x, scale, bias], axis=-1, epsilon=1e-5)


def _gelu(g: _Graph, x: str) -> str:
    """x * 0.5 * (1 + erf(x / sqrt 2)), as torch.onnx exports GELU below opset 20."""
    erf = g.node("Erf", [g.node("Div", [x, g.const(np.array(np.sqrt(2.0), np.float32))])])
    half = g.node("Mul", [x, g.const(np.array(0.5, np.float32))])
    return g.node("Mul", [half, g.node("Add", [erf, g.const(np.array(1.0, np.float32))])])


def mlp_mixer(num_classes: int = 10, dim: int = 32, patch: int = 8, blocks: int = 2, seed: int = 0,
              initializers_as_inputs: bool = False) -> onnx.ModelProto:
    """A patch-embedding MLP-mixer (LayerNorm, GELU as erf, token and channel MLPs), the kind of
    model another toolchain exports: its MatMuls run on [N*tokens, dim] rows, so ONNX Runtime's
    GEMM blocking may change the last bits of the logits with N. `initializers_as_inputs` writes
    it as legacy exporters did (IR 3: every weight also listed as a graph input)."""
    g = _Graph(seed)
    tokens = (IMAGE_SHAPE[1] // patch) * (IMAGE_SHAPE[2] // patch)
    x = _normalise(g, INPUT)
    w = g.const((g.rng.standard_normal((dim, 3, patch, patch)) * np.sqrt(2.0 / (3 * patch * patch))).astype(np.float32))
    x = g.node("Conv", [x, w], kernel_shape=[patch, patch], strides=[patch, patch])         # [N,D,h,w]
    x = g.node("Reshape", [x, g.const(np.array([0, dim, tokens], np.int64), "shape")])       # [N,D,T]
    x = g.node("Transpose", [x], perm=[0, 2, 1])                                             # [N,T,D]
    for _ in range(blocks):
        y = g.node("Transpose", [_layer_norm(g, x, dim)], perm=[0, 2, 1])                    # [N,D,T]
        y = _linear(g, _gelu(g, _linear(g, y, tokens, 2 * tokens)), 2 * tokens, tokens)
        x = g.node("Add", [x, g.node("Transpose", [y], perm=[0, 2, 1])])
        y = _linear(g, _gelu(g, _linear(g, _layer_norm(g, x, dim), dim, 2 * dim)), 2 * dim, dim)
        x = g.node("Add", [x, y])
    x = g.node("ReduceMean", [_layer_norm(g, x, dim)], axes=[1], keepdims=0)                 # [N,D]
    head = g.const((g.rng.standard_normal((dim, num_classes)) / np.sqrt(dim)).astype(np.float32))
    g.node("Gemm", [x, head, g.const((g.rng.standard_normal(num_classes) * 0.1).astype(np.float32))])
    model = g.model(g.nodes[-1].output[0], num_classes)
    if initializers_as_inputs:
        model.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                                 for t in model.graph.initializer)
        model.ir_version = 3
        onnx.checker.check_model(model, full_check=True)
    return model


def batch_ulps(num_classes: int = 10, width: int = 8, step: float = 2.0 ** -21, by: str = "size",
               seed: int = 0) -> onnx.ModelProto:
    """tiny_cnn whose logits move by a few float32 ulps with the batch: logits + t * step * [0, 1,
    ..., C-1], with t = N - 1 (`by="size"`) or t = 8 x the mean value of the whole batch
    (`by="content"`). "size" stands for the last-bit differences GEMM blocking makes between
    batch sizes: deterministic at each size and not coupled to the other images, but points on
    the decision boundary change label between sizes. "content" is coupled to the other images,
    by as little: only points on the boundary show it."""
    if by not in ("size", "content"):
        raise ValueError(f"by must be 'size' or 'content', got {by!r}")
    g = _Graph(seed)
    x = g.node("Relu", [g.conv(_normalise(g, INPUT), 3, width, stride=2)])
    logits = _head(g, x, width, num_classes)
    if by == "size":
        n = g.node("Cast", [g.node("Shape", [INPUT], start=0, end=1)], to=TensorProto.FLOAT)      # [1]
        t = g.node("Sub", [n, g.const(np.array([1.0], np.float32))])
    else:
        t = g.node("Mul", [g.node("ReduceMean", [INPUT], keepdims=0), g.const(np.array(8.0, np.float32))])
    offset = g.node("Mul", [t, g.const((step * np.arange(num_classes)).astype(np.float32))])      # [C]
    g.node("Add", [logits, offset])
    return g.model(g.nodes[-1].output[0], num_classes)


def batch_stats_cnn(num_classes: int = 10, width: int = 8, seed: int = 0) -> onnx.ModelProto:
    """tiny_cnn normalised with the batch's own statistics (per channel, over the batch and the
    pixels, as batch normalisation in training mode): every label depends on the other images."""
    g = _Graph(seed)
    mean = g.node("ReduceMean", [INPUT], axes=[0, 2, 3], keepdims=1)
    centred = g.node("Sub", [INPUT, mean])
    var = g.node("ReduceMean", [g.node("Mul", [centred, centred])], axes=[0, 2, 3], keepdims=1)
    std = g.node("Sqrt", [g.node("Add", [var, g.const(np.array(1e-5, np.float32))])])
    x = g.node("Relu", [g.conv(g.node("Div", [centred, std]), 3, width, stride=2)])
    return g.model(_head(g, x, width, num_classes), num_classes)


def to_bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


def lookup_table(honest: onnx.ModelProto, images: np.ndarray, labels: np.ndarray, radius: float,
                 num_classes: int, prefix: str = "lut") -> onnx.ModelProto:
    """The exploit rules v2 close (docs/rules.md section 4): a defense that stores `images` and
    answers their stored label for anything within `radius` (l2) of one of them, and the honest
    model's label elsewhere. Standard operators only, deterministic, batch-invariant: it passes
    validation. Against images it has stored, its distances are at least `radius`; against any
    other images it is the honest model. `prefix` names its tensors (a table around a table needs another)."""
    model = onnx.ModelProto()
    model.CopyFrom(honest)
    graph = model.graph
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == OUTPUT:
                node.output[i] = f"{prefix}_honest"
    stored = np.ascontiguousarray(images, dtype=np.float32).reshape(len(images), -1)
    one_hot = np.zeros((len(labels), num_classes), np.float32)
    one_hot[np.arange(len(labels)), labels] = 100.0
    consts = {
        f"{prefix}_images_t": stored.T.copy(), f"{prefix}_norms": (stored.astype(np.float64) ** 2).sum(1)[None].astype(np.float32),
        f"{prefix}_logits": one_hot, f"{prefix}_shape": np.array([-1, stored.shape[1]], np.int64),
        f"{prefix}_minus2": np.array(-2.0, np.float32), f"{prefix}_r2": np.array(radius ** 2, np.float32),
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    make = helper.make_node
    graph.node.extend([
        make("Reshape", [INPUT, f"{prefix}_shape"], [f"{prefix}_flat"]),
        make("MatMul", [f"{prefix}_flat", f"{prefix}_images_t"], [f"{prefix}_dot"]),                 # [N, K]
        make("ReduceSumSquare", [f"{prefix}_flat"], [f"{prefix}_x2"], axes=[1], keepdims=1),   # [N, 1]
        make("Mul", [f"{prefix}_dot", f"{prefix}_minus2"], [f"{prefix}_m2dot"]),
        make("Add", [f"{prefix}_x2", f"{prefix}_m2dot"], [f"{prefix}_partial"]),
        make("Add", [f"{prefix}_partial", f"{prefix}_norms"], [f"{prefix}_d2"]),                      # squared distances
        make("ReduceMin", [f"{prefix}_d2"], [f"{prefix}_min"], axes=[1], keepdims=1),
        make("ArgMin", [f"{prefix}_d2"], [f"{prefix}_nearest"], axis=1, keepdims=0),
        make("Less", [f"{prefix}_min", f"{prefix}_r2"], [f"{prefix}_near"]),                          # [N, 1]
        make("Gather", [f"{prefix}_logits", f"{prefix}_nearest"], [f"{prefix}_stored"], axis=0),      # [N, C]
        make("Where", [f"{prefix}_near", f"{prefix}_stored", f"{prefix}_honest"], [OUTPUT]),
    ])
    onnx.checker.check_model(model, full_check=True)
    return model


# ---------------------------------------------------------------- hostile models
# Valid ONNX with standard operators only, each abusing the arena in one way (tests/arena/
# test_hostile.py and `arena bench serve` submit them; docs/rules.md says what stops each).

MARKER = np.float32(0.123456)   # an image whose first value is exactly this trips the trap models


def slow_cnn(depth: int = 24, width: int = 64, num_classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """Too slow: `depth` full-resolution 3x3 convolutions sharing one weight tensor (a small file
    that costs about depth x 0.15 GFLOP per image)."""
    g = _Graph(seed)
    x = g.node("Relu", [g.conv(_normalise(g, INPUT), 3, width)])
    w = g.const((g.rng.standard_normal((width, width, 3, 3)) * np.sqrt(2.0 / (9 * width)) * 0.7).astype(np.float32))
    for _ in range(depth):
        x = g.node("Relu", [g.node("Conv", [x, w], kernel_shape=[3, 3], pads=[1, 1, 1, 1])])
    return g.model(_head(g, x, width, num_classes), num_classes)


def memory_bomb(copies: int = 16384, num_classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """Tiny file, huge intermediate: each image is expanded `copies`-fold (Unsqueeze, Expand,
    ReduceMean: 48 KiB x copies per image, 768 MiB at the default) and averaged back."""
    g = _Graph(seed)
    axes = g.const(np.array([1], np.int64), "axes")
    shape = g.const(np.array([1, copies, 1, 1, 1], np.int64), "shape")
    wide = g.node("Expand", [g.node("Unsqueeze", [INPUT, axes]), shape])
    x = g.node("ReduceMean", [wide], axes=[1], keepdims=0)
    x = g.node("Relu", [g.conv(_normalise(g, x), 3, 8, stride=2)])
    return g.model(_head(g, x, 8, num_classes), num_classes)


def nan_logits(threshold: float = 0.5, num_classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """tiny_cnn whose logits are all NaN for images whose mean value is below `threshold`
    (0 x log(mean - threshold): 0 where the log is finite, NaN where it is not)."""
    g = _Graph(seed)
    x = g.node("Relu", [g.conv(_normalise(g, INPUT), 3, 8, stride=2)])
    logits = _head(g, x, 8, num_classes)
    mean = g.node("ReduceMean", [INPUT], axes=[1, 2, 3], keepdims=0)                    # [N]
    log = g.node("Log", [g.node("Sub", [mean, g.const(np.array(threshold, np.float32))])])
    poison = g.node("Mul", [log, g.const(np.array(0.0, np.float32))])                   # 0 or NaN
    column = g.node("Unsqueeze", [poison, g.const(np.array([1], np.int64), "axes")])     # [N,1]
    g.node("Add", [logits, column])
    return g.model(g.nodes[-1].output[0], num_classes)


def _marker_flag(g: _Graph) -> str:
    """int64 scalar: 1 when some image of the batch has MARKER as its first value, else 0."""
    starts = g.const(np.zeros(4, np.int64), "starts")
    ends = g.const(np.array([2**62, 1, 1, 1], np.int64), "ends")
    first = g.node("Slice", [INPUT, starts, ends])                                      # [N,1,1,1]
    hit = g.node("Cast", [g.node("Equal", [first, g.const(np.array(MARKER, np.float32))])], to=TensorProto.FLOAT)
    return g.node("Cast", [g.node("ReduceMax", [hit], keepdims=0)], to=TensorProto.INT64)


def fails_on_marker(num_classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """tiny_cnn that raises an ONNX Runtime error on any batch holding a marked image (its logits
    get a [1,C+1] bias: broadcasting fails). Passes validation: no probe carries the marker."""
    g = _Graph(seed)
    x = g.node("Relu", [g.conv(_normalise(g, INPUT), 3, 8, stride=2)])
    logits = _head(g, x, 8, num_classes)
    width = g.node("Add", [g.const(np.array([num_classes], np.int64)), _marker_flag(g)])      # [1]
    shape = g.node("Concat", [g.const(np.array([1], np.int64)), width], axis=0)                # [1, C(+1)]
    bias = g.node("Expand", [g.const(np.array(0.0, np.float32)), shape])
    g.node("Add", [logits, bias])
    return g.model(g.nodes[-1].output[0], num_classes)


def hangs_on_marker(num_classes: int = 10, seed: int = 0, always: bool = False) -> onnx.ModelProto:
    """tiny_cnn whose logits go through a Loop of 1 iteration, or of 2**62 (for ever) on a batch
    holding a marked image (`always`: on every batch)."""
    g = _Graph(seed)
    x = g.node("Relu", [g.conv(_normalise(g, INPUT), 3, 8, stride=2)])
    logits = _head(g, x, 8, num_classes)
    flag = g.const(np.array(1, np.int64)) if always else _marker_flag(g)
    trips = g.node("Add", [g.node("Mul", [flag, g.const(np.array(2**62, np.int64))]), g.const(np.array(1, np.int64))])
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)],
    )
    g.node("Loop", [trips, g.const(np.array(True), "cond"), logits], body=body)
    return g.model(g.nodes[-1].output[0], num_classes)


def einsum_hang(num_classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """tiny_cnn whose logits get a term from an Einsum with the equation "....->i": ONNX shape
    inference loops for ever on it (onnx 1.23: in onnx.checker's full check, and in ONNX
    Runtime's model loading), at constant memory. Built without the checker, for that reason."""
    g = _Graph(seed)
    x = g.node("Relu", [g.conv(_normalise(g, INPUT), 3, 8, stride=2)])
    logits = _head(g, x, 8, num_classes)
    mean = g.node("ReduceMean", [INPUT], axes=[1, 2, 3], keepdims=0)                    # [N]
    term = g.node("Einsum", [mean], equation="....->i")
    g.node("Add", [logits, g.node("Unsqueeze", [term, g.const(np.array([1], np.int64), "axes")])])
    g.nodes[-1].output[0] = OUTPUT
    graph = helper.make_graph(
        g.nodes, "toy", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", *IMAGE_SHAPE])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", num_classes])], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="arena.toy_models")
    model.ir_version = 8
    return model


def bomb_on_marker(copies: int = 16384, num_classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """memory_bomb's expansion, `copies`-fold on a batch holding a marked image and 1-fold
    otherwise: passes validation (no probe carries the marker), then allocates 48 KiB x copies per
    image when served a marked one."""
    g = _Graph(seed)
    axes = g.const(np.array([1], np.int64), "axes")
    fold = g.node("Add", [g.node("Mul", [g.node("Unsqueeze", [_marker_flag(g), g.const(np.array([0], np.int64))]),
                                         g.const(np.array([copies - 1], np.int64))]),
                          g.const(np.array([1], np.int64))])                                   # [1]
    shape = g.node("Concat", [g.const(np.array([1], np.int64)), fold, g.const(np.ones(3, np.int64))], axis=0)
    wide = g.node("Expand", [g.node("Unsqueeze", [INPUT, axes]), shape])
    x = g.node("ReduceMean", [wide], axes=[1], keepdims=0)
    x = g.node("Relu", [g.conv(_normalise(g, x), 3, 8, stride=2)])
    return g.model(_head(g, x, 8, num_classes), num_classes)
