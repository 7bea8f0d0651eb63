"""White-box surrogate models that guide the decision-based attacks (torch, imported lazily).

A `Surrogates` holds one or more torch models (checkpoints from `arena train`, or modules that
map float32 [N,3,64,64] in [0, 1] to logits) and answers the two questions the attacks ask:
- `gradient(x, labels)`: the direction in which the surrogates' margin (best other logit minus
  the true one) grows fastest at x: the mean of each model's unit gradient, normalised. At a
  boundary point of the target it is a prior for the target's boundary normal;
- `minimal_adversarials(x0, labels)`: per model, the minimal-l2 adversarial that DDN
  (`defenses.whitebox`) finds on it, as directions from the clean image.
Everything is batched and deterministic on a given machine and thread count (resuming a remote
run replays the attack's requests, so the attack must make the same ones again).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


class SurrogateError(ValueError):
    """The surrogate cannot serve this oracle (unreadable, other input size or class count)."""


class Surrogates:
    """One or more white-box surrogate models (see the module docstring)."""

    def __init__(self, models: Any | Sequence[Any], batch_size: int = 128) -> None:
        items = list(models) if isinstance(models, (list, tuple)) else [models]
        if not items:
            raise ValueError("at least one surrogate is needed")
        self.sources: list[Any] = []
        for item in items:
            if isinstance(item, (str, os.PathLike)):
                if not Path(item).exists():
                    raise ValueError(f"surrogate checkpoint {item} does not exist")
                self.sources.append(str(item))
            elif callable(item):
                self.sources.append(item)
            else:
                raise ValueError(f"a surrogate must be a checkpoint path or a torch module, got {type(item).__name__}")
        self.batch_size = batch_size
        self._models: list[Any] | None = None

    def __repr__(self) -> str:
        return f"Surrogates({self.describe()!r})"

    def describe(self) -> list[str]:
        return [s if isinstance(s, str) else type(s).__name__ for s in self.sources]

    def models(self) -> list[Any]:
        """The surrogates as torch modules in eval mode (loaded once)."""
        if self._models is None:
            loaded = []
            for source in self.sources:
                if isinstance(source, str):
                    from defenses.checkpoint import load_checkpoint

                    try:
                        model = load_checkpoint(source).model
                    except Exception as error:  # unreadable, not ours, or another architecture's weights
                        text = str(error).strip()
                        first = text.splitlines()[0] if text else type(error).__name__
                        raise SurrogateError(f"cannot load the surrogate {source}: {first}") from None
                else:
                    model = source
                model.eval()
                loaded.append(model)
            self._models = loaded
        return self._models

    def check(self, num_classes: int, image_shape: tuple[int, ...]) -> None:
        """Raises SurrogateError unless every surrogate takes images of image_shape and has
        num_classes logits (call it before a run starts, so a wrong one wastes nothing)."""
        import torch

        for source, model in zip(self.describe(), self.models()):
            try:
                with torch.no_grad():
                    out = model(torch.zeros((2, *image_shape), dtype=torch.float32))
            except Exception as error:  # any shape error of any layer
                raise SurrogateError(f"the surrogate {source} does not take images of shape {list(image_shape)}: {error}") from None
            if tuple(out.shape) != (2, num_classes):
                got = out.shape[-1] if out.ndim == 2 else list(out.shape[1:])
                raise SurrogateError(f"the surrogate {source} has {got} classes but the target has {num_classes}")

    def __getstate__(self):  # loaded modules are a cache, not configuration
        state = dict(self.__dict__)
        state["_models"] = None
        return state

    # ------------------------------------------------------------------ gradients
    def gradient(self, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """float32 [k, prod(shape)]: the unit direction of steepest ascent of the surrogates'
        margin max_{j != y} z_j - z_y at the images x [k, ...] (the mean of each model's unit
        gradient; a zero gradient contributes nothing)."""
        import torch

        k = x.shape[0]
        total = np.zeros((k, int(np.prod(x.shape[1:]))), dtype=np.float32)
        y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        for model in self.models():
            for start in range(0, k, self.batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(x[start:start + self.batch_size])).requires_grad_(True)
                logits = model(xb)
                yb = y[start:start + self.batch_size]
                true = logits.gather(1, yb[:, None])[:, 0]
                others = logits.scatter(1, yb[:, None], -float("inf"))
                margin = others.max(dim=1).values - true
                grad, = torch.autograd.grad(margin.sum(), xb)
                g = grad.flatten(1).numpy()
                total[start:start + g.shape[0]] += g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        return total / np.maximum(np.linalg.norm(total, axis=1, keepdims=True), 1e-12)

    def class_gradients(self, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """float32 [k, m * (C - 1), prod(shape)]: for each surrogate and each class j other than
        the true one, the unit gradient of z_j - z_y at x (the directions in which each
        surrogate's boundaries with the other classes lie)."""
        import torch

        k = x.shape[0]
        y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        out = []
        for model in self.models():
            xb = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_(True)
            logits = model(xb)
            true = logits.gather(1, y[:, None])[:, 0]
            grads = []
            for j in range(logits.shape[1]):
                g, = torch.autograd.grad((logits[:, j] - true).sum(), xb, retain_graph=True)
                grads.append(g.flatten(1).numpy())
            g = np.stack(grads, axis=1)                                   # [k, C, D]
            keep = np.ones(g.shape[:2], dtype=bool)
            keep[np.arange(k), np.asarray(labels)] = False
            out.append(g[keep].reshape(k, g.shape[1] - 1, -1))
        g = np.concatenate(out, axis=1)
        return (g / np.maximum(np.linalg.norm(g, axis=2, keepdims=True), 1e-12)).astype(np.float32)

    def targeted_adversarials(self, model, x0: np.ndarray, targets: np.ndarray, steps: int,
                              gamma: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
        """DDN (Rony et al. 2019) toward `targets` on `model`: (the smallest adversarial found
        per row float32 [k, ...], found bool [k]), adversarial meaning classified as the target."""
        import math

        import torch

        x = torch.from_numpy(np.ascontiguousarray(x0))
        t = torch.from_numpy(np.asarray(targets, dtype=np.int64))
        k = x.shape[0]
        delta = torch.zeros_like(x)
        norm = torch.ones(k)
        best_l2 = torch.full((k,), math.inf)
        best = x.clone()
        for i in range(steps + 1):
            alpha = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * i / steps))
            delta.requires_grad_(True)
            logits = model(x + delta)
            loss = torch.nn.functional.cross_entropy(logits, t, reduction="sum")
            grad, = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                l2 = delta.flatten(1).norm(dim=1)
                hit = logits.argmax(1) == t
                better = hit & (l2 < best_l2)
                best_l2 = torch.where(better, l2, best_l2)
                best[better] = (x + delta)[better]
                if i == steps:
                    break
                g = -grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]
                delta = delta + alpha * g
                norm = torch.where(hit, norm * (1 - gamma), norm * (1 + gamma))
                delta = delta * (norm / delta.flatten(1).norm(dim=1).clamp_min(1e-12))[:, None, None, None]
                delta = (x + delta).clamp(0, 1) - x
        return best.numpy().astype(np.float32), torch.isfinite(best_l2).numpy()

    def ensemble(self):
        """The surrogates as one torch module: the mean of their log-softmax outputs
        (adversarials of an ensemble transfer better than a single model's, Liu et al. 2017)."""
        import torch

        models = self.models()

        class Ensemble(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.members = torch.nn.ModuleList(models)

            def forward(self, x):
                return torch.stack([m(x).log_softmax(dim=1) for m in self.members]).mean(dim=0)

        return Ensemble().eval()

    def minimal_adversarials(self, x0: np.ndarray, labels: np.ndarray, steps: int,
                             ensemble: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per surrogate (first the ensemble of all, with `ensemble` and several surrogates):
        (adversarials float32 [k, ...], found bool [k]) of DDN with `steps` iterations and a
        bisection, on that model (not found: the clean image)."""
        from defenses.whitebox import minimal_l2_adversarials

        out = []
        for model in ([self.ensemble()] if ensemble and len(self.sources) > 1 else []) + self.models():
            d, adv = minimal_l2_adversarials(model, x0, labels, steps=steps, batch_size=self.batch_size)
            out.append((adv.astype(np.float32), np.isfinite(d) & (d > 0)))
        return out
