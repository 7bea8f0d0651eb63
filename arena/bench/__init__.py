"""Benchmarks of the hot paths (`arena bench {train,serve,attack}`) and the toy ONNX models they
and the tests use. Nothing here is imported by the server."""
