"""The CUDA provider is used when the installed ONNX Runtime has it (`pip install '.[gpu]'`), for
serving and for validation alike, so batch invariance is checked on the provider that serves.
No GPU here: the provider list is what is checked (and that validation builds its sessions
through the same function as serving)."""

from __future__ import annotations

import onnxruntime as ort

from arena.ground import inference
from arena.server import validation


def test_cuda_first_when_available(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert inference.providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert inference.providers() == ["CPUExecutionProvider"]


def test_validation_and_serving_share_the_session_factory():
    assert validation.make_session is inference.make_session
