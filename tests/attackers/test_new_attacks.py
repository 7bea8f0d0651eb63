"""CGBA, prior-guided CGBA and LIVIA: the geometry against a known flat boundary, and the attack
contract on the fixture model (valid results the model itself confirms, exact budgets, same
answers locally and through a live arena)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attackers import CGBA, LIVIA, LocalOracle, Oracle, PriorGuidedCGBA, Tracker
from attackers.surrogates import Surrogates


class HalfSpace(Oracle):
    """Label 1 where w . x > b, else 0: a flat boundary whose closest point is known exactly."""

    def __init__(self, w: np.ndarray, b: float) -> None:
        self.w, self.b = w.reshape(-1).astype(np.float64), b

    @property
    def num_classes(self) -> int:
        return 2

    def labels(self, images, sample_indices):
        return (images.reshape(len(images), -1).astype(np.float64) @ self.w > self.b).astype(np.int64)


def flat_boundary_case(seed=0):
    from attackers.probes import upsample

    rng = np.random.default_rng(seed)
    # a smooth normal (bilinear from 8 x 8), as image classifiers' tend to be
    w = upsample(rng.standard_normal((3, 8, 8)).astype(np.float32), (3, 64, 64)).reshape(-1).astype(np.float64)
    w /= np.linalg.norm(w)
    x0 = np.full((1, 3, 64, 64), 0.5, dtype=np.float32)
    margin = 0.3                                  # distance of x0 to the boundary
    b = float(x0.reshape(-1) @ w) + margin
    oracle = HalfSpace(w, b)
    tracker = Tracker(oracle, x0, np.zeros(1, dtype=np.int64), 1000)
    # a boundary point 45 degrees off the closest one: distance margin / cos(45)
    u = rng.standard_normal(w.size)
    u -= (u @ w) * w
    u /= np.linalg.norm(u)
    direction = (w + u) / math.sqrt(2.0)
    xb = (x0.reshape(-1) + (margin * math.sqrt(2.0) + 1e-4) * direction).astype(np.float32).reshape(1, 3, 64, 64)
    return tracker, x0, xb, w, margin


def test_semicircular_search_with_the_true_normal_finds_the_closest_point():
    tracker, x0, xb, w, margin = flat_boundary_case()
    attack = CGBA(angle_tolerance=1e-3)
    d0 = float(np.linalg.norm(xb - x0))
    point, d = attack.boundary_search(tracker, np.array([0]), x0, xb, np.array([d0]), w[None].astype(np.float32))
    assert tracker.oracle.labels(point, [0])[0] == 1
    # the arc through x0 and xb in the plane of (xb - x0, w) touches the boundary at its foot
    assert d[0] == pytest.approx(margin, rel=2e-3)
    assert d[0] >= margin * (1 - 1e-6)
    # ~log2((pi/2) / 1e-3) = 11 queries, all through the tracker
    assert tracker.queries[0] == math.ceil(math.log2((math.pi / 2) / 1e-3))


def test_halving_search_lands_where_the_paper_says():
    tracker, x0, xb, w, margin = flat_boundary_case(1)
    attack = CGBA(variant="cgba-h", tolerance=1e-4)
    d0 = float(np.linalg.norm(xb - x0))
    point, d = attack.boundary_search(tracker, np.array([0]), x0, xb, np.array([d0]), w[None].astype(np.float32))
    # theta = 45 degrees: the arc point at theta/2 is adversarial; the straight bisection from it
    # toward x0 meets the flat boundary at margin / cos(theta/2)
    assert d[0] == pytest.approx(margin / math.cos(math.pi / 8), rel=1e-3)
    assert tracker.oracle.labels(point, [0])[0] == 1


def test_cgba_converges_on_a_flat_boundary():
    tracker, x0, xb, w, margin = flat_boundary_case(2)
    attack = CGBA(probe_resolution=8, seed=0)
    attack.iterate(tracker, np.array([0]), xb, np.random.default_rng(0))
    assert tracker.queries[0] <= 1000
    # from 1.41x the minimum, steadily closer (the estimated normals, from probes at the
    # normal's own resolution, are noisy: measured 1.39x at 50 queries, 1.25x at 400, 1.15x at 1000)
    at = [tracker.best_distance_at(q)[0] / margin for q in (50, 400, 1000)]
    assert at[0] > at[1] > at[2] and at[2] < 1.2, at


def new_attacks(models):
    return {
        "cgba": CGBA(seed=0),
        "cgba-h": CGBA(seed=0, variant="cgba-h"),
        "prior-cgba": PriorGuidedCGBA([models.surrogate], seed=0),
        "prior-cgba-biased": PriorGuidedCGBA([models.surrogate], seed=0, prior_weight=0.1, prior_min_gain=0.2),
        "livia": LIVIA([models.surrogate], seed=0, ddn_steps=20),
    }


@pytest.mark.parametrize("key", ["cgba", "cgba-h", "prior-cgba", "prior-cgba-biased", "livia"])
def test_valid_exact_in_budget_and_confirmed_by_the_model(key, models, samples, fresh_labels):
    n, budget = 5, 200
    x, y = samples.x[:n], samples.y[:n]
    oracle = LocalOracle(models.onnx_path, budget=budget, num_samples=n)
    tracker = Tracker(oracle, x, y, budget)
    result = new_attacks(models)[key].run(tracker, x, y)
    assert (result.queries <= budget).all()
    np.testing.assert_array_equal(oracle.queries_used(np.arange(n)), tracker.queries)
    assert result.success.all()
    # every sample spent (nearly) its whole budget: the attacks stop only when they cannot afford an iteration
    assert (result.queries >= budget - 40).all(), result.queries
    adv = result.adversarials
    assert (fresh_labels(adv) != y).all()
    d = np.linalg.norm((adv.astype(np.float64) - x).reshape(n, -1), axis=1)
    np.testing.assert_allclose(result.distances, d, rtol=1e-12)


def test_surrogate_guidance_beats_cgba_alone(models, samples):
    n, budget = 6, 300
    x, y = samples.x[:n], samples.y[:n]

    def mean(attack):
        return attack.run(LocalOracle(models.onnx_path, budget=budget), x, y, budget).distances.mean()

    plain = mean(CGBA(seed=0))
    guided = mean(PriorGuidedCGBA([models.surrogate], seed=0))
    livia = mean(LIVIA([models.surrogate], seed=0, ddn_steps=20))
    assert guided < plain and livia < plain, (plain, guided, livia)


def test_surrogate_gradient_is_the_margin_gradient(models, samples):
    import torch

    x, y = samples.x[:2], samples.y[:2]
    g = Surrogates([models.surrogate]).gradient(x, y)
    assert g.shape == (2, 3 * 64 * 64)
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1.0, rtol=1e-5)
    # finite difference along the gradient: the margin grows
    xt = torch.from_numpy(x)
    with torch.no_grad():
        def margin(z):
            logits = models.surrogate(z)
            true = logits[torch.arange(2), torch.from_numpy(y)]
            others = logits.clone()
            others[torch.arange(2), torch.from_numpy(y)] = -float("inf")
            return (others.max(1).values - true).numpy()
        step = torch.from_numpy(g.reshape(x.shape)) * 1e-2
        assert (margin(xt + step) > margin(xt)).all() and (margin(xt - step) < margin(xt)).all()


def test_livia_refuses_bad_parameters():
    with pytest.raises(ValueError, match="line_queries"):
        LIVIA([lambda z: z], line_queries=1)
    with pytest.raises(ValueError, match="refine_params"):
        LIVIA([lambda z: z], refine_params={"nope": 1})
    with pytest.raises(ValueError, match="does not exist"):
        LIVIA(["/no/such.pt"])
    with pytest.raises(ValueError, match="variant"):
        CGBA(variant="sideways")


def test_targeted_ddn_reaches_its_targets(models, samples):
    import torch

    x, y = samples.x[:4], samples.y[:4]
    targets = (y + 1) % 10
    surrogates = Surrogates([models.surrogate])
    adv, found = surrogates.targeted_adversarials(models.surrogate, x, targets, steps=30)
    assert found.any()
    with torch.no_grad():
        labels = models.surrogate(torch.from_numpy(adv)).argmax(1).numpy()
    np.testing.assert_array_equal(labels[found], targets[found])
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    np.testing.assert_array_equal(adv[~found], x[~found])
