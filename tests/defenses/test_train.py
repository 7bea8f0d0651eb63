"""Training runs: accuracy rises, resume is bit-exact, bad input is refused without damage."""

from __future__ import annotations

import json

import pytest
import torch

from arena.top.cli import main
from defenses import checkpoint
from defenses.config import TrainConfig
from defenses.data import DataError
from defenses.models import build_model
from defenses.tensors import accuracy, load_tensors
from defenses.train import RunExists, train

# A TRADES run small enough for a test: every random source (noise start, crops, flips, order) is used.
SMALL = TrainConfig(method="trades", epochs=2, train_size=256, batch_size=64, steps=2, schedule="cosine")


def test_short_training_raises_accuracy(trained):
    torch.manual_seed(0)
    untrained = accuracy(build_model("resnet-small", 10), load_tensors("demo", "val"))
    meta = trained.meta
    assert meta.finished and meta.epoch == 3
    assert meta.clean_accuracy >= 0.3
    assert meta.clean_accuracy >= untrained + 0.15
    losses = [record["train_loss"] for record in meta.history]
    assert losses[-1] < losses[0]


def test_run_folder_holds_checkpoint_and_metrics(trained_run, trained):
    lines = (trained_run.parent / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert {"train_loss", "train_acc", "val_acc", "lr", "seconds", "images_per_s"} <= set(records[0])
    assert records == trained.meta.history
    assert not list(trained_run.parent.glob("*.tmp"))


def _weights(path):
    return checkpoint.read(path)["model"]


def test_resume_continues_bit_exactly(tmp_path):
    straight = train(SMALL, tmp_path / "straight", device="cpu", progress=False)
    halves = tmp_path / "halves"
    first = train(SMALL, halves, device="cpu", progress=False, stop_after=1)
    assert checkpoint.read(first)["epoch"] == 1 and not checkpoint.load_checkpoint(first).meta.finished
    resumed = train(SMALL, halves, device="cpu", progress=False, resume=True)

    a, b = checkpoint.read(straight), checkpoint.read(resumed)
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    for x, y in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(x["momentum_buffer"], y["momentum_buffer"])
    timing = {"seconds", "images_per_s"}
    strip = lambda h: [{k: v for k, v in r.items() if k not in timing} for r in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    assert "train_adv_acc" in a["history"][0]


def test_an_existing_run_is_not_overwritten(trained_run):
    before = trained_run.read_bytes()
    config = checkpoint.load_checkpoint(trained_run).meta.config
    with pytest.raises(RunExists, match="already holds a finished run.*--resume.*--force"):
        train(config, trained_run.parent, device="cpu", progress=False)
    assert trained_run.read_bytes() == before


def test_resume_refuses_another_configuration(trained_run):
    before = trained_run.read_bytes()
    config = checkpoint.load_checkpoint(trained_run).meta.config.replace(method="trades", lr=0.05)
    with pytest.raises(ValueError, match=r"another configuration \(asked != saved: method: 'trades' != 'natural'; lr: 0.05 != 0.1"):
        train(config, trained_run.parent, device="cpu", progress=False, resume=True)
    assert trained_run.read_bytes() == before


def test_resume_of_a_finished_run_does_nothing(trained_run):
    before = trained_run.read_bytes()
    config = checkpoint.load_checkpoint(trained_run).meta.config
    assert train(config, trained_run.parent, device="cpu", progress=False, resume=True) == trained_run
    assert trained_run.read_bytes() == before


def test_resume_without_a_checkpoint_fails(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint"):
        train(SMALL, tmp_path, device="cpu", progress=False, resume=True)


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(method="fgsm"), "unknown method 'fgsm'; choose one of natural, pgd-at, trades, mart"),
        (dict(arch="vgg"), "unknown architecture 'vgg'"),
        (dict(norm="l1"), "unknown norm 'l1'"),
        (dict(bn_mode="frozen"), "unknown BatchNorm mode"),
        (dict(epochs=0), "epochs must be >= 1"),
    ],
)
def test_bad_configuration_is_refused(change, message):
    with pytest.raises(ValueError, match=message):
        SMALL.replace(**change)


def test_a_wrong_data_path_fails_before_writing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(DataError, match="neither 'demo' nor an existing tiny-imagenet-200 folder"):
        train(SMALL.replace(data=str(tmp_path / "missing")), out, device="cpu", progress=False)
    assert not out.exists()


def test_cli_reports_bad_input_with_exit_code_2(tmp_path, trained_run, capsys):
    assert main(["train", "--method", "fgsm", "--out", str(tmp_path / "a")]) == 2
    assert "arena train: error: unknown method 'fgsm'" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")]) == 2
    assert "neither 'demo' nor an existing tiny-imagenet-200 folder" in capsys.readouterr().err
    assert main(["train", "--method", "natural", "--out", str(trained_run.parent)]) == 2
    assert "already holds" in capsys.readouterr().err
    assert main(["train", "--resume", "--lr", "0.3", "--out", str(trained_run.parent)]) == 2
    assert "lr: 0.3 != 0.1" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_trains_with_a_preset_and_resumes_from_the_checkpoint_config(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--preset", "demo", "--method", "natural", "--epochs", "2", "--train-size", "256",
            "--out", str(out), "--no-progress", "--device", "cpu"]
    assert main(args + ["--stop-after", "1"]) == 0
    assert checkpoint.read(out)["epoch"] == 1
    assert main(["train", "--resume", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    _, saved = checkpoint.load_checkpoint(out)
    assert saved.epoch == 2 and saved.config.train_size == 256


def test_progress_names_the_model_and_gives_the_trainings_eta(tmp_path, capsys):
    """One bar over the whole training (issue 19 item 8): it names the model and its ETA is the
    training's ("elapsed<remaining" over all epochs' steps)."""
    from dataclasses import replace

    train(replace(SMALL, epochs=1, train_size=128), tmp_path / "run", device="cpu", progress=True)
    err = capsys.readouterr().err
    assert "training trades beta 6 (" in err and "seed 0)" in err
    assert "2/2" in err and "<" in err                     # all steps of the training, with the time left
    assert "trades beta 6 (" in err.split("epoch 1/1:")[0].splitlines()[-1]   # the epoch log names it too
