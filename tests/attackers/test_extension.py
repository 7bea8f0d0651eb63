"""Bringing your own attack: the example package outside the repository's packages, found by
class path and by entry point, run with `arena attack` locally and against a live arena; the
base class owns the seed; a run records the attack's configuration digest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from arena.top.cli import main
from attackers import Attack, LocalOracle, attack_class, make_attack

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "arena-attack-example"


@pytest.fixture
def example(monkeypatch):
    """The example package importable as if installed from its folder (no pip needed)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import arena_example_attack

    return arena_example_attack


@pytest.fixture
def installed(example, tmp_path, monkeypatch):
    """The example's entry point as `pip install` would register it (a dist-info on sys.path)."""
    info = tmp_path / "arena_example_attack-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: arena-example-attack\nVersion: 0.1.0\n")
    entry = next(line for line in (EXAMPLE / "pyproject.toml").read_text().splitlines() if line.startswith("blended-noise"))
    entry = entry.replace('"', "")  # TOML quotes the value; entry_points.txt does not
    (info / "entry_points.txt").write_text(f"[robustness_arena.attacks]\n{entry}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return example


def run_cli(args, capsys):
    try:
        code = main(args)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def test_example_by_class_path_runs_locally(example, models, samples, tmp_path, capsys):
    np.savez(tmp_path / "s.npz", x=samples.x[:3], y=samples.y[:3])
    out = tmp_path / "r.json"
    code, err = run_cli(["attack", "--local", str(models.onnx_path), "--data", str(tmp_path / "s.npz"),
                         "--attack", "arena_example_attack:BlendedNoise", "--param", "draws=2", "--param", "steps=8",
                         "--budget", "60", "--out", str(out), "--no-progress"], capsys)
    assert code == 0, err
    body = json.loads(out.read_text())
    assert body["attack"] == "blended-noise"
    assert body["config_digest"] == example.BlendedNoise(draws=2, steps=8).config_digest()
    assert all(row["queries"] <= 60 for row in body["samples"])
    assert sum(row["success"] for row in body["samples"]) >= 2


def test_example_by_entry_point_runs_against_a_live_arena(installed, arena_server, tmp_path, capsys):
    from attackers import ArenaClient

    assert attack_class("blended-noise") is installed.BlendedNoise
    out = tmp_path / "r.json"
    code, err = run_cli(["attack", "--server", arena_server.address, "--token", arena_server.token, "--defense", "tiny",
                         "--attack", "blended-noise", "--param", "draws=1", "--samples", "3", "--out", str(out),
                         "--no-progress"], capsys)
    assert code == 0, err
    body = json.loads(out.read_text())
    expected = installed.BlendedNoise(draws=1).config_digest()
    assert body["config_digest"] == expected
    # the arena recorded the attack's name and configuration digest with the run
    with ArenaClient(arena_server.address, arena_server.token) as client:
        run = client.get_run(body["run_id"])
    assert run.attack == "blended-noise" and run.attack_config_digest == expected
    assert any(row["verified_distance"] is not None for row in body["samples"])


def test_an_attack_that_forgets_the_seed_is_still_deterministic(models, samples):
    class Forgetful(Attack):
        name = "forgetful"

        def search(self, tracker, positions, starts, rng):
            noise = rng.uniform(0, 1, size=(positions.size, 3, 64, 64)).astype(np.float32)
            tracker.query(positions, noise)

    x, y = samples.x[:3], samples.y[:3]
    a = Forgetful().run(LocalOracle(models.onnx_path, budget=5), x, y, 5)
    b = Forgetful().run(LocalOracle(models.onnx_path, budget=5), x, y, 5)
    np.testing.assert_array_equal(a.adversarials, b.adversarials)
    assert Forgetful().seed == 0
    other = Forgetful()
    other.seed = 1
    c = other.run(LocalOracle(models.onnx_path, budget=5), x, y, 5)
    assert not np.array_equal(a.adversarials, c.adversarials) or not a.success.any()


def test_config_digest_is_sha256_of_canonical_json():
    attack = make_attack("hsja", seed=3, init_estimates=30)
    config = attack.config()
    assert config["attack"] == "hsja" and config["params"]["init_estimates"] == 30 and config["params"]["seed"] == 3
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    assert attack.config_digest() == hashlib.sha256(text.encode()).hexdigest()
    assert make_attack("hsja", seed=3, init_estimates=30).config_digest() == attack.config_digest()
    assert make_attack("hsja", seed=3, init_estimates=31).config_digest() != attack.config_digest()
    assert make_attack("hsja", seed=4, init_estimates=30).config_digest() != attack.config_digest()


@pytest.mark.parametrize("args, message", [
    (["--attack", "carlini"], "unknown attack 'carlini'"),
    (["--attack", "no_such_module_xyz:Thing"], "cannot import 'no_such_module_xyz'"),
    (["--attack", "attackers.base:check_int"], "is not a subclass of attackers.Attack"),
    (["--attack", "attackers.base:Nope"], "has no 'Nope'"),
    (["--attack", "hsja", "--param", "oops"], "--param expects NAME=VALUE"),
    (["--attack", "hsja", "--param", "init_estimatez=3"], "has no parameter 'init_estimatez'"),
    (["--attack", "hsja", "--param", "init_estimates=0"], "init_estimates must be >= 1"),
    (["--attack", "cgba", "--surrogate", "x.pt"], "--surrogate is not used by cgba"),
    (["--attack", "livia"], "needs surrogate checkpoints"),
])
def test_bad_attack_specs_are_one_line_errors(args, message, capsys, tmp_path):
    code, err = run_cli(["attack", "--local", "m.onnx", *args], capsys)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1


def test_arena_refuses_a_malformed_config_digest(arena_server):
    from attackers import ArenaCallError, ArenaClient

    with ArenaClient(arena_server.address, arena_server.token) as client:
        with pytest.raises(ArenaCallError, match="attack_config_digest"):
            client.start_run("tiny", "mine", config_digest="not-a-digest")
        run = client.start_run("tiny", "mine")  # a client that does not say: recorded empty
        assert run.attack_config_digest == ""
