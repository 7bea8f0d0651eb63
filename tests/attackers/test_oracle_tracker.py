"""The oracle contract (LocalOracle) and the tracker's accounting."""

from __future__ import annotations

import numpy as np
import pytest

from attackers.local import LocalOracle
from attackers.oracle import BudgetExceeded, InvalidRequest, Oracle
from attackers.tracker import Tracker


def test_local_oracle_labels_match_the_model(models, samples, fresh_labels):
    oracle = LocalOracle(models.onnx_path, budget=None)
    assert oracle.num_classes == 10 and oracle.bounds == (0.0, 1.0) and oracle.image_shape == (3, 64, 64)
    labels = oracle.labels(samples.x, np.arange(len(samples.y)))
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, fresh_labels(samples.x))
    np.testing.assert_array_equal(labels, samples.y)


def test_over_budget_request_is_refused_whole_and_charges_nothing(models, samples):
    oracle = LocalOracle(models.onnx_path, budget=3)
    x = samples.x[:2]
    oracle.labels(np.stack([x[0], x[0]]), np.array([0, 0]))          # sample 0: 2 of 3
    with pytest.raises(BudgetExceeded) as refused:
        # sample 1 could afford it, sample 0 cannot: nothing is charged to either
        oracle.labels(np.stack([x[1], x[0], x[0]]), np.array([1, 0, 0]))
    assert refused.value.sample_indices == (0,)
    np.testing.assert_array_equal(oracle.queries_used(np.array([0, 1])), [2, 0])
    oracle.labels(x[:1], np.array([0]))                               # exactly the budget: fine
    assert oracle.queries_used(np.array([0]))[0] == 3


@pytest.mark.parametrize("bad, why", [
    (lambda x: x.astype(np.float64), "float32"),
    (lambda x: x[:, :, :32], "shape"),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x).astype(np.float32), "finite"),
    (lambda x: x + np.float32(1.5), r"\[0, 1\]"),
])
def test_invalid_requests_are_refused_and_charge_nothing(models, samples, bad, why):
    oracle = LocalOracle(models.onnx_path, budget=10)
    with pytest.raises(InvalidRequest, match=why):
        oracle.labels(bad(samples.x[:2]), np.array([0, 1]))
    assert oracle.queries_used().sum() == 0


def test_sample_ids_are_bounded_by_num_samples(models, samples):
    oracle = LocalOracle(models.onnx_path, budget=10, num_samples=2)
    with pytest.raises(InvalidRequest, match="out of range"):
        oracle.labels(samples.x[:1], np.array([2]))


class CountingOracle(Oracle):
    """A fake oracle: label 0 where the image's mean is below 0.5, else 1; records every call."""

    def __init__(self, budget: int | None = None) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []
        self.used = np.zeros(16, dtype=np.int64)
        self.budget = budget

    @property
    def num_classes(self) -> int:
        return 2

    def labels(self, images, sample_indices):
        ids = np.asarray(sample_indices)
        if self.budget is not None:
            wanted = np.bincount(ids, minlength=16)
            over = np.flatnonzero(self.used + wanted > self.budget)
            if over.size:
                raise BudgetExceeded("over", over.tolist())
            self.used += wanted
        self.calls.append((images.copy(), ids.copy()))
        return (images.reshape(len(images), -1).mean(axis=1) >= 0.5).astype(np.int64)


def _images(values):
    return np.stack([np.full((3, 64, 64), v, dtype=np.float32) for v in values])


