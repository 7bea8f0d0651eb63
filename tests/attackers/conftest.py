"""Fixtures of the attack tests, built once per session (a few seconds on 2 cores).

- `models`: two tiny CNNs trained briefly on the embedded dataset (same data, different seeds):
  `target` (also exported to ONNX with torch.onnx.export(dynamo=False)) and `surrogate` (the
  torch module, for transfer-PGD).
- `samples`: evaluation images the target classifies correctly, with their labels.
"""

from __future__ import annotations

import dataclasses
import io
import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

NUM_CLASSES = 10


def tiny_cnn(num_classes: int = NUM_CLASSES, width: int = 16):
    """A small CNN at half resolution: ~72% on the embedded dataset after 5 epochs (~20 s)."""
    from torch import nn

    w = width
    return nn.Sequential(
        nn.AvgPool2d(2),
        nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
        nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
        nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4 * w, num_classes),
    )


def train_tiny(seed: int, x, y, epochs: int = 5):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    model = tiny_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = 64
    steps = epochs * (len(x) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=steps)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(order) - batch + 1, batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def export_onnx(model, path: Path) -> None:
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.zeros(2, 3, 64, 64),), buffer, dynamo=False, opset_version=17,
                          input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "N"}, "logits": {0: "N"}})
    path.write_bytes(buffer.getvalue())


@dataclass
class Models:
    onnx_path: Path
    target: object       # torch module (for reference checks only)
    surrogate: object    # torch module trained on the same data with another seed
    accuracy: float


# Bump when the fixture's recipe changes: trained models are cached across sessions under it.
FIXTURE_VERSION = "tiny-cnn-v1"


@pytest.fixture(scope="session")
def models() -> Models:
    """Trained once per machine (cached in the data cache folder, keyed by FIXTURE_VERSION)."""
    import torch

    from defenses.data import default_cache_dir, load_samples, load_split, to_float_chw

    folder = Path(default_cache_dir()) / "fixtures" / FIXTURE_VERSION
    onnx_path = folder / "target.onnx"
    target, surrogate = tiny_cnn(), tiny_cnn()
    if all((folder / name).is_file() for name in ("target.onnx", "target.pt", "surrogate.pt")):
        target.load_state_dict(torch.load(folder / "target.pt", weights_only=True))
        surrogate.load_state_dict(torch.load(folder / "surrogate.pt", weights_only=True))
        target.eval(), surrogate.eval()
    else:
        torch.set_num_threads(2)
        split = load_split("demo", "train")
        x, y = to_float_chw(split.images), split.labels.astype(np.int64)
        target, surrogate = train_tiny(0, x, y), train_tiny(1, x, y)
        folder.mkdir(parents=True, exist_ok=True)
        tag = f".{os.getpid()}.tmp"  # written aside, then renamed: concurrent sessions never see half a file
        torch.save(target.state_dict(), folder / f"target.pt{tag}")
        torch.save(surrogate.state_dict(), folder / f"surrogate.pt{tag}")
        export_onnx(target, folder / f"target.onnx{tag}")
        for name in ("target.pt", "surrogate.pt", "target.onnx"):
            (folder / f"{name}{tag}").replace(folder / name)
    xv, yv, _ = load_samples("demo", 200)
    with torch.no_grad():
        accuracy = float((target(torch.from_numpy(xv)).argmax(1).numpy() == yv).mean())
    return Models(onnx_path, target, surrogate, accuracy)


@dataclass
class Samples:
    x: np.ndarray   # float32 [n,3,64,64], correctly classified by the target
    y: np.ndarray   # int64 [n]


@pytest.fixture(scope="session")
def samples(models) -> Samples:
    from attackers.local import LocalOracle
    from defenses.data import load_samples

    x, y, _ = load_samples("demo", 100)
    pred = LocalOracle(models.onnx_path, budget=None).logits(x).argmax(1)
    keep = np.flatnonzero(pred == y)[:12]
    assert keep.size >= 8, f"the fixture model is too weak ({keep.size} correct of 100)"
    return Samples(np.ascontiguousarray(x[keep]), y[keep])


@pytest.fixture
def fresh_labels(models):
    """Labels from a fresh ONNX Runtime session (not the oracle that was attacked)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(models.onnx_path), providers=["CPUExecutionProvider"])

    def labels(images: np.ndarray) -> np.ndarray:
        return session.run(None, {"images": np.ascontiguousarray(images, dtype=np.float32)})[0].argmax(1)

    return labels


@dataclass
class ArenaServer:
    address: str
    token: str
    server: object       # arena.server.RunningServer
    budget: int
    max_batch: int
    num_samples: int


@pytest.fixture
def arena_server(shared_arena_server) -> ArenaServer:
    """The shared arena with a token of a new team: budgets are per team, defense and split
    (rules v2), so every test starts with the whole budget."""
    from arena.server.auth import create_token

    token = create_token(shared_arena_server.server.arena.store, f"attackers-{uuid.uuid4().hex[:8]}")
    return dataclasses.replace(shared_arena_server, token=token)


@pytest.fixture(scope="session")
def shared_arena_server(models, tmp_path_factory) -> ArenaServer:
    """A real arena on an ephemeral port, serving the fixture model as defense "tiny" (8 demo
    samples, budget 300, max_batch 16 so that attacks' batches get split)."""
    from arena.server.auth import create_token
    from arena.server.core import ArenaConfig
    from arena.ground.client import ArenaClient
    from arena.server import ServerConfig, start_server

    budget, max_batch, n = 300, 16, 8
    config = ServerConfig(store=tmp_path_factory.mktemp("arena-store"), data="demo", public_samples=n, private_samples=0,
                          host="127.0.0.1", port=0,
                          arena=ArenaConfig(budget=budget, max_batch=max_batch, latency_ms=2000.0))
    server = start_server(config)
    token = create_token(server.arena.store, "attackers")
    with ArenaClient(server.address, token) as client:
        defense = client.submit_defense(models.onnx_path.read_bytes(), "tiny", "the attack tests' fixture model")
    assert defense.status == 1, list(defense.rejection_reasons)
    yield ArenaServer(server.address, token, server, budget, max_batch, n)
    server.stop()
