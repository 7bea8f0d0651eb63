"""Competition rules v3, what a team could still do with the data under v2 (docs/rules.md sections
3, 4 and 8), each tried through a real server:

- exploit 1: the private split was a fixed permutation of public data, so a team rebuilt it and
  submitted a lookup table of it; now it is made of images no team can have;
- exploit 5: validation ran the model on private images and published ONNX Runtime's error text,
  so a model could spell out private bytes in a rejection; now validation never sees a private
  image and a rejection names only the failed rules;
- exploit 6: GET /metrics told anyone timings and other teams' activity; now it is the organizer's;
- caps: accepted defenses per team and submissions per team per UTC day.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from arena.top.bench import toy_models
from arena.ground.client import ArenaClient
from arena.server import ServerConfig, evaluation, start_server
from arena.server.auth import create_token
from arena.server.core import ArenaConfig
from arena.server.leaderboard_wire import from_proto
from protos import arena_v1_pb2 as pb
from tests.arena.conftest import model_labels, rpc_error, synthetic_images

PUBLIC, PRIVATE = 6, 6
FAST = dict(max_batch=64, max_chunk=16, latency_ms=2000.0)


def _serve(tmp_path, **config) -> object:
    arena = ArenaConfig(**{**FAST, **config.pop("arena", {})})
    return start_server(ServerConfig(store=tmp_path / "store", host="127.0.0.1", port=0, arena=arena, **config))


def _private_images(server) -> tuple[np.ndarray, np.ndarray]:
    """What only the organizer may read before the final phase: the private split (through a run)."""
    token = create_token(server.arena.store, "organizer", "organizer")
    with ArenaClient(server.address, token, timeout=60) as organizer:
        defense = organizer.list_defenses()[0].name
        return organizer.samples(organizer.start_run(defense, "read", split="private").run_id)


# ---------------------------------------------------------------- exploit 1: secret evaluation data


def test_the_private_split_cannot_be_rebuilt_from_public_data_and_survives_a_restart(tmp_path):
    """--data demo: the public split is public data (`arena data samples`), the private one is
    generated from a secret seed: not among the public validation images, not the v2 permutation,
    different in every new store, and read back unchanged from the store after a restart."""
    from defenses.data import load_samples

    tiny = toy_models.tiny_cnn(seed=0).SerializeToString()
    with _serve(tmp_path, data="demo", public_samples=PUBLIC, private_samples=PRIVATE) as server:
        team = create_token(server.arena.store, "red")
        with ArenaClient(server.address, team) as red:
            red.submit_defense(tiny, "honest")
            competition = red.get_competition()
            public_x, _ = red.samples(red.start_run("honest", "read").run_id)
        private_x, private_y = _private_images(server)
    assert (competition.private_split_source, competition.demo) == ("secret", False)
    assert (competition.public_samples, competition.private_samples) == (PUBLIC, PRIVATE)
    # the public split is exactly what a team gets from public code
    np.testing.assert_array_equal(public_x, load_samples("demo", PUBLIC)[0])
    # everything a team can have: every public validation image and the v2 deal of the same counts
    everything, _, _ = load_samples("demo")
    v2 = evaluation.load("demo", PUBLIC, PRIVATE, private_from_public=True)
    team_has = np.concatenate([everything, v2.images]).reshape(-1, 1, 12288)
    gaps = np.abs(private_x.reshape(1, PRIVATE, 12288) - team_has).max(axis=2)
    assert gaps.min() > 0.05, "a private image is (nearly) one a team can have"
    assert set(private_y) <= set(range(10))

    with _serve(tmp_path, data="demo", public_samples=PUBLIC, private_samples=PRIVATE) as again:
        np.testing.assert_array_equal(_private_images(again)[0], private_x)   # pinned: no seed needed
    other = tmp_path / "other"
    with _serve(other, data="demo", public_samples=PUBLIC, private_samples=PRIVATE) as fresh:
        with ArenaClient(fresh.address, create_token(fresh.arena.store, "red")) as red:
            red.submit_defense(tiny, "honest")
        assert not np.array_equal(_private_images(fresh)[0], private_x)     # a new secret per store


def test_a_private_split_from_public_data_needs_a_flag_and_is_a_demo(tmp_path, capsys):
    from arena.top.cli import main

    x = synthetic_images(PUBLIC + PRIVATE, seed=3)
    data = tmp_path / "public.npz"
    np.savez(data, x=x, y=np.arange(PUBLIC + PRIVATE) % 10)
    code = main(["serve", "--store", str(tmp_path / "s"), "--data", str(data), "--public-samples", str(PUBLIC),
                 "--private-samples", str(PRIVATE), "--port", "0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--private-data" in err and "--private-from-public" in err

    with _serve(tmp_path, data=str(data), public_samples=PUBLIC, private_samples=PRIVATE,
                private_from_public=True) as server:
        token = create_token(server.arena.store, "organizer", "organizer")
        with ArenaClient(server.address, token) as organizer:
            competition = organizer.get_competition()
        assert (competition.private_split_source, competition.demo) == ("public", True)
        assert main(["admin", "status", "--server", server.address, "--token", token]) == 0
        assert main(["leaderboard", "--server", server.address, "--token", token]) == 0
    out = capsys.readouterr().out
    assert out.count("DEMO, NOT A COMPETITION") == 2, out


def test_the_organizers_held_out_images_make_the_private_split(tmp_path):
    x = synthetic_images(PUBLIC + PRIVATE, seed=4)
    y = np.arange(PUBLIC + PRIVATE) % 10
    np.savez(tmp_path / "public.npz", x=x[:PUBLIC], y=y[:PUBLIC], class_names=[str(i) for i in range(10)])
    np.savez(tmp_path / "held-out.npz", x=x[PUBLIC:], y=y[PUBLIC:], class_names=[str(i) for i in range(10)])
    source = evaluation.Source(str(tmp_path / "public.npz"), PUBLIC, PRIVATE, str(tmp_path / "held-out.npz"))
    data = evaluation.load(source)
    assert data.private_source == "held-out" and not data.demo
    np.testing.assert_array_equal(data.images, x)
    np.savez(tmp_path / "other-classes.npz", x=x[PUBLIC:], y=y[PUBLIC:], class_names=[f"c{i}" for i in range(10)])
    with pytest.raises(ValueError, match="other classes"):
        evaluation.load(evaluation.Source(str(tmp_path / "public.npz"), PUBLIC, PRIVATE,
                                          str(tmp_path / "other-classes.npz")))


def test_a_lookup_table_of_everything_a_team_can_have_gains_nothing_on_the_private_board(tmp_path):
    """The issue's exploit 1 on --data demo: the team builds a lookup table (toy_models.lookup_table)
    of every public validation image, including the v2 deal of the competition's counts, and is
    accepted. On the private (official) board it scores exactly as the honest model behind it.
    (The honest model is one that knows the private images, so that the boards compare
    something: built by the test, which reads the store as the organizer may.)"""
    from attackers import HopSkipJump
    from attackers.remote import RemoteOracle, RequestIds
    from defenses.data import load_samples

    tiny = toy_models.tiny_cnn(seed=0)
    with _serve(tmp_path, data="demo", public_samples=PUBLIC, private_samples=PRIVATE,
                arena=dict(budget=60)) as server:
        store = server.arena.store
        organizer_token = create_token(store, "organizer", "organizer")
        with ArenaClient(server.address, organizer_token, timeout=60) as organizer:
            organizer.submit_defense(tiny.SerializeToString(), "reader")
        px, py = _private_images(server)
        honest = toy_models.lookup_table(tiny, px, py, 1.0, num_classes=10)     # right on the private images
        with ArenaClient(server.address, create_token(store, "blue"), timeout=60) as blue:
            blue.submit_defense(honest.SerializeToString(), "honest")
        everything, labels, _ = load_samples("demo")                              # `arena data samples`
        v2 = evaluation.load("demo", PUBLIC, PRIVATE, private_from_public=True)  # + the counts of GetCompetition
        table_x, table_y = np.concatenate([everything, v2.images]), np.concatenate([labels, v2.labels])
        lookup = toy_models.lookup_table(honest, table_x, table_y, 3.0, num_classes=10, prefix="team")
        with ArenaClient(server.address, create_token(store, "red"), timeout=60) as red:
            assert red.submit_defense(lookup.SerializeToString(), "lookup").status == pb.DEFENSE_STATUS_ACCEPTED
        server.call(server.arena.private.measured())

        def evaluate(client, defense: str) -> np.ndarray:
            run = client.start_run(defense, "hsja", split="private")
            xs, ys = client.samples(run.run_id)
            result = HopSkipJump(seed=0).run(RemoteOracle(client, run, RequestIds(defense)), xs, ys, 50)
            client.submit_adversarials(run.run_id, result.adversarials[result.success], np.flatnonzero(result.success))
            client.finish_run(run.run_id)
            return result.distances

        with ArenaClient(server.address, organizer_token, timeout=60) as organizer:
            private = {d: evaluate(organizer, d) for d in ("honest", "lookup")}
            board = {d.name: d.mean_l2 for d in from_proto(organizer.get_leaderboard("private")).defenses}
    assert np.isfinite(private["honest"]).any()          # the honest model is attackable
    np.testing.assert_array_equal(private["lookup"], private["honest"])
    assert board["lookup"] == pytest.approx(board["honest"], abs=1e-12)


def test_the_referee_seed_is_secret_unless_given(tmp_path):
    from arena.top.referee import Referee, secret_seed

    first = secret_seed(tmp_path / "state")
    assert first == secret_seed(tmp_path / "state")                  # kept: a resumed referee replays
    assert first != secret_seed(tmp_path / "another")                # drawn, not 0
    assert (tmp_path / "state" / "seed").stat().st_mode & 0o077 == 0  # the organizer's only
    assert Referee(attacks=("hsja",), state_dir=tmp_path / "r", log=lambda m: None).seed is None


# ---------------------------------------------------------------- exploit 5: verdicts leak private images


def _trigger(honest: onnx.ModelProto, target: np.ndarray) -> onnx.ModelProto:
    """The issue's exploit 5: the honest model, except that on an image within 1e-3 of `target` it
    indexes a Gather with six of that image's bytes (out of bounds: ONNX Runtime's error names the
    index). Elsewhere it is the honest model."""
    model = onnx.ModelProto()
    model.CopyFrom(honest)
    graph = model.graph
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == toy_models.OUTPUT:
                node.output[i] = "honest_logits"
    consts = {
        "t_target": target.reshape(1, -1).astype(np.float32), "t_shape": np.array([-1, 12288], np.int64),
        "t_r2": np.array(1e-6, np.float32), "t_bytes": (255.0 * 256.0 ** np.arange(6))[None].astype(np.float32),
        "t_start": np.array([0], np.int64), "t_end": np.array([6], np.int64), "t_axis": np.array([1], np.int64),
        "t_zero": np.array([[0]], np.int64), "t_table": np.zeros(1, np.float32), "t_nothing": np.array(0.0, np.float32),
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    make = helper.make_node
    graph.node.extend([
        make("Reshape", [toy_models.INPUT, "t_shape"], ["t_flat"]),
        make("Sub", ["t_flat", "t_target"], ["t_diff"]),
        make("ReduceSumSquare", ["t_diff"], ["t_d2"], axes=[1], keepdims=1),
        make("Less", ["t_d2", "t_r2"], ["t_fire"]),                                     # [N,1]
        make("Slice", ["t_flat", "t_start", "t_end", "t_axis"], ["t_six"]),            # six values
        make("Mul", ["t_six", "t_bytes"], ["t_weighted"]),
        make("ReduceSum", ["t_weighted", "t_axis"], ["t_sum"], keepdims=1),
        make("Cast", ["t_sum"], ["t_index"], to=onnx.TensorProto.INT64),               # the bytes as one number
        make("Where", ["t_fire", "t_index", "t_zero"], ["t_gather_at"]),
        make("Gather", ["t_table", "t_gather_at"], ["t_gathered"], axis=0),            # out of bounds if fired
        make("Mul", ["t_gathered", "t_nothing"], ["t_noop"]),
        make("Add", ["honest_logits", "t_noop"], [toy_models.OUTPUT]),
    ])
    onnx.checker.check_model(model, full_check=True)
    return model


def test_a_model_that_fires_on_a_private_image_gets_the_verdict_of_one_that_never_does(tmp_path):
    honest = toy_models.tiny_cnn(seed=0)
    images = synthetic_images(PUBLIC + PRIVATE, seed=11)
    labels = model_labels(honest.SerializeToString(), images).astype(np.int64)
    secret = PUBLIC + 2                                                   # the private sample it targets
    fires = _trigger(honest, images[secret])
    never = _trigger(honest, np.full(images[secret].shape, 2.0, np.float32))   # no valid image is that close
    index = int(np.sum(np.float32(255.0) * images[secret].reshape(-1)[:6] * 256.0 ** np.arange(6)))
    with _serve(tmp_path, evaluation=evaluation.from_arrays(images, labels, num_public=PUBLIC)) as server:
        organizer_token = create_token(server.arena.store, "organizer", "organizer")
        seen: list[str] = []
        with ArenaClient(server.address, create_token(server.arena.store, "red"), timeout=60) as red:
            verdicts = {}
            for name, model in (("fires", fires), ("never", never)):
                try:
                    verdicts[name] = red.submit_defense(model.SerializeToString(), name).status
                except Exception as error:                                # a rejection is a message too
                    verdicts[name] = error.code()
                    seen.append(error.details())
            server.call(server.arena.private.measured())
            listed = {d.name: d for d in red.list_defenses()}
            seen += [str(d) for d in listed.values()]
        with ArenaClient(server.address, organizer_token) as organizer:
            private = {d.name: d.clean_accuracy_private for d in organizer.list_defenses()}
    assert verdicts == {"fires": pb.DEFENSE_STATUS_ACCEPTED, "never": pb.DEFENSE_STATUS_ACCEPTED}
    assert listed["fires"].clean_accuracy == listed["never"].clean_accuracy == 1.0
    assert listed["fires"].clean_accuracy_private == listed["never"].clean_accuracy_private == 0.0  # open phase
    assert not any(str(index) in text or str(index)[:8] in text for text in seen)
    # measured after acceptance, served like any query: the failure is one misclassification
    assert private == {"fires": pytest.approx((PRIVATE - 1) / PRIVATE), "never": 1.0}


def test_a_rejection_names_the_rule_not_the_runtime_text(tmp_path):
    """A model that fails on every image: the team reads which rule failed, never ONNX Runtime's
    text (which would carry what the model computed)."""
    honest = toy_models.tiny_cnn(seed=0)
    images = synthetic_images(PUBLIC, seed=12)
    labels = model_labels(honest.SerializeToString(), images).astype(np.int64)
    always = _trigger(honest, images[0])
    always.graph.initializer.remove(next(t for t in always.graph.initializer if t.name == "t_r2"))
    always.graph.initializer.append(numpy_helper.from_array(np.array(1e9, np.float32), "t_r2"))   # fires on anything
    with _serve(tmp_path, evaluation=evaluation.from_arrays(images, labels)) as server:
        with ArenaClient(server.address, create_token(server.arena.store, "red")) as red:
            error = rpc_error(red.submit_defense, always.SerializeToString(), "always")
            (row,) = red.list_defenses()
    assert error.code().name == "INVALID_ARGUMENT"
    assert "runtime: the model fails on a valid image" in error.details()
    for text in (error.details(), *row.rejection_reasons):
        assert "idx" not in text and "ONNXRuntimeError" not in text and "Gather" not in text, text


# ---------------------------------------------------------------- exploit 6: the metrics are the operator's


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_metrics_tell_a_team_nothing(tmp_path):
    """The issue's exploit 6: another team's Predict showed on /metrics (+1 run, +8 images on that
    defense) and the model's run time for a team's own query. Now no token and a team token get
    nothing; the organizer's token gets the metrics."""
    honest = toy_models.tiny_cnn(seed=0)
    images = synthetic_images(PUBLIC, seed=13)
    labels = model_labels(honest.SerializeToString(), images).astype(np.int64)
    with _serve(tmp_path, evaluation=evaluation.from_arrays(images, labels), http_port=0) as server:
        store = server.arena.store
        red, blue = create_token(store, "red"), create_token(store, "blue")
        organizer = create_token(store, "organizer", "organizer")
        with ArenaClient(server.address, blue) as client:
            client.submit_defense(honest.SerializeToString(), "honest")
            run = client.start_run("honest", "probe")
            client.predict(run.run_id, images, list(range(PUBLIC)))
        url = f"http://{server.http_address}/metrics"
        answers = {who: _get(url, token) for who, token in
                   (("nobody", None), ("red", red), ("blue", blue), ("wrong", "not-a-token"),
                    ("organizer", organizer))}
        assert _get(f"http://{server.http_address}/healthz") == (200, b"ok")
    for who in ("nobody", "red", "blue", "wrong"):
        code, body = answers[who]
        assert code == (403 if who in ("red", "blue") else 401), (who, code)
        assert b"arena_" not in body and b"honest" not in body, (who, body)
    code, body = answers["organizer"]
    assert code == 200 and b'arena_inference_seconds_count{defense="honest"}' in body


