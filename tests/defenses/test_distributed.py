"""Multi-process training through torchrun: 2 gloo processes on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from defenses import checkpoint


def test_two_process_gloo_run_through_torchrun(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "arena", "train", "--method", "trades", "--steps", "2", "--epochs", "2", "--train-size", "256",
        "--batch-size", "64", "--device", "cpu", "--no-progress", "--out", str(out),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = checkpoint.read(out)
    assert state["world_size"] == 2 and state["epoch"] == 2
    # Each process drew its own noise and augmentations, and both states were saved for --resume.
    first, second = state["rng"]
    assert not torch.equal(first["torch"], second["torch"])
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
