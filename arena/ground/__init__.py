"""The ground floor: what the server, the attackers, the defenses, the scoreboard and the command
line all stand on. It imports nothing of ours but itself and `protos` (the wire it encodes).

- contract    the rules in code, numpy only (image shape and bounds, value check, budget, l2,
              worst case, the per-sample score, defense status); every package imports it
- wire        images on the wire (raw little-endian float32 plus a shape): encoding side
- inference   ONNX Runtime sessions, batch-invariant chunks: the one inference path, shared by
              the server and the attackers' LocalOracle
- client      the one gRPC client (paging, bearer metadata, limits, retries, typed errors)
- charging    the sample an image is charged to (rules v3), shared by the server's ledger and
              the attackers' oracles
- tuning      process-level malloc tuning for megabyte messages
"""
