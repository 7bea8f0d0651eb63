"""Data augmentation on the device, batched: random crop with zero padding and horizontal flip."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, padding: int = 4, flip: bool = True) -> torch.Tensor:
    """Each image of x [N,C,H,W] shifted by a random offset in [-padding, padding]^2 (zero fill),
    then mirrored left-right with probability 1/2. Draws from the device's default generator."""
    n, c, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        offsets = torch.randint(0, 2 * padding + 1, (2, n, 1), device=x.device)
        rows = (offsets[0] + torch.arange(h, device=x.device))[:, None, :, None]   # [N,1,H,1]
        cols = (offsets[1] + torch.arange(w, device=x.device))[:, None, None, :]   # [N,1,1,W]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        channel = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[batch, channel, rows, cols]
    if flip:
        mirrored = torch.rand(n, device=x.device) < 0.5
        x = torch.where(mirrored[:, None, None, None], x.flip(3), x)
    return x
