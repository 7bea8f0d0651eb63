"""LIVIA whose surrogates are fine-tuned on the target's own answers (tried for issue 20 item 2; not kept).

    .venv/bin/python examples/livia_query_feedback.py natural "FeedbackLIVIA(models, epochs=3, lr=1e-4, phase=300)"

Every query the attack makes is recorded with its answer (adversarial or not); after the start,
or after `phase` queries of the refinement, each surrogate is fine-tuned on them (-log p_y where
the target kept the label, -log(1 - p_y) where it did not, the clean images kept), the surrogate
directions are computed again and line-searched, and the refinement goes on with the tuned
surrogates. On the bench's natural target (40 samples, 1000 queries; docs/benchmarks.md) it
changed nothing measurable: the tuned surrogates' directions found no closer point than the
refinement already had. A research record, not an attack of the project.
"""

from __future__ import annotations

import copy
import sys
import time

import numpy as np
import torch

from attackers import LIVIA
from attackers.surrogates import Surrogates


class Recorder:
    """Wraps tracker.query: keeps every answered image with its sample and answer while `on`."""

    def __init__(self, tracker) -> None:
        self.positions, self.images, self.adversarial, self.on = [], [], [], True
        self._query = tracker.query
        tracker.query = self.query

    def query(self, positions, images, **kw):
        answer = self._query(positions, images, **kw)
        if self.on:
            ok = answer.answered
            self.positions.append(np.asarray(positions)[ok])
            self.images.append(np.asarray(images)[ok].copy())
            self.adversarial.append(answer.adversarial[ok])
        return answer

    def data(self):
        return (np.concatenate(self.positions), np.concatenate(self.images), np.concatenate(self.adversarial))


def finetune(models, images, labels, adversarial, x0, y0, epochs: int, lr: float) -> list:
    """Copies of `models` tuned with Adam on the answers: -log p_y where the target kept the true
    label y, -log(1 - p_y) where it did not; the clean images (x0, y0) join as kept."""
    x = torch.from_numpy(np.concatenate([images, x0]))
    y = torch.from_numpy(np.concatenate([labels, y0]).astype(np.int64))
    flipped = torch.from_numpy(np.concatenate([adversarial, np.zeros(len(y0), dtype=bool)]))
    tuned = []
    for model in models:
        model = copy.deepcopy(model)
        model.train()
        for module in model.modules():   # batch statistics stay the surrogate's own
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(epochs):
            order = torch.randperm(len(y))
            for start in range(0, len(y), 128):
                batch = order[start:start + 128]
                log_py = model(x[batch]).log_softmax(1).gather(1, y[batch][:, None])[:, 0]
                kept_loss = -log_py
                flipped_loss = -torch.log1p(-log_py.exp().clamp(max=1 - 1e-6))
                loss = torch.where(flipped[batch], flipped_loss, kept_loss).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        model.eval()
        tuned.append(model)
    return tuned


class FeedbackLIVIA(LIVIA):
    """LIVIA's start; then `rounds` times: refine for `phase` queries (0: not at all), tune the
    surrogates on every answer so far, search their new directions; then refine to the end."""

    def __init__(self, surrogates, epochs: int = 5, lr: float = 1e-4, rounds: int = 1, phase: int = 0, **livia):
        super().__init__(surrogates, **livia)
        self.epochs, self.lr, self.rounds, self.phase = epochs, lr, rounds, phase

    def search(self, tracker, positions, starts, rng) -> None:
        recorder = Recorder(tracker)
        x0, labels = tracker.originals[positions], tracker.labels[positions]
        self.check_surrogate(tracker.oracle.num_classes, tuple(tracker.originals.shape[1:]))
        best = np.zeros_like(x0)
        best_d = np.full(positions.shape[0], np.inf)

        def scan(directions) -> None:
            for direction, length in directions:
                screen = np.isfinite(best_d)
                points, d = self.line_search(tracker, positions, x0, direction, np.where(screen, best_d, length), screen)
                better = d < best_d
                best[better], best_d[better] = points[better], d[better]

        with tracker.timed("surrogate"):
            scan_first = self.directions(x0, labels)
        scan(scan_first)
        log = lambda stage: print(f"{stage}: mean l2 {np.mean(best_d):.4f} after {tracker.queries[positions].mean():.0f} "
                                  "queries", file=sys.stderr)
        log("start")
        budget = np.array(tracker.budget, copy=True)
        for r in range(self.rounds):
            if self.phase:
                tracker.budget = np.minimum(budget, tracker.queries + self.phase)
                rows = np.flatnonzero(np.isfinite(best_d))
                self._refiner.iterate(tracker, positions[rows], best[rows], rng)
                tracker.budget = budget
                closer = tracker.best_distance[positions] < best_d
                best[closer] = tracker.best[positions[closer]]
                best_d[closer] = tracker.best_distance[positions[closer]]
                log(f"refined {r}")
            with tracker.timed("surrogate"):
                seen, images, flipped = recorder.data()
                tuned = finetune(self.surrogates.models(), images, tracker.labels[seen], flipped, x0, labels,
                                 self.epochs, self.lr)
                self.surrogates = self._refiner.surrogates = Surrogates(tuned, self.surrogates.batch_size)
                directions = self.directions(x0, labels)
            scan(directions)
            log(f"tuned on {len(seen)} answers, round {r}")
        recorder.on = False
        rows = np.flatnonzero(np.isfinite(best_d))
        if rows.size:
            self._refiner.iterate(tracker, positions[rows], best[rows], rng)


def main() -> None:
    from arena.top.bench import attack as bench
    from defenses.checkpoint import load_checkpoint

    torch.set_num_threads(2)
    torch.manual_seed(0)   # the fine-tuning's batch order
    defense, specs = sys.argv[1], sys.argv[2:]
    _, onnx_bytes, _, _ = bench.prepare_models(None, None, False, defense)
    x, y = bench.pick_samples(onnx_bytes, 40, 2)
    # the bench's surrogates (arena bench attack trains them once into its cache)
    models = [load_checkpoint(bench._demo_model(n)).model for n in ("surrogate", "surrogate-robust")]
    for spec in specs:
        attack = eval(spec, {**globals(), "models": models})   # the caller's own expressions: a research script
        started = time.perf_counter()
        with bench._single_threaded_blas():
            result = bench._run_ours(attack, onnx_bytes, x, y, 1000, 2)
        d = result["distances"]
        print(f"{spec:60s} mean {np.mean(d):.4f} median {np.median(d):.4f} "
              f"setup {result['setup']:.0f}s {time.perf_counter() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
