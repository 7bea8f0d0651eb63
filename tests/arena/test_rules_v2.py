"""Competition rules v2 (docs/rules.md sections 4, 6 and 8): the holes a team could win through
without being robust or strong stay closed.

- budget multiplication: more runs never mean more queries;
- lookup-table defenses built from exposed images gain nothing on the official (private) board;
- attack identity: two teams' attacks that share a name are two entries;
- roles: organizer-only calls refuse team tokens; the private split is never sent to a team
  before the final phase; submissions close atomically with the switch to the final phase.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np
import pytest
from grpc import StatusCode

from arena.top.bench import toy_models
from arena.ground.client import ArenaClient
from arena.server import ServerConfig, evaluation, sandbox, start_server
from arena.server.auth import create_token
from arena.server.core import ArenaConfig
from arena.server.leaderboard_wire import from_proto
from arena.server.store import PhaseClosed, StoreError, open_store
from protos import arena_v1_pb2 as pb
from tests.arena.conftest import model_labels, rpc_error, synthetic_images

PUBLIC, PRIVATE, BUDGET = 6, 6, 60


class Competition:
    """A real server: an organizer, teams red and blue, blue's honest defense accepted (its private
    accuracy measured). Other test files size it for themselves."""

    def __init__(self, tmp_path, public: int = PUBLIC, private: int = PRIVATE, budget: int = BUDGET,
                 seed: int = 7) -> None:
        self.honest = toy_models.tiny_cnn(seed=0)
        images = synthetic_images(public + private, seed=seed)
        labels = model_labels(self.honest.SerializeToString(), images).astype(np.int64)
        self.images, self.labels = images, labels
        self.server = start_server(ServerConfig(
            store=tmp_path / "store", evaluation=evaluation.from_arrays(images, labels, num_public=public),
            host="127.0.0.1", port=0,
            arena=ArenaConfig(budget=budget, max_batch=64, max_chunk=16, latency_ms=2000.0)))
        store = self.server.arena.store
        self.tokens = {"organizer": create_token(store, "organizer", "organizer"),
                       "red": create_token(store, "red"), "blue": create_token(store, "blue")}
        with self.client("blue") as blue:
            blue.submit_defense(self.honest.SerializeToString(), "honest")
        self.server.call(self.server.arena.private.measured())   # rules v3: measured after acceptance

    def client(self, who: str) -> ArenaClient:
        return ArenaClient(self.server.address, self.tokens[who], timeout=60)

    def close(self) -> None:
        self.server.stop()


@pytest.fixture
def competition(tmp_path):
    c = Competition(tmp_path)
    yield c
    c.close()


def _spend(client, run_id: str, image: np.ndarray, sample: int, count: int) -> int:
    """Asks for `count` labels of sample `sample`, one at a time; returns how many were answered."""
    answered = 0
    for _ in range(count):
        try:
            client.predict(run_id, image[None], [sample])
            answered += 1
        except Exception as error:
            assert error.code() == StatusCode.RESOURCE_EXHAUSTED, error
    return answered


def test_more_runs_never_mean_more_queries(competition):
    """Several runs of one team on one defense (the same attack name, then other names) share
    one budget per sample; the board counts exactly what each entry spent."""
    with competition.client("red") as red:
        image = red.samples(red.start_run("honest", "probe").run_id, 1)[0][0]
        answered, runs = 0, []
        for name in ("hsja", "hsja", "hsja", "boundary", "mine"):
            run = red.start_run("honest", name)
            assert run.remaining[0] == BUDGET - answered          # a new run does not refill it
            answered += _spend(red, run.run_id, image, 0, 25)
            runs.append(run.run_id)
        assert answered == BUDGET                                 # 5 runs x 25 asked, 60 answered
        infos = [red.get_run(r) for r in runs]
        assert all(i.queries_used[0] == BUDGET and i.remaining[0] == 0 for i in infos)
        assert sum(i.run_queries[0] for i in infos) == BUDGET
        for r in runs:
            red.finish_run(r)
        board = from_proto(red.get_leaderboard())
    spent = {a.attack: a.queries for a in board.attacks if a.team == "red"}
    assert spent == {"hsja": 60 - infos[3].run_queries[0] - infos[4].run_queries[0],
                     "boundary": infos[3].run_queries[0], "mine": infos[4].run_queries[0]}
    assert sum(spent.values()) == BUDGET
    # another team's budget on the same defense is its own
    with competition.client("blue") as blue:
        assert blue.start_run("honest", "hsja").remaining[0] == BUDGET


def test_two_teams_attacks_with_one_name_are_two_entries(competition):
    entries = {}
    for team, budget in (("red", 40), ("blue", 5)):
        with competition.client(team) as client:
            run = client.start_run("honest", "hsja")
            x, y = client.samples(run.run_id)
            client.predict(run.run_id, np.repeat(x[:1], budget, axis=0), [0] * budget)
            client.finish_run(run.run_id)
            entries[team] = run.run_id
    with competition.client("red") as client:
        board = from_proto(client.get_leaderboard())
    rows = sorted((a.team, a.attack, a.queries) for a in board.attacks)
    assert rows == [("blue", "hsja", 5), ("red", "hsja", 40)]
    (honest,) = board.defenses
    assert honest.attacks_faced == ("blue/hsja", "red/hsja")


def test_organizer_only_calls_refuse_team_tokens(competition):
    calls = [lambda c: c.set_phase("final", "x"), lambda c: c.set_budget(10, "x"),
             lambda c: c.create_token("mallory", "x"), lambda c: c.create_token("mallory", "x", organizer=True),
             lambda c: c.revoke_tokens("blue", "x"), lambda c: c.disqualify("x", defense="honest"),
             lambda c: c.disqualify("x", run_id="r"), lambda c: c.list_actions()]
    with competition.client("red") as red:
        for call in calls:
            assert rpc_error(call, red).code() == StatusCode.PERMISSION_DENIED
        assert red.get_competition().phase == pb.PHASE_OPEN
    assert competition.server.arena.store.actions() == []           # nothing happened
    with competition.client("organizer") as organizer:
        assert rpc_error(organizer.set_budget, 10, "  ").code() == StatusCode.INVALID_ARGUMENT  # a reason is required
        organizer.set_budget(50, "a smaller budget for the test")
        token = organizer.create_token("green", "new team")
        assert organizer.revoke_tokens("green", "left the competition") == 1
        organizer.disqualify("copied another team's model", defense="honest")
        actions = [(a.organizer, a.action, a.target, a.reason) for a in organizer.list_actions()]
    assert actions == [("organizer", "set_budget", "50", "a smaller budget for the test"),
                       ("organizer", "create_token", "green (team)", "new team"),
                       ("organizer", "revoke_tokens", "green", "left the competition"),
                       ("organizer", "disqualify_defense", "honest", "copied another team's model")]
    with ArenaClient(competition.server.address, token) as revoked:
        assert rpc_error(revoked.list_defenses).code() == StatusCode.UNAUTHENTICATED
    with competition.client("red") as red:
        board = red.get_leaderboard()
        assert [d.name for d in board.defenses] == []                # hidden from the board ...
        assert [(d.kind, d.name, d.reason) for d in board.disqualified] == [
            ("defense", "honest", "copied another team's model")]   # ... with its reason kept
        assert rpc_error(red.start_run, "honest", "a").code() == StatusCode.FAILED_PRECONDITION


def test_a_team_never_reads_the_private_split_before_the_final_phase(competition):
    private_images = competition.images[PUBLIC:]
    with competition.client("red") as red:
        assert rpc_error(red.start_run, "honest", "a", split="private").code() == StatusCode.PERMISSION_DENIED
        run = red.start_run("honest", "a")
        assert run.split == pb.SPLIT_PUBLIC and run.num_samples == PUBLIC
        x, _ = red.samples(run.run_id)
        assert not any((x[i] == p).all() for i in range(len(x)) for p in private_images)
        assert rpc_error(red.get_leaderboard, "private").code() == StatusCode.PERMISSION_DENIED
        assert rpc_error(red.get_report, "private").code() == StatusCode.PERMISSION_DENIED
        assert red.get_defense("honest").clean_accuracy_private == 0.0
        with competition.client("organizer") as organizer:
            secret = organizer.start_run("honest", "reference", split="private")   # the organizer may
            assert secret.split == pb.SPLIT_PRIVATE and organizer.get_defense("honest").clean_accuracy_private == 1.0
            assert organizer.get_leaderboard("private").split == pb.SPLIT_PRIVATE
        # another team's (the organizer's) private run reads as unknown
        assert rpc_error(red.get_run, secret.run_id).code() == StatusCode.NOT_FOUND
        assert rpc_error(red.samples, secret.run_id).code() == StatusCode.NOT_FOUND
        assert [r.run_id for r in red.list_runs()] == [run.run_id]


def test_final_phase_closes_submissions_and_opens_the_private_split(competition):
    with competition.client("organizer") as organizer:
        organizer.set_phase("final", "the open phase ended")
    with competition.client("red") as red:
        error = rpc_error(red.submit_defense, competition.honest.SerializeToString(), "late")
        assert error.code() == StatusCode.FAILED_PRECONDITION and "final phase" in error.details()
        run = red.start_run("honest", "a")
        assert run.split == pb.SPLIT_PRIVATE and run.num_samples == PRIVATE
        x, y = red.samples(run.run_id)
        np.testing.assert_array_equal(x, competition.images[PUBLIC:])
        assert red.get_leaderboard().split == pb.SPLIT_PRIVATE          # the official board
        assert rpc_error(red.start_run, "honest", "b", split="public").code() == StatusCode.PERMISSION_DENIED


def test_a_submission_racing_the_final_phase_is_refused_after_it(competition, monkeypatch):
    """Validation takes time; the phase changes meanwhile: the defense is refused, not served."""
    started = threading.Event()
    real = sandbox.validate_in_child       # the server's side of a validation (the child runs apart)

    def slow(*args, **kwargs):
        started.set()
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(sandbox, "validate_in_child", slow)
    outcome = {}

    def submit():
        with competition.client("red") as red:
            try:
                outcome["defense"] = red.submit_defense(toy_models.tiny_cnn(seed=3).SerializeToString(), "racer")
            except Exception as error:
                outcome["error"] = error

    thread = threading.Thread(target=submit)
    thread.start()
    assert started.wait(30)
    with competition.client("organizer") as organizer:
        organizer.set_phase("final", "deadline")
    thread.join(60)
    assert outcome["error"].code() == StatusCode.FAILED_PRECONDITION
    with competition.client("red") as red:
        assert "racer" not in [d.name for d in red.list_defenses() if d.status == pb.DEFENSE_STATUS_ACCEPTED]
    # and at the store level: the phase check and the insert are one transaction
    store = competition.server.arena.store
    row = store.get_defense("honest")
    with pytest.raises(PhaseClosed):
        store.put_defense(type(row)(**{**row.__dict__, "name": "late"}), require_open=True)


def test_a_lookup_table_defense_gains_nothing_on_the_private_split(competition):
    """A team reads the public split, builds a defense that answers the stored label near those
    images (standard operators only) and is accepted: on the public split it keeps every
    adversarial at least its radius away, but on the private (official) split it scores exactly
    like the honest model behind it."""
    from attackers import HopSkipJump
    from attackers.remote import RemoteOracle, RequestIds

    with competition.client("red") as red:
        x, y = red.samples(red.start_run("honest", "read").run_id)
        # as large as it can be without covering the (unseen) private images: the attack at this
        # budget finds adversarials closer than that to some public images
        gaps = np.linalg.norm((x[:, None] - competition.images[None, PUBLIC:]).reshape(PUBLIC, PRIVATE, -1), axis=2)
        radius = 0.45 * float(gaps.min())
        lookup = toy_models.lookup_table(competition.honest, x, y, radius, num_classes=10)
        accepted = red.submit_defense(lookup.SerializeToString(), "lookup")
        assert accepted.status == pb.DEFENSE_STATUS_ACCEPTED and accepted.clean_accuracy == 1.0

    def evaluate(client, defense: str, split: str) -> np.ndarray:
        run = client.start_run(defense, "hsja", split=split)
        xs, ys = client.samples(run.run_id)
        result = HopSkipJump(seed=0).run(RemoteOracle(client, run, RequestIds(f"{defense}-{split}")), xs, ys, 50)
        client.submit_adversarials(run.run_id, result.adversarials[result.success],
                                   np.flatnonzero(result.success))
        client.finish_run(run.run_id)
        return result.distances

    with competition.client("organizer") as organizer:
        public = {d: evaluate(organizer, d, "public") for d in ("honest", "lookup")}
        private = {d: evaluate(organizer, d, "private") for d in ("honest", "lookup")}
        boards = {s: {d.name: d.mean_l2 for d in from_proto(organizer.get_leaderboard(s)).defenses}
                  for s in ("public", "private")}
    # public split: no adversarial of the lookup defense is closer than its radius, while the
    # honest model behind it has some
    assert (public["lookup"] >= radius).all() and (public["honest"] < radius).any()
    np.testing.assert_array_equal(private["lookup"], private["honest"])
    assert boards["private"]["lookup"] == pytest.approx(boards["private"]["honest"], abs=1e-12)


def test_a_rules_v1_store_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "old" / "arena.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    with pytest.raises(StoreError, match="rules v1.*new --store"):
        open_store(path.parent)


def test_the_referee_evaluates_every_defense_on_both_splits_once(competition, tmp_path):
    from arena.top.referee import Referee

    with competition.client("red") as red:
        red.submit_defense(toy_models.tiny_cnn(seed=5).SerializeToString(), "second")
    logs = []
    referee = Referee(attacks=("hsja", "boundary"), budget=20, state_dir=tmp_path / "referee", log=logs.append)
    with competition.client("organizer") as organizer:
        assert len(referee.pending(organizer)) == 2 * 2 * 2
        referee.run(organizer)
        assert referee.pending(organizer) == []                         # resumable: nothing left
        runs = organizer.list_runs()
        boards = {s: from_proto(organizer.get_leaderboard(s)) for s in ("public", "private")}
    # v3: each reference attack runs as its own organizer sub-team, with the full budget B
    assert sorted({(r.team, r.defense, r.split, r.attack) for r in runs}) == sorted(
        (f"organizer.{a}", d, s, a) for d in ("honest", "second") for s in (pb.SPLIT_PUBLIC, pb.SPLIT_PRIVATE)
        for a in ("boundary", "hsja"))
    for board in boards.values():
        assert {a.key for a in board.attacks} == {"organizer.hsja/hsja", "organizer.boundary/boundary"}
        assert all(a.referee and a.budget == BUDGET for a in board.attacks)
        assert all(d.attacks_faced == ("organizer.boundary/boundary", "organizer.hsja/hsja") for d in board.defenses)
        assert board.referee_covered_all
    with competition.client("red") as red:                                # a team never could
        with pytest.raises(PermissionError, match="organizer token"):
            Referee(attacks=("hsja",), budget=5, state_dir=tmp_path / "red").run(red)
        assert red.list_runs() == []                                       # and spent nothing


def test_the_organizer_cli(competition, tmp_path, capsys):
    """`arena token create --organizer`, `arena admin ...`, `arena referee`, `arena leaderboard
    --split` from the command line, as the README shows them."""
    from arena.top.cli import main

    address = competition.server.address
    store = competition.server.arena.store.path.parent
    assert main(["token", "create", "--team", "boss", "--organizer", "--store", str(store)]) == 0
    boss = capsys.readouterr().out.strip()
    admin = ["--server", address, "--token", boss]
    assert main(["admin", "status", *admin]) == 0
    assert "phase open" in capsys.readouterr().out
    assert main(["admin", "token", "create", "--team", "cyan", "--reason", "registered", *admin]) == 0
    cyan = capsys.readouterr().out.strip()
    assert main(["admin", "status", "--server", address, "--token", cyan]) == 0
    assert "'cyan' (team)" in capsys.readouterr().out
    # a team token is refused every organizer command, with one clear line
    assert main(["admin", "phase", "final", "--reason", "x", "--server", address, "--token", cyan]) == 2
    assert "PERMISSION_DENIED" in capsys.readouterr().err
    assert main(["referee", "--server", address, "--token", cyan, "--attacks", "hsja"]) == 2
    assert "organizer token" in capsys.readouterr().err
    assert main(["referee", "--attacks", "hsja", "--budget", "10", "--no-progress",
                 "--state-dir", str(tmp_path / "ref"), *admin]) == 0
    assert "2 evaluation(s) done" in capsys.readouterr().out
    assert main(["admin", "phase", "final", "--reason", "deadline", *admin]) == 0
    assert main(["admin", "actions", *admin]) == 0
    out = capsys.readouterr().out
    assert "set_phase" in out and "deadline" in out and "create_token" in out
    assert main(["leaderboard", "--split", "private", "--server", address, "--token", cyan]) == 0
    assert "boss" in capsys.readouterr().out                    # the referee's entry on the official board
    assert main(["leaderboard", "--store", str(store), "--split", "public", "--json"]) == 0
    assert '"team": "boss.hsja"' in capsys.readouterr().out


def test_a_team_token_under_the_organizers_name_is_refused(competition):
    """A team is one identity: a team token named like the organizer's team would read the
    organizer's runs (the private split's, in the open phase)."""
    with competition.client("organizer") as organizer:
        secret = organizer.start_run("honest", "reference", split="private")
        error = rpc_error(organizer.create_token, "organizer", "same name, team role")
        assert error.code() == StatusCode.ALREADY_EXISTS and "another role" in error.details()
        error = rpc_error(organizer.create_token, "red", "red as organizer", organizer=True)
        assert error.code() == StatusCode.ALREADY_EXISTS
    with pytest.raises(StoreError, match="another role"):
        create_token(competition.server.arena.store, "organizer")       # nor offline
    with competition.client("red") as red:
        assert rpc_error(red.get_run, secret.run_id).code() == StatusCode.NOT_FOUND
