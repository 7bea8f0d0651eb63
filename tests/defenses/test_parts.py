"""The training loop's parts: augmentation, schedules, configuration, presets."""

from __future__ import annotations

import pytest
import torch

from defenses.augment import random_crop_flip
from defenses.config import TrainConfig
from defenses.presets import DEMO, get_preset
from defenses.schedule import lr_factor


def test_crop_shifts_with_zero_fill_and_flip_mirrors():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    torch.manual_seed(0)
    out = random_crop_flip(x, padding=2, flip=False)
    assert out.shape == x.shape
    for i in range(2):  # each output is a shifted window of its own image (zeros outside)
        padded = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        windows = [padded[:, r : r + 8, c : c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    flipped = random_crop_flip(x, padding=0, flip=True)
    for i in range(2):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(2))
    torch.manual_seed(0)
    assert torch.equal(random_crop_flip(x, padding=2, flip=False), out)  # seeded, reproducible


def test_schedules():
    assert [lr_factor("piecewise", p) for p in (0.0, 0.74, 0.75, 0.9)] == [1.0, 1.0, 0.1, 0.01]
    assert lr_factor("cosine", 0.0) == 1.0 and lr_factor("cosine", 0.5) == pytest.approx(0.5)
    assert lr_factor("cosine", 1.0) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor("constant", 0.05, warmup=0.1) == pytest.approx(0.5)


def test_config_defaults_are_the_papers_and_round_trip():
    config = TrainConfig()
    threat = config.threat
    assert (threat.norm, threat.eps, threat.step_size, threat.steps) == ("linf", 8 / 255, 2 / 255, 10)
    assert (config.beta, config.bn_mode, config.lr, config.weight_decay) == (6.0, "eval", 0.1, 2e-4)
    l2 = TrainConfig(norm="l2").threat
    assert (l2.eps, l2.step_size) == (0.5, pytest.approx(0.125))
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown configuration fields: colour"):
        TrainConfig.from_dict({**config.to_dict(), "colour": 1})


def test_demo_preset_roles():
    assert get_preset("demo") is DEMO
    for role, method in [("natural", "natural"), ("surrogate", "natural"), ("pgd-at", "pgd-at"), ("trades", "trades"), ("mart", "mart")]:
        config = DEMO.config(role)
        assert config.method == method and config.data == "demo" and config.arch == "resnet-small"
    assert DEMO.config("surrogate").seed != DEMO.config("natural").seed
    assert DEMO.config("trades", epochs=1).epochs == 1
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        get_preset("fast")
