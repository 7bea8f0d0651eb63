"""The arena: label-only gRPC serving of ONNX defenses, submission validation, per-sample budgets,
verification of adversarials, a durable store, auth, and the `arena` command line.

The server process stays free of torch; CLI subcommands that need it import it lazily.
"""
