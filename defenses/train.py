"""The training loop behind `arena train`: one configuration in, a checkpoint per epoch out.

Output folder: `checkpoint.pt` (rewritten atomically after every epoch) and `metrics.jsonl`
(one JSON object per completed epoch). `resume=True` continues a run bit-exactly: weights,
optimizer, scheduler, epoch and every random generator come back from the checkpoint, and the
batch order of an epoch is a function of (seed, epoch).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

from defenses import checkpoint, distributed, rng
from defenses.atomic import atomic_write
from defenses.augment import random_crop_flip
from defenses.config import TrainConfig
from defenses.device import autocast_for, prepare_batch, prepare_model, resolve_device
from defenses.methods import StepOutput, get_method
from defenses.models import build_model
from defenses.schedule import make_scheduler
from defenses.tensors import accuracy, load_tensors

METRICS_NAME = "metrics.jsonl"


class RunExists(ValueError):
    """The output folder already holds a run and neither resume nor force was asked for."""


def train(
    config: TrainConfig,
    out: str | os.PathLike,
    *,
    device: str | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> Path:
    """Train per `config` into the folder `out`; returns the checkpoint path.

    `stop_after` ends the run after that epoch, unfinished (for time-sliced jobs; `resume`
    continues it). Under torchrun, every process calls this; rank 0 writes the files."""
    out = Path(out)
    ckpt_path = out / checkpoint.CHECKPOINT_NAME
    state = _check_output(out, ckpt_path, config, resume, force)
    if state is not None and state["epoch"] >= config.epochs:
        _log(f"{ckpt_path} is already finished ({state['epoch']}/{config.epochs} epochs); nothing to do")
        return ckpt_path

    dev = resolve_device(device, distributed.local_rank())
    ctx = distributed.start(dev)
    try:
        Trainer(config, dev, ctx, progress and ctx.is_main).run(out, state, stop_after)
    except BaseException:
        distributed.stop(ctx, synchronize=False)     # a peer may never reach a barrier now
        raise
    distributed.stop(ctx)
    return ckpt_path


def _check_output(out: Path, ckpt_path: Path, config: TrainConfig, resume: bool, force: bool) -> dict | None:
    """The checkpoint to resume from, or None to start afresh; refuses to clobber a run."""
    if out.exists() and not out.is_dir():
        raise RunExists(f"output path {out} exists and is not a folder")
    if resume:
        state = checkpoint.read(ckpt_path)
        saved = TrainConfig.from_dict(state["config"])
        if saved != config:
            diff = "; ".join(config.differences(saved))
            raise ValueError(f"cannot resume {ckpt_path}: it was trained with another configuration (asked != saved: {diff})")
        return state
    if ckpt_path.exists() and not force:
        try:
            state = checkpoint.read(ckpt_path)
            saved = TrainConfig.from_dict(state["config"])
            what = "a finished run" if state["epoch"] >= saved.epochs else f"an unfinished run ({state['epoch']}/{saved.epochs} epochs)"
        except ValueError:
            what = "a checkpoint"
        raise RunExists(f"{out} already holds {what}; pass --resume to continue it or --force to start over")
    return None


def train_step(model, optimizer, x, y, objective, settings, attack_model=None) -> StepOutput:
    """One optimisation step of a method's objective (under autocast on CUDA)."""
    with autocast_for(x.device):
        output = objective(model, x, y, settings, attack_model=attack_model)
    optimizer.zero_grad(set_to_none=True)
    output.loss.backward()
    optimizer.step()
    return output


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Trainer:
    """One training run: model, optimiser, schedule, method and data on the device; steps, evaluates
    and checkpoints."""
    def __init__(self, config: TrainConfig, device: torch.device, ctx: distributed.Context, progress: bool) -> None:
        if config.batch_size % ctx.world_size:
            raise ValueError(f"batch size {config.batch_size} is not divisible by the {ctx.world_size} processes")
        self.config, self.device, self.ctx, self.progress = config, device, ctx, progress
        self.cuda = device.type == "cuda"
        self.train_data = load_tensors(config.data, "train", config.classes, config.train_size).to(device)
        self.val_data = load_tensors(config.data, "val", config.classes).to(device)
        self.num_classes = len(self.train_data.class_names)
        self.steps_per_epoch = len(self.train_data) // config.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"{len(self.train_data)} training images do not fill one batch of {config.batch_size}")
        self.objective = get_method(config.method)
        self.settings = config.method_settings

    def _build(self) -> None:
        config = self.config
        self.model = prepare_model(build_model(config.arch, self.num_classes), self.device)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        self.scheduler = make_scheduler(
            self.optimizer,
            config.schedule,
            config.epochs * self.steps_per_epoch,
            round(config.warmup_epochs * self.steps_per_epoch),
        )

    def run(self, out: Path, state: dict | None, stop_after: int | None = None) -> None:
        rng.seed_everything(self.config.seed + self.ctx.rank)
        self._build()
        start_epoch, history = 0, []
        if state is not None:
            start_epoch, history = self._restore(state)
        wrapped: nn.Module = self.model
        if self.ctx.distributed:
            wrapped = nn.parallel.DistributedDataParallel(self.model, device_ids=[self.device.index] if self.cuda else None)
        last = self.config.epochs if stop_after is None else min(stop_after, self.config.epochs)
        from tqdm import tqdm

        # One bar over the whole training, naming the model, so its ETA is the training's, not an epoch's.
        self.bar = tqdm(total=(last - start_epoch) * self.steps_per_epoch, desc=f"training {self.label}",
                        unit="step", disable=not self.progress, dynamic_ncols=True)
        for epoch in range(start_epoch, last):
            record = self._epoch(wrapped, epoch)
            history.append(record)
            rng_states = self.ctx.all_gather(rng.capture())
            if self.ctx.is_main:
                self._save(out, epoch + 1, history, rng_states)
                shown = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k.startswith(("train", "val")))
                _log(f"{self.label}: epoch {record['epoch']}/{self.config.epochs}: {shown} ({record['seconds']:.1f}s)")
        self.bar.close()

    @property
    def label(self) -> str:
        """The model being trained, as the progress bar and the log name it."""
        c = self.config
        beta = f" beta {c.beta:g}" if c.method in ("trades", "mart") else ""
        return f"{c.method}{beta} ({c.arch}, seed {c.seed})"

    def _restore(self, state: dict) -> tuple[int, list[dict]]:
        if len(state["rng"]) != self.ctx.world_size:
            raise ValueError(
                f"the checkpoint was written by {len(state['rng'])} processes; resume it with as many, not {self.ctx.world_size}"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        rng.restore(state["rng"][self.ctx.rank])
        return state["epoch"], list(state["history"])

    def _batches(self, epoch: int):
        """This process's share of each global batch, in an order fixed by (seed, epoch)."""
        config, ctx = self.config, self.ctx
        order = torch.randperm(
            len(self.train_data), generator=torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        ).to(self.device)
        local = config.batch_size // ctx.world_size
        for step in range(self.steps_per_epoch):
            start = step * config.batch_size + ctx.rank * local
            index = order[start : start + local]
            x = random_crop_flip(self.train_data.floats(index), config.crop_padding, config.flip)
            yield prepare_batch(x), self.train_data.labels[index]

    def _epoch(self, wrapped: nn.Module, epoch: int) -> dict:
        self.model.train()
        started = time.perf_counter()
        totals = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss sum, clean hits, adv hits, seen
        bar = self.bar
        for step, (x, y) in enumerate(self._batches(epoch)):
            output = train_step(wrapped, self.optimizer, x, y, self.objective, self.settings, attack_model=self.model)
            self.scheduler.step()
            totals += _batch_totals(output, y)
            bar.update(1)
            if self.progress and (step % 10 == 0 or step == self.steps_per_epoch - 1):
                bar.set_postfix({"epoch": f"{epoch + 1}/{self.config.epochs}",
                                 **{k.removeprefix("train_"): f"{v:.3f}" for k, v in self._accuracies(totals.tolist()).items()}})
        totals = self.ctx.sum(totals.tolist())
        seconds = time.perf_counter() - started
        if not math.isfinite(totals[0]):
            raise FloatingPointError(f"the training loss diverged in epoch {epoch + 1}; lower --lr")
        return {
            "epoch": epoch + 1,
            "lr": self.optimizer.param_groups[0]["lr"],
            **self._accuracies(totals),
            "val_acc": accuracy(self.model, self.val_data),
            "seconds": seconds,
            "images_per_s": totals[3] / seconds,
        }

    def _accuracies(self, totals: list[float]) -> dict:
        """train_loss, and train_acc (clean) and/or train_adv_acc, as the method has them."""
        loss_sum, hits, adv_hits, seen = totals
        values = {"train_loss": loss_sum / seen}
        if self.config.method != "pgd-at":
            values["train_acc"] = hits / seen
        if self.config.method != "natural":
            values["train_adv_acc"] = adv_hits / seen
        return values

    def _save(self, out: Path, epoch: int, history: list[dict], rng_states: list[dict]) -> None:
        checkpoint.save(
            out / checkpoint.CHECKPOINT_NAME,
            {
                "config": self.config.to_dict(),
                "epoch": epoch,
                "num_classes": self.num_classes,
                "class_names": list(self.train_data.class_names),
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng_states,
                "history": history,
                "world_size": self.ctx.world_size,
            },
        )
        with atomic_write(out / METRICS_NAME, "w") as handle:
            handle.writelines(json.dumps(r, sort_keys=True) + "\n" for r in history)


@torch.no_grad()
def _batch_totals(output: StepOutput, y: torch.Tensor) -> torch.Tensor:
    """[loss sum, clean hits, adversarial hits, count] of one batch (hits 0 where a method has no
    such logits: natural has no adversarial ones, PGD-AT no clean ones)."""

    def hits(logits):
        return (logits.argmax(1) == y).sum().double() if logits is not None else y.new_zeros((), dtype=torch.float64)

    count = torch.tensor(float(len(y)), dtype=torch.float64, device=y.device)
    return torch.stack([output.loss.detach().double() * len(y), hits(output.logits), hits(output.adv_logits), count])
