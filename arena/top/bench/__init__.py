"""The benchmarks (`arena bench {train,serve,attack,subspace,bootstrap}`, one module each: train,
serve, attack, subspace, bootstrap), the white-box minimum the attacks and the board's gap are measured against
(whitebox_minimum), and the fixtures benchmarks and tests use (toy ONNX models, a throwaway
PostgreSQL server, load clients, replicas). Top floor: it may import every package it measures;
nothing below imports it, the server least of all."""
