"""SubmitAdversarials (docs/rules.md section 5): the arena's own label, exact l2, the best kept,
no free oracle, and no label change between query and verification."""

from __future__ import annotations

import numpy as np
import pytest
from grpc import StatusCode

from arena.server.digests import image_digests
from arena.server.store import QueryRecord

from .conftest import NUM_SAMPLES, WRONG, rpc_error


def other_label_image(arena, sample: int) -> np.ndarray:
    """An evaluation image whose (model) label differs from sample's true label."""
    for j in range(NUM_SAMPLES):
        if j not in WRONG and arena.labels[j] != arena.labels[sample]:
            return arena.images[j]
    raise AssertionError("the evaluation set has one label only")


def test_queried_adversarial_is_verified_free_and_kept(arena, client, run):
    x0 = arena.images[0]
    adv = other_label_image(arena, 0)
    labels, _ = client.predict(run.run_id, adv[None], [0])
    assert labels[0] != arena.labels[0]
    used = client.get_run(run.run_id).queries_used[0]
    (verdict,) = client.submit_adversarials(run.run_id, adv[None], [0])
    assert verdict.adversarial and verdict.accepted and not verdict.charged
    assert verdict.label == labels[0]
    expected = np.linalg.norm(adv.astype(np.float64).ravel() - x0.astype(np.float64).ravel())
    assert verdict.distance == pytest.approx(expected, rel=1e-12)   # float64 accumulation
    assert verdict.best_distance == verdict.distance
    assert client.get_run(run.run_id).queries_used[0] == used           # free: same bytes were queried

    # a farther adversarial does not replace it; a closer one does
    farthest = np.where(x0 < 0.5, 1.0, 0.0).astype(np.float32)   # the worst case: farther than anything
    (farther,) = client.submit_adversarials(run.run_id, farthest[None], [0])
    if farther.accepted:
        assert farther.charged and farther.best_distance == verdict.distance
    closer = np.clip(x0 + 0.999 * (adv - x0), 0, 1).astype(np.float32)
    (better,) = client.submit_adversarials(run.run_id, closer[None], [0])
    if better.accepted:
        assert better.best_distance == better.distance < verdict.distance
    best = better.distance if better.accepted else verdict.distance
    run_info = client.get_run(run.run_id)
    assert run_info.best_distances[0] == best
    stored = arena.server.arena.store.adversarials(run.run_id)
    assert [a.sample for a in stored] == [0]
    kept = closer if better.accepted else adv
    assert np.array_equal(np.frombuffer(stored[0].image, dtype="<f4").reshape(3, 64, 64), kept)


def test_unqueried_image_costs_one_query(arena, client, run):
    x = arena.images[3:5]
    verdicts = client.submit_adversarials(run.run_id, x, [3, 4])
    assert [v.charged for v in verdicts] == [True, True]
    # its own clean image is not adversarial: distance 0, not accepted
    assert not verdicts[0].adversarial and not verdicts[0].accepted and verdicts[0].distance == 0.0
    assert list(client.get_run(run.run_id).queries_used)[3:5] == [1, 1]
    assert client.get_run(run.run_id).best_distances[3] == float("inf")
    # images answered with the true label are not recorded: verifying them again costs again
    verdicts = client.submit_adversarials(run.run_id, x, [3, 4])
    assert [v.charged for v in verdicts] == [True, True]
    assert list(client.get_run(run.run_id).queries_used)[3:5] == [2, 2]


def test_only_images_answered_adversarial_are_recorded(arena, client, run):
    adv = other_label_image(arena, 5)
    labels, _ = client.predict(run.run_id, np.stack([arena.images[5], adv]), [5, 5])
    assert labels[0] == arena.labels[5] != labels[1]
    kind = arena.server.arena.store.image_digest
    assert kind == "blake3"   # a new store keys by BLAKE3 (arena.server.digests)
    clean_key = (5, image_digests(arena.images[5][None], algorithm=kind)[0])
    adv_key = (5, image_digests(adv[None], algorithm=kind)[0])
    assert arena.server.arena.store.query_labels(run.run_id, [clean_key, adv_key]) == {adv_key: int(labels[1])}
    verdicts = client.submit_adversarials(run.run_id, np.stack([adv, arena.images[5]]), [5, 5])
    assert [v.charged for v in verdicts] == [False, True]


def test_queried_for_another_sample_is_not_free(arena, client, run):
    client.predict(run.run_id, arena.images[6:7], [6])
    (verdict,) = client.submit_adversarials(run.run_id, arena.images[6:7], [7])
    assert verdict.charged


def test_misclassified_clean_image_is_an_adversarial_at_distance_zero(arena, client, run):
    s = WRONG[0]
    (verdict,) = client.submit_adversarials(run.run_id, arena.images[s:s + 1], [s])
    assert verdict.adversarial and verdict.accepted and verdict.distance == 0.0


def test_label_changed_since_query_is_not_accepted(arena, client, run):
    """Simulates a defense whose label changed between the query and the verification: the
    store says Predict answered another label for these exact bytes."""
    adv = other_label_image(arena, 1)[None]
    true_label = int(arena.labels[1])
    digest = image_digests(np.ascontiguousarray(adv, dtype="<f4"), algorithm=arena.server.arena.store.image_digest)[0]
    arena.server.arena.store.write([QueryRecord(run.run_id, 1, digest, true_label)])
    (verdict,) = client.submit_adversarials(run.run_id, adv, [1])
    assert verdict.adversarial and not verdict.accepted and not verdict.charged
    assert "label changed" in verdict.note
    assert client.get_run(run.run_id).best_distances[1] == float("inf")


def test_submission_budget_refusal_charges_nothing(arena, client, run):
    # sample s's own clean image is answered adversarial (the model gets it wrong); queries of
    # images about s are charged to s (rules v3), another sample's image would be charged to that one
    s = WRONG[0]
    budget = run.budget_per_sample
    x = np.repeat(arena.images[s][None], 16, axis=0)
    spent = 0
    while spent < budget:
        n = min(16, budget - spent)
        client.predict(run.run_id, x[:n], [s] * n)
        spent += n
    fresh = np.clip(arena.images[s:s + 1] * 0.9, 0, 1)
    error = rpc_error(client.submit_adversarials, run.run_id, fresh, [s])
    assert error.code() == StatusCode.RESOURCE_EXHAUSTED
    # bytes Predict answered adversarial can still be verified, for free
    (verdict,) = client.submit_adversarials(run.run_id, x[:1], [s])
    assert verdict.adversarial and verdict.accepted and not verdict.charged
    assert client.get_run(run.run_id).queries_used[s] == budget
