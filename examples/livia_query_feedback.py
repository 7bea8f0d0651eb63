"""import copy
import sys
import time

import numpy as np
import torch

from attackers import LIVIA
from attackers.surrogates import Surrogates

class Recorder:
    def __init__(self, tracker):
        self.t = tracker; self.pos = []; self.img = []; self.adv = []; self.on = True
        self._q = tracker.query
        tracker.query = self.query
    def query(self, positions, images, **kw):
        a = self._q(positions, images, **kw)
        if self.on:
            ok = a.answered
            self.pos.append(np.asarray(positions)[ok]); self.img.append(np.asarray(images)[ok].copy()); self.adv.append(a.adversarial[ok])
        return a

def finetune(models, x, y, adv, x0, y0, epochs, lr):
    out = []
    X = torch.from_numpy(np.concatenate([x, x0])); Y = torch.from_numpy(np.concatenate([y, y0]).astype(np.int64))
    A = torch.from_numpy(np.concatenate([adv, np.zeros(len(y0), bool)]))
    for m in models:
        m = copy.deepcopy(m); m.train()
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d): mod.eval()
        opt = torch.optim.Adam(m.parameters(), lr=lr)
        n = len(Y)
        for ep in range(epochs):
            perm = torch.randperm(n)
            for s in range(0, n, 128):
                b = perm[s:s+128]
                logp = m(X[b]).log_softmax(1)
                py = logp.gather(1, Y[b][:, None])[:, 0]
                # true label kept: -log p_y; adversarial: -log(1 - p_y)
                loss = torch.where(A[b], -torch.log1p(-py.exp().clamp(max=1-1e-6)), -py).mean()
                opt.zero_grad(); loss.backward(); opt.step()
        m.eval(); out.append(m)
    return out

class FeedbackLIVIA(LIVIA):
    def __init__(self, surrogates, epochs=5, lr=1e-4, rounds=1, **kw):
        super().__init__(surrogates, **kw); self.epochs = epochs; self.lr = lr; self.rounds = rounds
    def search(self, tracker, positions, starts, rng):
        rec = Recorder(tracker)
        x0 = tracker.originals[positions]; labels = tracker.labels[positions]
        self.check_surrogate(tracker.oracle.num_classes, tuple(tracker.originals.shape[1:]))
        k = positions.shape[0]
        best = np.zeros_like(x0); best_d = np.full(k, np.inf)
        def scan(dirs):
            for direction, length in dirs:
                screen = np.isfinite(best_d)
                points, d = self.line_search(tracker, positions, x0, direction, np.where(screen, best_d, length), screen)
                better = d < best_d
                best[better] = points[better]; best_d[better] = d[better]
        with tracker.timed("surrogate"):
            dirs = self.directions(x0, labels)
        scan(dirs)
        print('start', np.mean(best_d), tracker.queries[positions].mean(), file=sys.stderr)
        sur = self.surrogates
        for r in range(self.rounds):
            with tracker.timed("surrogate"):
                P = np.concatenate(rec.pos); I = np.concatenate(rec.img); A = np.concatenate(rec.adv)
                Yq = tracker.labels[P]
                tuned = finetune(sur.models(), I, Yq, A, x0, labels, self.epochs, self.lr)
                self.surrogates = Surrogates(tuned, sur.batch_size)
                dirs = self.directions(x0, labels)
            scan(dirs)
            print('round', r, np.mean(best_d), tracker.queries[positions].mean(), len(P), file=sys.stderr)
        rec.on = False
        self._refiner.surrogates = self.surrogates
        rows = np.flatnonzero(np.isfinite(best_d))
        if rows.size:
            self._refiner.iterate(tracker, positions[rows], best[rows], rng)

class FeedbackLIVIA2(FeedbackLIVIA):
    def __init__(self, surrogates, phase=300, **kw):
        super().__init__(surrogates, **kw); self.phase = phase
    def search(self, tracker, positions, starts, rng):
        rec = Recorder(tracker)
        x0 = tracker.originals[positions]; labels = tracker.labels[positions]
        self.check_surrogate(tracker.oracle.num_classes, tuple(tracker.originals.shape[1:]))
        k = positions.shape[0]
        best = np.zeros_like(x0); best_d = np.full(k, np.inf)
        def scan(dirs):
            for direction, length in dirs:
                screen = np.isfinite(best_d)
                points, d = self.line_search(tracker, positions, x0, direction, np.where(screen, best_d, length), screen)
                better = d < best_d
                best[better] = points[better]; best_d[better] = d[better]
        with tracker.timed("surrogate"):
            dirs = self.directions(x0, labels)
        scan(dirs)
        print('start', np.mean(best_d), tracker.queries[positions].mean(), file=sys.stderr)
        budget = np.array(tracker.budget, copy=True)
        for r in range(self.rounds):
            tracker.budget = np.minimum(budget, tracker.queries + self.phase)
            rows = np.flatnonzero(np.isfinite(best_d))
            self._refiner.iterate(tracker, positions[rows], best[rows], rng)
            tracker.budget = budget
            cur = tracker.best_distance[positions]
            better = cur < best_d
            # the tracker's best points
            best_d = np.minimum(best_d, cur)
            best[better] = tracker.best[positions[better]]
            print('phase', r, np.mean(best_d), tracker.queries[positions].mean(), file=sys.stderr)
            with tracker.timed("surrogate"):
                P = np.concatenate(rec.pos); I = np.concatenate(rec.img); A = np.concatenate(rec.adv)
                tuned = finetune(self.surrogates.models(), I, tracker.labels[P], A, x0, labels, self.epochs, self.lr)
                self.surrogates = Surrogates(tuned, self.surrogates.batch_size)
                self._refiner.surrogates = self.surrogates
                dirs = self.directions(x0, labels)
            scan(dirs)
            print('round', r, np.mean(best_d), tracker.queries[positions].mean(), len(P), file=sys.stderr)
        rec.on = False
        rows = np.flatnonzero(np.isfinite(best_d))
        self._refiner.iterate(tracker, positions[rows], best[rows], rng)


def main() -> None:
    from arena.top.bench import attack as B
    from defenses.checkpoint import load_checkpoint

    torch.set_num_threads(2)
    defense, specs = sys.argv[1], sys.argv[2:]
    _, onnx_bytes, _, _ = B.prepare_models(None, None, False, defense)
    x, y = B.pick_samples(onnx_bytes, 40, 2)
    # the bench's surrogates (arena bench attack trains them once into its cache)
    models = [load_checkpoint(B._demo_model(n)).model for n in ("surrogate", "surrogate-robust")]
    for spec in specs:
        attack = eval(spec, {**globals(), "models": models})   # the caller's own expressions: a research script
        started = time.perf_counter()
        with B._single_threaded_blas():
            r = B._run_ours(attack, onnx_bytes, x, y, 1000, 2)
        d = r["distances"]
        print(f"{spec:60s} mean {np.mean(d):.4f} median {np.median(d):.4f} setup {r['setup']:.0f}s "
              f"{time.perf_counter() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
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