# ---------------------------------------------------------------- caps (exploit 4's part)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_organizers_caps_on_defenses_and_daily_submissions(tmp_path, monkeypatch, request, backend):
    """Accepted defenses per team and submissions per team per UTC day (a rejected one counts),
    refused with RESOURCE_EXHAUSTED naming the cap; kept in the store across a restart; the
    organizer is exempt; a disqualified defense frees its place; a new UTC day a new quota."""
    from arena.server import submissions

    honest = toy_models.tiny_cnn(seed=0)
    images = synthetic_images(PUBLIC, seed=14)
    labels = model_labels(honest.SerializeToString(), images).astype(np.int64)
    good = [toy_models.tiny_cnn(seed=s).SerializeToString() for s in range(4)]
    caps = dict(max_defenses_per_team=2, max_submissions_per_day=3)
    config = dict(evaluation=evaluation.from_arrays(images, labels), arena=caps,
                  database_url=request.getfixturevalue("postgres").new_database() if backend == "postgresql" else None)
    with _serve(tmp_path, **config) as server:
        store = server.arena.store
        red, blue = create_token(store, "red"), create_token(store, "blue")
        organizer = create_token(store, "organizer", "organizer")
        with ArenaClient(server.address, red) as client:
            client.submit_defense(good[0], "red-a")
            assert rpc_error(client.submit_defense, b"not onnx", "red-bad").code().name == "INVALID_ARGUMENT"
            client.submit_defense(good[1], "red-b")                       # 3 submissions today
        with ArenaClient(server.address, blue) as client:
            client.submit_defense(good[0], "blue-a")
            client.submit_defense(good[1], "blue-b")
            over = rpc_error(client.submit_defense, good[2], "blue-c")    # a third accepted one
            assert over.code().name == "RESOURCE_EXHAUSTED" and "--max-defenses-per-team" in over.details()
        with ArenaClient(server.address, organizer) as client:            # exempt
            for i, model in enumerate(good):
                client.submit_defense(model, f"reference-{i}")
            client.disqualify("a test of the cap", defense="red-a")
    with _serve(tmp_path, **config) as server:                             # the count is in the store
        with ArenaClient(server.address, red) as client:
            daily = rpc_error(client.submit_defense, good[2], "red-c")
            assert daily.code().name == "RESOURCE_EXHAUSTED", daily
            assert "--max-submissions-per-day" in daily.details() and "3 submissions" in daily.details()
            monkeypatch.setattr(submissions, "utc_day", lambda: "2999-01-01")    # tomorrow: a new quota
            assert client.submit_defense(good[2], "red-c").status == pb.DEFENSE_STATUS_ACCEPTED  # red-a freed its place
            over = rpc_error(client.submit_defense, good[3], "red-d")
            assert over.code().name == "RESOURCE_EXHAUSTED" and "2 accepted defenses" in over.details()
        with ArenaClient(server.address, blue) as client:
            names = sorted(d.name for d in client.list_defenses())
    assert names == ["blue-a", "blue-b", "red-a", "red-b", "red-bad", "red-c",
                     "reference-0", "reference-1", "reference-2", "reference-3"]


def test_arena_serve_caps_by_default():
    from arena.top.cli import build_parser
    from arena.top.cli.serve import config_from_args

    args = build_parser().parse_args(["serve", "--store", "s"])
    assert (config_from_args(args).arena.max_defenses_per_team, config_from_args(args).arena.max_submissions_per_day) \
        == (3, 5)
    with pytest.raises(ValueError, match="--max-submissions-per-day"):
        config_from_args(build_parser().parse_args(["serve", "--store", "s", "--max-submissions-per-day", "-1"]))
