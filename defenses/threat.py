"""Perturbation sets and projected gradient ascent inside them: the inner maximisation of
adversarial training and the white-box PGD attack share this one loop.

Images live in [0, 1]; a threat model is an l_inf or l2 ball of radius `eps` around the clean
image, intersected with the image box.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from defenses.modes import batchnorm_mode, frozen

NORMS = ("linf", "l2")
_TINY = 1e-12


def default_eps(norm: str) -> float:
    return 8 / 255 if norm == "linf" else 0.5


def default_step_size(norm: str, eps: float, steps: int) -> float:
    """l_inf: 2/255 at the default radius (eps / 4); l2: 2.5 * eps / steps (Madry et al.)."""
    return eps / 4 if norm == "linf" else 2.5 * eps / max(steps, 1)


@dataclass(frozen=True)
class ThreatModel:
    """The inner maximisation's threat model: norm, radius, step size and steps of PGD."""

    norm: str = "linf"
    eps: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 10

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; choose one of {', '.join(NORMS)}")
        if not self.eps > 0 or not self.step_size > 0 or self.steps < 0:
            raise ValueError(f"need eps > 0, step size > 0 and steps >= 0, got {self}")

    @classmethod
    def make(cls, norm: str = "linf", eps: float | None = None, step_size: float | None = None, steps: int = 10):
        """Unset radius and step size take the norm's defaults."""
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
        eps = default_eps(norm) if eps is None else eps
        step_size = default_step_size(norm, eps, steps) if step_size is None else step_size
        return cls(norm, float(eps), float(step_size), int(steps))

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Nearest point of the ball around x, then of the image box."""
        delta = x_adv - x
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            norms = _norms(delta)
            delta = delta * (self.eps / norms.clamp_min(self.eps)).view(-1, 1, 1, 1)
        return (x + delta).clamp(0.0, 1.0)

    def ascent_direction(self, grad: torch.Tensor) -> torch.Tensor:
        """The steepest-ascent unit step for the norm: sign(g) for l_inf, g / ||g||_2 for l2."""
        if self.norm == "linf":
            return grad.sign()
        return grad / _norms(grad).clamp_min(_TINY).view(-1, 1, 1, 1)

    def random_start(self, x: torch.Tensor) -> torch.Tensor:
        """A uniform point of the ball (l_inf), or a random direction at a uniform radius (l2)."""
        if self.norm == "linf":
            delta = torch.empty_like(x).uniform_(-self.eps, self.eps)
        else:
            delta = torch.randn_like(x)
            radius = torch.rand(x.shape[0], device=x.device, dtype=x.dtype) * self.eps
            delta = delta * (radius / _norms(delta).clamp_min(_TINY)).view(-1, 1, 1, 1)
        return (x + delta).clamp(0.0, 1.0)


def _norms(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


def maximize(
    model: nn.Module,
    objective: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    start: torch.Tensor,
    threat: ThreatModel,
    bn_mode: str = "eval",
) -> torch.Tensor:
    """Projected gradient ascent of objective(model(x_adv)) over the threat model around x.

    Gradients are taken with respect to the input only, with every parameter frozen, so the
    attack leaves no trace in .grad and records no weight-gradient state. `objective` maps a
    batch of logits to a scalar to increase (a sum over the batch, so each sample's gradient
    is its own). Returns a detached batch.
    """
    x = x.detach()
    x_adv = start.detach()
    with frozen(model), batchnorm_mode(model, bn_mode), torch.enable_grad():
        for _ in range(threat.steps):
            x_adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(model(x_adv)), x_adv)
            x_adv = threat.project(x_adv.detach() + threat.step_size * threat.ascent_direction(grad), x)
    return x_adv.detach()
