"""`LocalOracle` runs a defense through the arena's own inference code, so an adversarial found
offline is one on the arena too, down to points a float32 step apart across the decision
boundary, in batches of any size and composition."""

from __future__ import annotations

import numpy as np

from arena.ground.client import ArenaClient
from attackers import LocalOracle


def boundary_points(oracle: LocalOracle, x: np.ndarray, y: np.ndarray, pairs: int = 6) -> np.ndarray:
    """Pairs of float32 images on either side of the boundary, bisected between two samples of
    different labels until no float32 point lies between them."""
    out = []
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            if y[i] == y[j] or len(out) >= 2 * pairs:
                continue
            lo, hi = 0.0, 1.0
            a, b = x[i], x[j]
            label_a = oracle.labels(a[None], np.array([0]))[0]
            for _ in range(60):
                mid = (lo + hi) / 2
                point = ((1 - mid) * a.astype(np.float64) + mid * b.astype(np.float64)).astype(np.float32)
                if oracle.labels(point[None], np.array([0]))[0] == label_a:
                    lo = mid
                else:
                    hi = mid
            near = ((1 - lo) * a.astype(np.float64) + lo * b.astype(np.float64)).astype(np.float32)
            far = ((1 - hi) * a.astype(np.float64) + hi * b.astype(np.float64)).astype(np.float32)
            out += [near, far]
    return np.stack(out)


def test_local_and_arena_labels_agree_on_the_boundary(arena_server, models):
    local = LocalOracle(models.onnx_path, budget=None)
    with ArenaClient(arena_server.address, arena_server.token) as client:
        run = client.start_run("tiny", "boundary-agreement")
        x, _ = client.samples(run.run_id)
        y = local.labels(x, np.zeros(len(x), np.int64))
        points = boundary_points(local, x, y)
        alone = local.labels(points, np.zeros(len(points), np.int64))
        assert (alone[0::2] != alone[1::2]).all()          # each pair straddles the boundary
        rng = np.random.default_rng(0)
        for size in (3, 13, 16):                           # odd sizes are cut into power-of-two chunks
            filler = x[rng.integers(0, len(x), (size,))]
            for start in range(0, len(points), size):
                batch = filler.copy()
                chunk = points[start:start + size]
                batch[: len(chunk)] = chunk
                ids = np.arange(size) % len(x)
                remote, _ = client.predict(run.run_id, batch, ids)
                offline = local.labels(batch, ids)
                np.testing.assert_array_equal(remote, offline)
                np.testing.assert_array_equal(offline[: len(chunk)], alone[start:start + len(chunk)])
