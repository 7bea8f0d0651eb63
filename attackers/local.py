"""LocalOracle: an ONNX defense in-process, run by the arena's own inference code, with the arena's
budget semantics.

Same contract as the arena's Predict: labels only (`arena.ground.contract.labels_from_logits`: logits
that are not all finite are a failure, FAILED_LABEL), each image charged to the sample it is about
when the oracle knows the samples' clean images (`originals`: the arena's rule, `arena.ground.charging`),
else to the sample it names, and a request that would take any sample past its budget (or breaks the image contract) is
refused whole and charges nothing. The model runs through `arena.ground.inference.DefenseModel`, with the
arena's session options and power-of-two chunks, so an adversarial found locally is one on the
arena too, down to points on the decision boundary (tests/attackers/test_local_matches_arena.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from arena.ground.charging import SampleCharger
from arena.ground.contract import DEFAULT_BUDGET, labels_from_logits
from arena.ground.inference import DEFAULT_MAX_CHUNK, SERVING_BATCHED, SERVING_PER_IMAGE, DefenseModel, make_session
from attackers.oracle import BudgetExceeded, InvalidRequest, Oracle, OracleError, check_request


def load_defense(model: str | os.PathLike | bytes, threads: int = 0, serving_mode: str = SERVING_BATCHED,
                 max_chunk: int = DEFAULT_MAX_CHUNK) -> DefenseModel:
    """The defense as the arena runs it (`arena.ground.inference`: same session options, same chunks)."""
    if serving_mode not in (SERVING_BATCHED, SERVING_PER_IMAGE):
        raise ValueError(f"serving_mode must be {SERVING_BATCHED!r} or {SERVING_PER_IMAGE!r}, got {serving_mode!r}")
    if isinstance(model, bytes):
        data, source = model, "<bytes>"
    else:
        source = str(model)
        if not Path(source).is_file():
            raise OracleError(f"ONNX model {source} does not exist")
        data = Path(source).read_bytes()
    try:
        session = make_session(data, threads or None)
    except Exception as error:  # onnxruntime raises its own exception types
        raise OracleError(f"cannot load ONNX model {source}: {error}") from None
    return DefenseModel(source, session, serving_mode, max_chunk, len(data))


class LocalOracle(Oracle):
    """An ONNX file as an oracle. `budget` is per sample (None: unlimited); `num_samples`, when
    given, bounds the sample ids a request may name; `serving_mode` is how the arena serves the
    defense ("batched" unless its validation found logits that vary with the batch size);
    `originals`, the clean images of every sample (the whole split), charges each image to the
    sample it is about as the arena does (`arena.ground.charging`), else to the one it names."""

    def __init__(self, model: str | os.PathLike | bytes, *, budget: int | None = DEFAULT_BUDGET,
                 num_samples: int | None = None, threads: int = 0, serving_mode: str = SERVING_BATCHED,
                 originals: np.ndarray | None = None) -> None:
        if budget is not None and (int(budget) != budget or budget < 0):
            raise ValueError(f"budget must be a non-negative integer or None, got {budget!r}")
        if num_samples is not None and (int(num_samples) != num_samples or num_samples < 0):
            raise ValueError(f"num_samples must be a non-negative integer or None, got {num_samples!r}")
        self.defense = load_defense(model, threads, serving_mode)
        self._session = self.defense.session
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise OracleError(f"the model must have one input and one output, got {len(inputs)} and {len(outputs)}")
        self._input = inputs[0].name
        shape = inputs[0].shape
        if len(shape) != 4 or not all(isinstance(s, int) for s in shape[1:]):
            raise OracleError(f"the model input must be [N,C,H,W] with fixed C,H,W, got {shape}")
        self.image_shape = tuple(int(s) for s in shape[1:])
        out_shape = outputs[0].shape
        if len(out_shape) != 2 or not isinstance(out_shape[1], int):
            # Fall back on a probe when the class count is not static in the graph.
            probe = self._session.run(None, {self._input: np.zeros((1, *self.image_shape), np.float32)})[0]
            self._num_classes = int(probe.shape[1])
        else:
            self._num_classes = int(out_shape[1])
        self.budget = None if budget is None else int(budget)
        if originals is not None:
            originals = np.asarray(originals, dtype=np.float32)
            num_samples = originals.shape[0] if num_samples is None else num_samples
        self._charger = None if originals is None else SampleCharger(originals)
        self.num_samples = None if num_samples is None else int(num_samples)
        self._used = np.zeros(self.num_samples or 0, dtype=np.int64)
        self.calls = 0  # successful labels() calls

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def queries_used(self, sample_indices: np.ndarray | None = None) -> np.ndarray:
        """Images charged so far, per sample (all known samples when sample_indices is None)."""
        if sample_indices is None:
            return self._used.copy()
        ids = np.asarray(sample_indices, dtype=np.int64)
        out = np.zeros(ids.shape, dtype=np.int64)
        known = ids < self._used.shape[0]
        out[known] = self._used[ids[known]]
        return out

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Raw logits, uncharged: for tests and benchmarks only, never for attacks."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        if images.shape[0] == 0:
            return np.zeros((0, self._num_classes), np.float32)
        return self.defense.logits(images)

    def labels(self, images: np.ndarray, sample_indices: np.ndarray) -> np.ndarray:
        images, ids = check_request(images, sample_indices, self.image_shape, self.bounds)
        if self.num_samples is not None and ids.size and ids.max() >= self.num_samples:
            raise InvalidRequest(f"sample id {int(ids.max())} out of range: the run has {self.num_samples} samples")
        if ids.size == 0:
            return np.zeros(0, dtype=np.int64)
        top = int(ids.max()) + 1
        if top > self._used.shape[0]:
            self._used = np.concatenate([self._used, np.zeros(top - self._used.shape[0], np.int64)])
        charged = ids if self._charger is None else self._charger.charged(images, ids)
        wanted = np.bincount(charged, minlength=self._used.shape[0])
        if self.budget is not None:
            over = np.flatnonzero(self._used + wanted > self.budget)
            if over.size:
                named = np.unique(ids[np.isin(charged, over)])   # the samples whose images were refused
                raise BudgetExceeded(
                    f"request refused: it would take {over.size} sample(s) past the budget of {self.budget} "
                    f"(e.g. sample {int(over[0])}: {int(self._used[over[0]])} used + {int(wanted[over[0]])} asked)",
                    named.tolist(),
                )
        labels = labels_from_logits(self.logits(images)).astype(np.int64)
        self._used += wanted  # charged only once the answer exists
        self.calls += 1
        return labels
