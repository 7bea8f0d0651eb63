"""Device choice and the per-device fast path: channels_last everywhere, bf16 autocast on CUDA."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn


def resolve_device(device: str | None = None, local_rank: int = 0) -> torch.device:
    """"auto"/None: the local CUDA device when there is one, else the CPU."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on `device` in channels_last, where convolutions run fastest (oneDNN on the CPU,
    cuDNN on CUDA; about 1.3x for the small ResNet's attack steps on 2 CPU cores)."""
    return model.to(device).to(memory_format=torch.channels_last)


def prepare_batch(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; nothing on the CPU, where fp32 is fastest."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
