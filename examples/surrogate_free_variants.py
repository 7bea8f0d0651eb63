"""Surrogate-free variants of CGBA tried for issue 20 item 1, and how to reproduce their figures.

    .venv/bin/python examples/surrogate_free_variants.py [--defense natural|trades] [SPEC ...]

Each SPEC is a Python expression building an attack from the names below (default: the table of
docs/benchmarks.md, "Surrogate-free: what was tried"). Every attack runs on the bench's 40
samples of the demo target (`arena bench attack`'s models and samples, one thread) with 1000
queries per sample; the script prints mean and median l2 per attack. None of the variants beat
CGBA's defaults by more than the run-to-run noise; they stay here, not in `attackers/`, as the
record of what was measured.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from attackers import CGBA, HopSkipJump
from attackers.hopskipjump import baseline_corrected_signs
from attackers.probes import to_image

DEFAULT = ["HopSkipJump()", "CGBA()", "CGBA(probe_resolution=8)", "CGBA(probe_resolution=12)",
           "CGBA(probe_resolution=24)", "CGBA(probe_resolution=32)", "Scheduled([(3, 8), (99, 16)])",
           "Scheduled([(4, 16), (99, 32)])", "PCAProbes(192)", "PCAProbes(432)", "CGBA(momentum=0.6)",
           "CGBA(delta=0.05)", "CGBA(delta=0.2)", "CGBA(init_estimates=60)"]


class Scheduled(CGBA):
    """CGBA whose probe resolution follows `schedule`: [(iterations, resolution), ...]."""

    def __init__(self, schedule, **cgba) -> None:
        super().__init__(**cgba)
        self.schedule = list(schedule)

    def iterate(self, tracker, pos, boundary, rng) -> None:
        self._t = 0
        super().iterate(tracker, pos, boundary, rng)

    def estimate_gradient(self, tracker, pos, x, rows, dist, counts, rng):
        self._t += 1
        ends = np.cumsum([n for n, _ in self.schedule])
        self.probe_resolution = self.schedule[min(int(np.searchsorted(ends, self._t)), len(ends) - 1)][1]
        # full resolution, so that estimates pooled across a change of resolution add up
        return to_image(super().estimate_gradient(tracker, pos, x, rows, dist, counts, rng), x.shape[1:])


class PCAProbes(CGBA):
    """CGBA whose probes are drawn in the top k principal components of the public images."""

    def __init__(self, k: int, **cgba) -> None:
        super().__init__(**cgba)
        from arena.top.bench.subspace import pca_basis, principal_components
        from defenses.data import load_samples

        public, _, _ = load_samples("demo", None)
        self.basis = pca_basis(principal_components(public), k).T.astype(np.float32)   # [k, D]

    def estimate_gradient(self, tracker, pos, x, rows, dist, counts, rng):
        lo, hi = tracker.bounds
        out = np.zeros((pos.shape[0], self.basis.shape[1]), dtype=np.float32)
        for i in range(pos.shape[0]):
            c = int(counts[i])
            u = rng.standard_normal((c, self.basis.shape[0]), dtype=np.float32) @ self.basis
            u /= np.linalg.norm(u, axis=1, keepdims=True)
            probes = np.clip(x[rows[i]].reshape(1, -1) + (self.delta * dist[i]) * u, lo, hi).astype(np.float32)
            answer = tracker.query(np.full(c, pos[i]), probes.reshape(c, *x.shape[1:]))
            out[i] = baseline_corrected_signs(answer, np.zeros(c, dtype=np.int64), np.array([c])) @ u / c
        return out


def main() -> None:
    import torch

    from arena.top.bench.attack import _run_ours, _single_threaded_blas, pick_samples, prepare_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--defense", default="natural", choices=["natural", "trades"])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("specs", nargs="*", default=DEFAULT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    _, onnx_bytes, _, _ = prepare_models(None, None, False, args.defense)
    x, y = pick_samples(onnx_bytes, args.samples, 1)
    names = {"CGBA": CGBA, "HopSkipJump": HopSkipJump, "Scheduled": Scheduled, "PCAProbes": PCAProbes}
    with _single_threaded_blas():
        for spec in args.specs:
            attack = eval(spec, names)   # the caller's own expressions: a research script
            started = time.perf_counter()
            d = _run_ours(attack, onnx_bytes, x, y, 1000, 1)["distances"]
            print(f"{spec:34s} mean {np.mean(d):.4f} median {np.median(d):.4f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