def test_tracker_counts_keeps_the_best_and_refuses_per_sample():
    oracle = CountingOracle()
    improved = []
    tracker = Tracker(oracle, _images([0.2, 0.3]), np.array([0, 0]), budget=3,
                      on_improve=lambda t, pos: improved.append(pos.tolist()))
    answer = tracker.query(np.array([0, 0, 1]), _images([0.9, 0.6, 0.1]))
    np.testing.assert_array_equal(answer.adversarial, [True, True, False])
    np.testing.assert_array_equal(answer.answered, [True, True, True])
    # every adversarial's distance to its own original, inf for the rest
    side = np.sqrt(3 * 64 * 64)
    np.testing.assert_allclose(answer.distances, [0.7 * side, 0.4 * side, np.inf], rtol=1e-6)
    np.testing.assert_array_equal(tracker.queries, [2, 1])
    # the closer of the two adversarials of sample 0, as queried, with its float64 l2 distance
    assert tracker.best_distance[0] == pytest.approx(0.4 * side, rel=1e-6)
    np.testing.assert_array_equal(tracker.best[0], _images([0.6])[0])
    assert improved == [[0]]
    assert not tracker.found[1] and np.isinf(tracker.best_distance[1])
    # sample 0 has 1 query left and asks for 2: its images are not sent; sample 1's go through
    answer = tracker.query(np.array([0, 1, 0]), _images([0.55, 0.7, 0.5]))
    np.testing.assert_array_equal(answer.answered, [False, True, False])
    np.testing.assert_array_equal(answer.adversarial, [False, True, False])
    np.testing.assert_array_equal(oracle.calls[-1][1], [1])
    np.testing.assert_array_equal(tracker.queries, [2, 2])
    assert (tracker.queries <= tracker.budget).all()
    # best_distance_at: what each sample had once it had paid q queries
    assert np.isinf(tracker.best_distance_at(1)[1]) and np.isfinite(tracker.best_distance_at(2)[1])


def test_claimed_distances_never_enter_the_record_unmeasured():
    side = np.sqrt(3 * 64 * 64)
    tracker = Tracker(CountingOracle(), _images([0.2, 0.3]), np.array([0, 0]), budget=10)
    # sample 0: true distances 0.7 and 0.4 (x side), claimed the other way round; sample 1's
    # single hit is claimed far too close
    answer = tracker.query(np.array([0, 0, 1]), _images([0.9, 0.6, 0.95]),
                           distances=np.array([0.1 * side, 5.0 * side, 0.01]))
    # the hit claimed closest is measured before it is kept: 0.7, not 0.1
    assert tracker.best_distance[0] == pytest.approx(0.7 * side, rel=1e-6)
    np.testing.assert_array_equal(tracker.best[0], _images([0.9])[0])
    assert tracker.best_distance[1] == pytest.approx(0.65 * side, rel=1e-6)
    np.testing.assert_allclose(answer.distances, [0.7 * side, 5.0 * side, 0.65 * side], rtol=1e-6)
    # a hit claimed farther than the best is not measured: claims can cost an improvement...
    tracker.query(np.array([0]), _images([0.5]), distances=np.array([10.0 * side]))
    assert tracker.best_distance[0] == pytest.approx(0.7 * side, rel=1e-6)
    # ...and one claimed closer but in fact farther is measured and refused
    tracker.query(np.array([0]), _images([1.0]), distances=np.array([0.0]))
    assert tracker.best_distance[0] == pytest.approx(0.7 * side, rel=1e-6)
    np.testing.assert_array_equal(tracker.best[0], _images([0.9])[0])
    with pytest.raises(ValueError, match="distances"):
        tracker.query(np.array([0]), _images([0.9]), distances=np.array([1.0, 2.0]))


def test_tracker_believes_the_oracle_when_it_refuses():
    oracle = CountingOracle(budget=1)
    oracle.used[0] = 1  # spent elsewhere (e.g. by an earlier client of the same run)
    tracker = Tracker(oracle, _images([0.2, 0.3]), np.array([0, 0]), budget=5)
    answer = tracker.query(np.array([0, 1]), _images([0.9, 0.9]))
    np.testing.assert_array_equal(answer.answered, [False, True])
    assert tracker.remaining[0] == 0 and tracker.queries[0] == 0


def test_tracker_rejects_bad_queries(models, samples):
    tracker = Tracker(CountingOracle(), _images([0.2]), np.array([0]), budget=5)
    with pytest.raises(ValueError, match="positions"):
        tracker.query(np.array([3]), _images([0.5]))
    # image values are the oracle's to check: refused whole, nothing charged
    tracker = Tracker(LocalOracle(models.onnx_path, budget=5), samples.x[:1], samples.y[:1], budget=5)
    with pytest.raises(InvalidRequest, match="within|lie in"):
        tracker.query(np.array([0]), samples.x[:1] + np.float32(2.0))
    assert tracker.queries.sum() == 0
