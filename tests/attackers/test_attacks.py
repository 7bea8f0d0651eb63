"""The attacks through the local oracle on the tiny fixture model: one table of attack targets
(Foolbox style), checked for validity, exact budgets, determinism and strength."""

from __future__ import annotations

import numpy as np
import pytest

from attackers import ATTACKS, BoundaryAttack, HopSkipJump, TransferPGD, make_attack
from attackers.base import AttackResult
from attackers.local import LocalOracle
from attackers.tracker import Tracker


def attack_table(models):
    return [
        BoundaryAttack(seed=0),
        HopSkipJump(seed=0),
        HopSkipJump(seed=0, init="noise", probe_resolution=None),
        BoundaryAttack(seed=0, noise_resolution=None, init="images"),
        TransferPGD(models.surrogate, seed=0),
        TransferPGD(models.surrogate, seed=0, refine="boundary"),
    ]


_results: dict[tuple[str, int, int], tuple[AttackResult, Tracker, LocalOracle]] = {}


def run(attack, models, samples, budget: int, n: int | None = None):
    """Runs (once per session) `attack` on the first n samples with a fresh oracle."""
    key = (repr(attack), budget, n or len(samples.y))
    if key not in _results:
        x, y = samples.x[:n], samples.y[:n]
        oracle = LocalOracle(models.onnx_path, budget=budget, num_samples=len(y))
        tracker = Tracker(oracle, x, y, budget)
        result = attack.run(tracker, x, y)
        _results[key] = (result, tracker, oracle)
    return _results[key]


@pytest.mark.parametrize("index", range(6), ids=lambda i: ["boundary", "hsja", "hsja-noise-fullres", "boundary-images-fullres",
                                                           "transfer", "transfer-boundary"][i])
def test_results_are_valid_and_within_budget(index, models, samples, fresh_labels):
    attack = attack_table(models)[index]
    budget = 300
    result, tracker, oracle = run(attack, models, samples, budget, n=6)
    n = 6
    assert len(result) == n
    # no sample ever exceeds its budget, on the tracker's counters and on the oracle's own
    assert (tracker.queries <= budget).all() and (result.queries == tracker.queries).all()
    np.testing.assert_array_equal(oracle.queries_used(np.arange(n)), tracker.queries)
    assert result.success.all(), f"{attack!r}: {result.success}"
    adv = result.adversarials
    assert adv.dtype == np.float32 and np.isfinite(adv).all()
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    # every adversarial is misclassified by the model itself (a fresh session, not the oracle)
    assert (fresh_labels(adv) != samples.y[:n]).all()
    d = np.linalg.norm((adv.astype(np.float64) - samples.x[:n]).reshape(n, -1), axis=1)
    np.testing.assert_allclose(result.distances, d, rtol=1e-12)
    assert np.isfinite(result.distances).all() and (result.distances > 0).all()


SURROGATE_ATTACKS = ("transfer-pgd", "prior-cgba", "livia")


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_deterministic_for_a_seed(name, models, samples):
    x, y = samples.x[:3], samples.y[:3]

    def once(seed):
        attack = make_attack(name, seed=seed, surrogate=models.surrogate if name in SURROGATE_ATTACKS else None)
        return attack.run(LocalOracle(models.onnx_path, budget=150), x, y, 150)

    a, b, c = once(0), once(0), once(1)
    np.testing.assert_array_equal(a.adversarials, b.adversarials)
    np.testing.assert_array_equal(a.distances, b.distances)
    np.testing.assert_array_equal(a.queries, b.queries)
    if name not in SURROGATE_ATTACKS:  # their surrogate phases are seed-free: the seed only moves the refinement
        assert not np.array_equal(a.adversarials, c.adversarials)


def test_distances_shrink_as_the_budget_grows(models, samples):
    means = [run(HopSkipJump(seed=0), models, samples, b)[0].distances.mean() for b in (100, 300, 1000)]
    assert means[0] > means[1] > means[2], means


def test_hopskipjump_beats_boundary_attack_at_1000(models, samples):
    hsja = run(HopSkipJump(seed=0), models, samples, 1000)[0]
    boundary = run(BoundaryAttack(seed=0), models, samples, 1000)[0]
    assert hsja.success.all() and boundary.success.all()
    assert hsja.distances.mean() < 0.9 * boundary.distances.mean(), (hsja.distances.mean(), boundary.distances.mean())


def test_transfer_beats_both_at_1000(models, samples):
    transfer = run(TransferPGD(models.surrogate, seed=0), models, samples, 1000)[0]
    hsja = run(HopSkipJump(seed=0), models, samples, 1000)[0]
    boundary = run(BoundaryAttack(seed=0), models, samples, 1000)[0]
    assert transfer.success.all()
    assert transfer.distances.mean() < hsja.distances.mean() < boundary.distances.mean(), (
        transfer.distances.mean(), hsja.distances.mean(), boundary.distances.mean())


