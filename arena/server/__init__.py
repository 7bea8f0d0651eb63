"""The arena server: it serves and does nothing else. It never imports torch, `attackers` or the CLI
(tests/test_layout.py walks the import graph to keep it so).

    from arena.server import ServerConfig, start_server
    server = start_server(ServerConfig(store="arena-store", data="demo", port=0))

Modules, one concept each:
- app         lifecycle: ServerConfig, start_server (in-process, tests/demo), serve (`arena serve`)
- transport   the gRPC servicers: each request decoded into a plain call, each answer encoded,
              one error -> status mapping (with app and leaderboard_wire, the only modules
              that import protos: tests/test_layout.py)
- calls       the plain values the core takes and answers with (PredictCall, PredictAnswer, ...)
- core        `Arena`: the state the rooms share (store, evaluation, registry, writer, phase and
              budget, chargers, pools, admission), and the rooms:
- submissions   upload, validation, verdict, phase check, caps; how a defense is shown
- runs          start (split, shared budget), lookup, info, samples, finish, list
- queries       Predict and SubmitAdversarials: charging, batching, verification, replay
- competition   the phase and budget as a caller sees them; the organizer's actions
- admission   a team's images in flight on a defense, bounded
- registry    accepted defenses: loading, the session cache, one micro-batcher per defense
- ledger      team budgets (per defense and split) in memory: reserve -> consume or release
- batching    dynamic micro-batching per defense, group commit before labels are released
- validation  the submission rules (docs/rules.md section 3)
- sandbox     child processes under limits (docs/rules.md, "Limits on submitted models");
              validation runs in one
- workers     served defenses in worker processes, images and logits in shared memory
- writer      the group-commit writer thread
- store       the storage layer: domain rows, the Store interface, blobs, the shared SQL, SQLite, PostgreSQL
- evaluation  the evaluation set, pinned in the store
- records / leaderboard / leaderboard_wire / http_report   boards from the store, proto, live HTML
- auth        team tokens (sha256 in the store) and the server interceptor
- images      zero-copy parsing and checking of image batches in requests
- digests     the serving path's two digests
- errors      domain errors, each with its gRPC status
Inference itself (ONNX Runtime sessions, batch-invariant chunking) is `arena.ground.inference`, shared
with the attackers' LocalOracle so that local and remote labels agree bit for bit.
"""

from __future__ import annotations

_EXPORTS = {"ServerConfig", "start_server", "serve", "RunningServer", "ArenaServer"}


def __getattr__(name: str):
    # Lazy: `import arena.server.store` must not start gRPC machinery.
    if name in _EXPORTS:
        from arena.server import app

        return getattr(app, name)
    raise AttributeError(f"module 'arena.server' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
