"""The CLI (token, submit, defenses) and the leaderboard / report, against the session server."""

from __future__ import annotations

import json
import urllib.request

import pytest

from arena.server.auth import hash_token
from arena.top.cli import main
from arena.server.leaderboard_wire import from_proto


# SQLite only: reads the database file to check the token is stored hashed
@pytest.mark.parametrize("arena", ["sqlite"], indirect=True)
def test_token_submit_and_defenses(arena, tmp_path, capsys, monkeypatch):
    store = arena.server.arena.store
    assert main(["token", "create", "--team", "gamma", "--store", str(store.path.parent)]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("arena_")
    assert store.team_for_token(hash_token(token)) == "gamma"            # stored hashed ...
    assert token.encode() not in store.path.read_bytes() + (store.path.parent / "arena.db-wal").read_bytes()
    model = tmp_path / "m.onnx"
    model.write_bytes(arena.tiny)
    assert main(["submit", str(model), "--name", "cli-tiny", "--server", arena.address, "--token", token]) == 0
    assert "served batched" in capsys.readouterr().out
    monkeypatch.setenv("ARENA_TOKEN", token)
    assert main(["defenses", "--server", arena.address, "--json"]) == 0
    listed = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert listed["cli-tiny"]["team"] == "gamma" and listed["cli-tiny"]["status"] == "accepted"
    assert listed["cli-tiny"]["serving_mode"] == "batched"
    assert main(["defenses", "--server", arena.address]) == 0
    assert "cli-tiny" in capsys.readouterr().out
    # a rejected submission: exit code 2, the reasons on stderr
    model.write_bytes(b"not onnx")
    assert main(["submit", str(model), "--name", "cli-bad", "--server", arena.address]) == 2
    assert "INVALID_ARGUMENT" in capsys.readouterr().err
    monkeypatch.delenv("ARENA_TOKEN")
    assert main(["defenses", "--server", arena.address]) == 2
    assert "token" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["token", "create", "--store", "x"])             # --team is required


def test_leaderboard_and_report(arena, client):
    run = client.start_run("tiny", "board-attack")
    other = next(j for j in range(12) if arena.labels[j] != arena.labels[0] and j not in (10, 11))
    client.predict(run.run_id, arena.images[other:other + 1], [0])
    (verdict,) = client.submit_adversarials(run.run_id, arena.images[other:other + 1], [0])
    client.finish_run(run.run_id)
    board = from_proto(client.get_leaderboard())
    (tiny,) = [s for s in board.defenses if s.name == "tiny"]
    assert f"{run.team}/board-attack" in tiny.attacks_faced and board.num_samples == 12
    assert any(a.attack == "board-attack" and a.team == run.team for a in board.attacks)
    html = client.get_report()
    assert html.startswith("<!DOCTYPE html>") and "tiny" in html
    with urllib.request.urlopen(f"http://{arena.server.http_address}/", timeout=30) as response:
        assert response.status == 200 and b"tiny" in response.read()
    with urllib.request.urlopen(f"http://{arena.server.http_address}/healthz", timeout=10) as response:
        assert response.read() == b"ok"
    assert verdict.accepted
