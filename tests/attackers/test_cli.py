"""`arena attack`, offline and against the in-process arena; bad input ends with a clear message."""

from __future__ import annotations

import json

import numpy as np
import pytest

from arena.top.cli import main


def write_npz(path, samples, n=3):
    np.savez(path, x=samples.x[:n], y=samples.y[:n])
    return path


def test_local_attack_writes_per_sample_results(models, samples, tmp_path, capsys):
    data = write_npz(tmp_path / "mine.npz", samples)
    out = tmp_path / "results.json"
    code = main(["attack", "--local", str(models.onnx_path), "--data", str(data), "--attack", "hsja",
                 "--budget", "60", "--out", str(out), "--no-progress"])
    assert code == 0
    body = json.loads(out.read_text())
    assert body["mode"] == "local" and body["budget"] == 60 and len(body["samples"]) == 3
    for row in body["samples"]:
        assert set(row) == {"sample", "success", "distance", "queries"}
        assert row["queries"] <= 60 and (row["distance"] is None) == (not row["success"])
    assert "mean l2" in capsys.readouterr().out


def test_local_attack_runs_the_model_as_the_arena_serves_it(models, samples, tmp_path, monkeypatch):
    """--serving-mode per_image reaches the local oracle: every model run is of one image."""
    from arena.ground import inference

    sizes = []
    logits = inference.DefenseModel.logits

    def counting(self, images, run_options=None):
        sizes.append(self.max_chunk)
        return logits(self, images, run_options)

    monkeypatch.setattr(inference.DefenseModel, "logits", counting)
    data = write_npz(tmp_path / "mine.npz", samples, n=2)
    for mode, chunk in (("per_image", {1}), ("batched", {inference.DEFAULT_MAX_CHUNK})):
        sizes.clear()
        assert main(["attack", "--local", str(models.onnx_path), "--data", str(data), "--attack", "hsja",
                     "--budget", "20", "--serving-mode", mode, "--no-progress"]) == 0
        assert set(sizes) == chunk, (mode, set(sizes))


def test_remote_attack_end_to_end(arena_server, tmp_path, capsys):
    out = tmp_path / "remote.json"
    args = ["attack", "--server", arena_server.address, "--token", arena_server.token, "--defense", "tiny",
            "--attack", "boundary", "--samples", "3", "--budget", "40", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    body = json.loads(out.read_text())
    assert body["mode"] == "remote" and body["run_id"] and body["budget"] == 40
    for row in body["samples"]:
        assert row["queries"] <= 40
        if row["success"]:  # the arena verified what the client found
            assert row["verified_distance"] == pytest.approx(row["distance"], rel=1e-9)
    assert not (tmp_path / "remote.json.state").exists()  # finished: nothing to resume
    assert "verified by the arena" in capsys.readouterr().out


def run_cli(args, capsys):
    code = main(args)
    return code, capsys.readouterr().err


def test_unknown_attack_is_refused(capsys):
    code, err = run_cli(["attack", "--local", "m.onnx", "--attack", "carlini"], capsys)
    assert code == 2 and "unknown attack 'carlini'" in err and "hsja" in err


def test_unknown_defense_names_the_known_ones(arena_server, tmp_path, capsys):
    code, err = run_cli(["attack", "--server", arena_server.address, "--token", arena_server.token,
                         "--defense", "nope", "--attack", "hsja", "--out", str(tmp_path / "r.json")], capsys)
    assert code == 2 and "unknown defense 'nope'" in err and "tiny" in err
    assert not (tmp_path / "r.json.state").exists()  # no run was started


def test_unreachable_server(tmp_path, capsys):
    code, err = run_cli(["attack", "--server", "127.0.0.1:9", "--token", "t", "--defense", "tiny",
                         "--attack", "hsja", "--connect-timeout", "0.5"], capsys)
    assert code == 2 and "cannot reach the arena at 127.0.0.1:9" in err


def test_missing_or_wrong_surrogate(models, samples, tmp_path, capsys):
    from defenses.checkpoint import save
    from defenses.config import TrainConfig
    from defenses.models import build_model

    data = str(write_npz(tmp_path / "s.npz", samples))
    code, err = run_cli(["attack", "--local", str(models.onnx_path), "--data", data, "--attack", "transfer-pgd"], capsys)
    assert code == 2 and "needs a surrogate" in err
    config = TrainConfig(classes=7, epochs=1, method="natural")
    model = build_model(config.arch, 7)
    save(tmp_path / "seven.pt", {"config": config.to_dict(), "epoch": 1, "num_classes": 7,
                                 "class_names": [str(i) for i in range(7)],
                                 "model": {k: v.detach() for k, v in model.state_dict().items()},
                                 "history": [], "rng": [], "world_size": 1})
    code, err = run_cli(["attack", "--local", str(models.onnx_path), "--data", data, "--attack", "transfer-pgd",
                         "--surrogate", str(tmp_path / "seven.pt")], capsys)
    assert code == 2 and "has 7 classes but the target has 10" in err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    code, err = run_cli(["attack", "--local", str(models.onnx_path), "--data", data, "--attack", "transfer-pgd",
                         "--surrogate", str(tmp_path / "junk.pt")], capsys)
    assert code == 2 and "cannot load the surrogate" in err


def test_exhausted_budget_is_a_clear_error(arena_server, tmp_path, capsys):
    from attackers import HopSkipJump
    from arena.ground.client import ArenaClient
    from attackers.remote import RemoteOracle, RequestIds
    from attackers.session import SessionState

    out = tmp_path / "r.json"
    args = ["attack", "--server", arena_server.address, "--token", arena_server.token, "--defense", "tiny",
            "--attack", "hsja", "--samples", "2", "--out", str(out), "--no-progress"]
    # a run the CLI's state file points at, whose budget was spent behind its back
    with ArenaClient(arena_server.address, arena_server.token) as client:
        run = client.start_run("tiny", "hsja")
        SessionState(server=arena_server.address, defense="tiny", attack=repr(HopSkipJump(seed=0)),
                     budget=-1, samples=2, run_id=run.run_id, namespace="x").save(tmp_path / "r.json.state")
        x, _ = client.samples(run.run_id, 2)
        spend = RemoteOracle(client, run, RequestIds("spend"))
        ids = np.repeat(np.arange(2), arena_server.budget)
        spend.labels(np.repeat(x, arena_server.budget, axis=0), ids)
    code, err = run_cli(args, capsys)
    assert code == 2 and "no query budget left" in err
