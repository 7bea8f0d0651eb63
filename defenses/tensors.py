"""Dataset splits as torch tensors, and batched inference over them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from defenses.data import load_split


@dataclass
class TensorSplit:
    """A dataset split held as tensors on the training device (uint8 images, int64 labels)."""

    images: torch.Tensor       # uint8 [N,3,64,64]: a quarter of float32's memory, kept on the device
    labels: torch.Tensor       # int64 [N]
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device) -> TensorSplit:
        return TensorSplit(self.images.to(device), self.labels.to(device), self.class_names)

    def floats(self, index=slice(None)) -> torch.Tensor:
        """float32 [n,3,64,64] in [0, 1]: the arena's image format."""
        return self.images[index].float().div_(255.0)


def load_tensors(source: str, split: str, classes: int | None = None, limit: int | None = None) -> TensorSplit:
    """The split of a data source ("demo" or a tiny-imagenet-200 folder); `limit` keeps the first n."""
    data = load_split(source, split, num_classes=classes)
    images, labels = data.images, data.labels
    if limit is not None:
        if limit > len(labels):
            raise ValueError(f"asked for {limit} {split} images but {source} has {len(labels)}")
        images, labels = images[:limit], labels[:limit]
    chw = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return TensorSplit(chw, torch.from_numpy(labels.astype(np.int64)), data.class_names)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Logits of model (in its current mode) for float images, batch by batch, on the model's device."""
    device = model_device(model)
    out = [model(images[i : i + batch_size].to(device)).float() for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def accuracy(model: nn.Module, data: TensorSplit, batch_size: int = 500) -> float:
    """Clean accuracy of model in eval mode on a TensorSplit (the mode is restored)."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    correct = 0
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            x = data.floats(slice(i, i + batch_size)).to(device)
            correct += int((model(x).argmax(1) == data.labels[i : i + batch_size].to(device)).sum())
    model.train(was_training)
    return correct / max(len(data), 1)
