"""ONNX Runtime sessions for defenses: options, batch-invariant execution, a memory-bounded cache.

Batch invariance. A label must not depend on what else is in the batch (docs/rules.md section 3).
ONNX Runtime may pick different kernels for different batch shapes, so the arena only ever runs
a defense at the batch sizes in `chunk_sizes(max_chunk)` (powers of two): a batch of n images is
cut into chunks along n's binary digits (n = 100 -> 64 + 32 + 4; no padding, no copies: views).
Submission validation (`arena.server.validation`) checks, for every one of those sizes and with images
at different positions among different neighbours, whether every image's logits are bit-identical
to its logits alone; a defense whose are is served "batched", any other accepted one (logits that
differ between sizes, e.g. by GEMM blocking) is served "per_image" (batch size 1 only, so an
image's label never depends on the batch it arrives in).
On this project's CPU build conv/gemm models are bit-identical at every batch size and thread
count we measured (docs/benchmarks.md, "Design measurements"), so defenses are normally served
batched.
"""

from __future__ import annotations

import collections
import os
import threading
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from arena.ground.contract import DEFAULT_MAX_CHUNK, labels_from_logits

SERVING_BATCHED = "batched"
SERVING_PER_IMAGE = "per_image"


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def providers() -> list[str]:
    """CUDA when this onnxruntime build has it, else CPU."""
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Full graph optimisation, sequential execution, no thread spinning (clients share the cores)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.use_deterministic_compute = True
    options.log_severity_level = 3
    return options


def make_session(model: bytes, threads: int | None = None) -> ort.InferenceSession:
    return ort.InferenceSession(model, session_options(threads), providers=providers())


def chunk_sizes(max_chunk: int) -> tuple[int, ...]:
    """The batch sizes the arena ever runs a batched defense at: 1, 2, 4, ... <= max_chunk."""
    sizes, s = [], 1
    while s <= max_chunk:
        sizes.append(s)
        s *= 2
    return tuple(sizes)


def split_batch(n: int, max_chunk: int) -> list[tuple[int, int]]:
    """(start, stop) chunks of n images, each of a size in chunk_sizes(max_chunk), largest first."""
    largest = chunk_sizes(max_chunk)[-1]
    out, start = [], 0
    while n - start >= largest:
        out.append((start, start + largest))
        start += largest
    rest = n - start
    bit = largest
    while rest:
        bit //= 2
        if rest & bit:
            out.append((start, start + bit))
            start += bit
            rest -= bit
    return out


class DefenseModel:
    """One loaded defense: an ORT session plus the way it must be run (batched or per image)."""

    def __init__(self, name: str, session: ort.InferenceSession, mode: str, max_chunk: int, size_bytes: int) -> None:
        self.name = name
        self.session = session
        self.mode = mode
        self.max_chunk = 1 if mode == SERVING_PER_IMAGE else max_chunk
        self.size_bytes = size_bytes
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name

    def logits(self, images: np.ndarray, run_options: ort.RunOptions | None = None) -> np.ndarray:
        """float32 [n,3,64,64] -> float32 logits [n,C], run only at the validated batch sizes."""
        n = images.shape[0]
        chunks = split_batch(n, self.max_chunk)
        if len(chunks) == 1:
            return np.asarray(self.session.run([self.output_name], {self.input_name: images}, run_options)[0])
        parts = [self.session.run([self.output_name], {self.input_name: images[a:b]}, run_options)[0]
                 for a, b in chunks]
        return np.concatenate(parts, axis=0)

    def labels(self, images: np.ndarray, run_options: ort.RunOptions | None = None) -> np.ndarray:
        """int32 [n]: the argmax, FAILED_LABEL where the logits are not all finite. Only labels
        ever leave the arena."""
        return labels_from_logits(self.logits(images, run_options))


@dataclass
class _Entry:
    model: DefenseModel
    cost: int


class SessionCache:
    """Lazily loaded defenses, least recently used evicted beyond a memory budget.

    The cost of a session is estimated as `factor` x its ONNX size (weights, optimised copies,
    arena buffers); at least the most recently used session is always kept.
    """

    def __init__(self, loader, budget_bytes: int, factor: float = 3.0, on_evict=None) -> None:
        self._loader = loader          # name -> DefenseModel (blocking; called off the event loop)
        self._on_evict = on_evict      # called with each model dropped (e.g. to end its process)
        self._budget = int(budget_bytes)
        self._factor = factor
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._loading: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> DefenseModel:
        """The defense's model, loading it if needed (blocking: call from a worker thread)."""
        while True:
            with self._lock:
                entry = self._entries.get(name)
                if entry is not None:
                    self._entries.move_to_end(name)
                    return entry.model
                event = self._loading.get(name)
                if event is None:
                    event = self._loading[name] = threading.Event()
                    break
            event.wait()
        try:
            model = self._loader(name)
            with self._lock:
                self._entries[name] = _Entry(model, int(model.size_bytes * self._factor) + (1 << 20))
                dropped = self._evict()
            self._dropped(*dropped)
            return model
        finally:
            with self._lock:
                self._loading.pop(name, None)
            event.set()

    def put(self, model: DefenseModel) -> None:
        with self._lock:
            self._entries[model.name] = _Entry(model, int(model.size_bytes * self._factor) + (1 << 20))
            self._entries.move_to_end(model.name)
            dropped = self._evict()
        self._dropped(*dropped)

    def _evict(self) -> list:
        """Drops least recently used models over the budget (under the lock); returns them, for
        the caller to close after releasing it: closing a worker may wait on that defense's own
        lock (a worker starting), which must not hold up every other defense's `get`."""
        total = sum(e.cost for e in self._entries.values())
        dropped = []
        while total > self._budget and len(self._entries) > 1:
            _, entry = self._entries.popitem(last=False)
            total -= entry.cost
            dropped.append(entry.model)
        return dropped

    def evict(self, name: str) -> None:
        with self._lock:
            entry = self._entries.pop(name, None)
        if entry is not None:
            self._dropped(entry.model)

    def _dropped(self, *models) -> None:
        if self._on_evict is not None:
            for model in models:
                self._on_evict(model)

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._entries)
