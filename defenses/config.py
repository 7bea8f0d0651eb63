"""The configuration of a training run: everything that determines its result.

Two runs with equal configurations (and the same number of processes) produce the same weights;
a checkpoint remembers its configuration and `--resume` refuses a different one.
Where a method's paper fixes a value, that is the default (TRADES: SGD 0.1, momentum 0.9,
weight decay 2e-4, beta 6, l_inf 8/255 with 10 steps of 2/255, BatchNorm in eval mode during
the inner maximisation, learning rate / 10 at 75% and 90% of training).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from defenses.methods import METHODS, MethodSettings
from defenses.models import ARCHS
from defenses.modes import BN_MODES
from defenses.schedule import SCHEDULES
from defenses.threat import NORMS, ThreatModel


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (data, model, method, schedule, device); saved with the
    checkpoint, so a run resumes bit-exactly."""

    data: str = "demo"                 # "demo" (the embedded dataset) or a tiny-imagenet-200 folder
    classes: int | None = None         # None: the source's default (10 embedded, 200 Tiny ImageNet)
    train_size: int | None = None      # use only the first n training images
    arch: str = "resnet-small"
    method: str = "trades"
    epochs: int = 10
    batch_size: int = 128              # global, over all processes
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    schedule: str = "piecewise"
    warmup_epochs: float = 0.0
    beta: float = 6.0
    norm: str = "linf"
    eps: float | None = None           # None: 8/255 (l_inf) or 0.5 (l2)
    step_size: float | None = None     # None: eps / 4 (l_inf) or 2.5 * eps / steps (l2)
    steps: int = 10
    bn_mode: str = "eval"
    crop_padding: int = 4
    flip: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        checks = (
            (self.arch in ARCHS, f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHS)}"),
            (self.method in METHODS, f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}"),
            (self.norm in NORMS, f"unknown norm {self.norm!r}; choose one of {', '.join(NORMS)}"),
            (self.bn_mode in BN_MODES, f"unknown BatchNorm mode {self.bn_mode!r}; choose one of {', '.join(BN_MODES)}"),
            (self.schedule in SCHEDULES, f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
            (self.steps >= 0, f"steps must be >= 0, got {self.steps}"),
            (self.eps is None or self.eps > 0, f"eps must be > 0, got {self.eps}"),
            (self.step_size is None or self.step_size > 0, f"step size must be > 0, got {self.step_size}"),
            (self.train_size is None or self.train_size >= 1, f"train size must be >= 1, got {self.train_size}"),
            (self.crop_padding >= 0, f"crop padding must be >= 0, got {self.crop_padding}"),
            (0 <= self.warmup_epochs <= self.epochs, f"warmup epochs must be in [0, epochs], got {self.warmup_epochs}"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def threat(self) -> ThreatModel:
        return ThreatModel.make(self.norm, self.eps, self.step_size, self.steps)

    @property
    def method_settings(self) -> MethodSettings:
        return MethodSettings(self.threat, self.beta, self.bn_mode)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown configuration fields: {', '.join(unknown)}")
        return cls(**values)

    def differences(self, other: TrainConfig) -> list[str]:
        """'name: mine != other' for each field that differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k}: {mine[k]!r} != {theirs[k]!r}" for k in mine if mine[k] != theirs[k]]

    def replace(self, **changes) -> TrainConfig:
        return replace(self, **changes)