def test_misclassified_clean_image_costs_one_query(models, samples):
    y = samples.y[:3].copy()
    y[1] = (y[1] + 1) % 10  # a "true" label the model disagrees with
    result = HopSkipJump(seed=0).run(LocalOracle(models.onnx_path, budget=50), samples.x[:3], y, 50)
    assert result.success[1] and result.distances[1] == 0.0 and result.queries[1] == 1
    np.testing.assert_array_equal(result.adversarials[1], samples.x[1])


def test_no_budget_means_not_found_never_the_clean_image(models, samples):
    result = HopSkipJump(seed=0).run(LocalOracle(models.onnx_path, budget=None), samples.x[:2], samples.y[:2], 0)
    assert not result.success.any() and np.isinf(result.distances).all() and (result.queries == 0).all()
    assert result.adversarial(0) is None
    assert result.records()[0] == {"sample": 0, "success": False, "distance": None, "queries": 0}


@pytest.mark.parametrize("attack_cls", [HopSkipJump, BoundaryAttack])
def test_tiny_budgets_end_cleanly(attack_cls, models, samples):
    for budget in (1, 2, 5, 13):
        oracle = LocalOracle(models.onnx_path, budget=budget)
        result = attack_cls(seed=0).run(oracle, samples.x[:3], samples.y[:3], budget)
        assert (result.queries <= budget).all()
        assert np.all(np.isinf(result.distances) | (result.distances > 0))
        assert not np.isnan(result.distances).any()


def test_starting_points_are_verified_and_used(models, samples, fresh_labels):
    x, y = samples.x[:4], samples.y[:4]
    start = run(HopSkipJump(seed=0), models, samples, 300, n=6)[0].adversarials[:4].copy()
    start[3] = np.nan  # no starting point for this one
    result = HopSkipJump(seed=0).run(LocalOracle(models.onnx_path, budget=30), x, y, 30, starting_points=start)
    assert result.success.all()
    # from a good start, 30 queries beat what uniform noise reaches with them
    noise = HopSkipJump(seed=0, init="noise").run(LocalOracle(models.onnx_path, budget=30), x, y, 30)
    assert result.distances[:3].mean() < noise.distances[:3].mean()


@pytest.mark.parametrize("make, message", [
    (lambda: HopSkipJump(init_estimates=0), "init_estimates"),
    (lambda: HopSkipJump(delta=-1.0), "delta"),
    (lambda: HopSkipJump(probe_resolution=0), "probe_resolution"),
    (lambda: HopSkipJump(init="zeros"), "init"),
    (lambda: BoundaryAttack(source_step=1.0), "source_step"),
    (lambda: BoundaryAttack(step_adaptation=0.5), "step_adaptation"),
    (lambda: HopSkipJump(seed=-1), "seed"),
    (lambda: TransferPGD("/no/such/checkpoint.pt"), "does not exist"),
    (lambda: TransferPGD(object()), "surrogate"),
    (lambda: make_attack("carlini"), "unknown attack"),
    (lambda: make_attack("transfer-pgd"), "surrogate"),
])
def test_hyper_parameters_are_validated_naming_the_parameter(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_repr_shows_the_constructor_arguments():
    text = repr(HopSkipJump(init_estimates=30, seed=3))
    assert text.startswith("HopSkipJump(") and "init_estimates=30" in text and "seed=3" in text
    assert eval(repr(BoundaryAttack(source_step=0.02)), {"BoundaryAttack": BoundaryAttack}).source_step == 0.02


def test_bad_run_inputs(models, samples):
    oracle = LocalOracle(models.onnx_path, budget=10)
    with pytest.raises(ValueError, match="labels"):
        HopSkipJump().run(oracle, samples.x[:2], np.array([0, 99]), 10)
    with pytest.raises(ValueError, match="shape"):
        HopSkipJump().run(oracle, samples.x[:2, :, :10], samples.y[:2], 10)
    with pytest.raises(ValueError, match="budget"):
        HopSkipJump().run(oracle, samples.x[:2], samples.y[:2], -1)


def test_surrogate_with_another_class_count_is_refused(models, samples):
    from torch import nn

    from attackers.transfer import SurrogateError

    wrong = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, 7))
    with pytest.raises(SurrogateError, match="7 classes but the target has 10"):
        TransferPGD(wrong).run(LocalOracle(models.onnx_path, budget=10), samples.x[:1], samples.y[:1], 10)
    small = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    with pytest.raises(SurrogateError, match="does not take images of shape"):
        TransferPGD(small).check_surrogate(10, (3, 64, 64))
