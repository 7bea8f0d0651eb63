"""The arena: label-only gRPC serving of ONNX defenses, submission validation, per-sample budgets,
verification of adversarials, a durable store, auth, and the `arena` command line.

The server process stays free of torch; CLI subcommands that need it import it lazily.

Modules (one concept each):
- server      grpc.aio server: services, health, reflection, lifecycle; `start_server` (in-process)
- core        the behaviour behind the services (submissions, runs, Predict, verification)
- batching    dynamic micro-batching per defense, group commit before labels are released
- inference   ORT session options, batch-invariant execution, the session cache
- validation  the submission rules of ARENA_RULES section 3
- ledger      per-run budgets in memory (reservations: no overdraw under concurrency)
- writer      the group-commit writer thread
- store       the storage layer (database URL -> Store; SQLite WAL) and content-addressed blobs
- evaluation  the evaluation set, pinned in the store
- records     the scoreboard's input records built from a store
- leaderboard / leaderboard_wire / http_report   leaderboard, report, proto conversion, live HTML
- auth        team tokens (sha256 in the store) and the server interceptor
- images      the wire format of images (zero-copy decoding and fast request encoding)
- client      a small synchronous client (CLI, tests, bench)
- bench       `arena bench serve`
- toy_models  small ONNX classifiers built with onnx.helper (tests, bench)
- tuning      process-level malloc tuning for megabyte messages
"""
