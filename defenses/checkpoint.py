"""Training checkpoints: one file per run, rewritten atomically after every epoch.

A checkpoint holds the configuration, the completed epochs, the model, optimizer and scheduler
states, every process's random number generator states, and the metrics history, as plain
tensors and Python values, so it loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from defenses.atomic import atomic_write
from defenses.config import TrainConfig
from defenses.models import build_model

FORMAT = "robustness-arena/defense-checkpoint"
VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or not one of ours."""


@dataclass
class CheckpointMeta:
    """What a checkpoint's model was trained with, and how far."""

    config: TrainConfig
    epoch: int                      # completed epochs
    num_classes: int
    class_names: tuple[str, ...]
    history: list[dict]             # one metrics record per completed epoch (metrics.jsonl)
    path: Path

    @property
    def finished(self) -> bool:
        return self.epoch >= self.config.epochs

    @property
    def clean_accuracy(self) -> float | None:
        """Validation clean accuracy after the last completed epoch."""
        return self.history[-1].get("val_acc") if self.history else None


class Checkpoint(NamedTuple):
    """`model, meta = load_checkpoint(path)`: the model in eval mode on the CPU, and its metadata."""

    model: nn.Module
    meta: CheckpointMeta


def resolve(path: str | os.PathLike) -> Path:
    """A run directory means its checkpoint file."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def save(path: Path, state: dict) -> None:
    """Write `state` to path atomically."""
    with atomic_write(path) as handle:
        torch.save({"format": FORMAT, "version": VERSION, **state}, handle)


def read(path: str | os.PathLike) -> dict:
    """The raw state of a checkpoint file (or run directory)."""
    path = resolve(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch errors alike
        raise CheckpointError(f"{path} is not a readable checkpoint: {error}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a robustness-arena defense checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')}, this code reads {VERSION}")
    return state


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """(model, meta) of a checkpoint file or run folder: the model in eval mode on the CPU."""
    path = resolve(path)
    state = read(path)
    config = TrainConfig.from_dict(state["config"])
    model = build_model(config.arch, state["num_classes"])
    model.load_state_dict(state["model"])
    model.eval()
    meta = CheckpointMeta(
        config=config,
        epoch=state["epoch"],
        num_classes=state["num_classes"],
        class_names=tuple(state["class_names"]),
        history=list(state["history"]),
        path=path,
    )
    return Checkpoint(model, meta)
