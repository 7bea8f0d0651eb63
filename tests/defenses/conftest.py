"""Shared fixtures of the defenses tests: CPU, few threads, and one small trained model."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A resnet-small trained naturally for 3 epochs on 2000 embedded images (a few seconds)."""
    from defenses.config import TrainConfig
    from defenses.train import train

    out = tmp_path_factory.mktemp("trained-run")
    config = TrainConfig(method="natural", epochs=3, train_size=2000, batch_size=64, schedule="cosine", lr=0.1)
    return train(config, out, device="cpu", progress=False)


@pytest.fixture(scope="session")
def trained(trained_run):
    from defenses.checkpoint import load_checkpoint

    return load_checkpoint(trained_run)


class TinyNet(torch.nn.Module):
    """A small conv net with BatchNorm, for fast gradient-flow checks."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, 2, 1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    return TinyNet()
