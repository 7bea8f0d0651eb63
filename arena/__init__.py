"""The arena application: the competition contract, the server, the one client, the command line.

- contract    the rules in code, numpy only (image shape and bounds, value check, budget, l2,
              worst case, the per-sample score, defense status); every package imports it
- wire        images on the wire (raw little-endian float32 plus a shape): encoding side
- inference   ONNX Runtime sessions, batch-invariant chunks: the one inference path, shared by
              the server and the attackers' LocalOracle
- client      the one gRPC client (paging, bearer metadata, limits, retries, typed errors)
- server/     the server: it serves and nothing else (see arena/server/__init__.py)
- cli/        `arena ...`: one thin module per subcommand
- bench/      `arena bench serve` and the toy ONNX models benchmarks and tests use
- tuning      process-level malloc tuning for megabyte messages

The server process stays free of torch; CLI subcommands that need it import it lazily.
"""
