"""Competition rules v3, section 4 (docs/rules.md): a query is charged to the sample it is about.

Exploit 2 of issue 18 (sample-budget pooling): the budget used to be charged to whatever sample
index the client named, so naming donor samples bought unlimited answers about one image's
neighbourhood. Through the real server: a team naming 9 donors for images about one target gets
at most B answers about that target (the old code gave 10 x B), while an honest attack's
accounting is unchanged.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from grpc import StatusCode

from arena.ground.client import ArenaCallError
from arena.ground.charging import SampleCharger
from attackers import HopSkipJump
from attackers.remote import RemoteOracle, RequestIds
from attackers.tracker import Tracker

from .conftest import BUDGET, NUM_SAMPLES, rpc_error, synthetic_images

TARGET = 0
DONORS = list(range(1, 10))


def about(image: np.ndarray, n: int, radius: float, seed: int) -> np.ndarray:
    """n images at l2 distance `radius` of `image`, in random directions (clipped to [0, 1])."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, *image.shape)).astype(np.float32)
    noise *= radius / np.linalg.norm(noise.reshape(n, -1), axis=1)[:, None, None, None]
    return np.clip(image[None] + noise, 0, 1).astype(np.float32)


def test_donor_indices_buy_no_answers_about_a_target(arena, client, run):
    """Images about the target, each naming one of 9 donors: at most B are answered in all, and
    all are charged to the target; the donors' budgets stay untouched."""
    answered = 0
    refusal = None
    for seed in range(10 * BUDGET):
        n = len(DONORS) if refusal is None else 1         # whole requests, then single images
        images = about(arena.images[TARGET], n, radius=2.0, seed=seed)
        try:
            client.predict(run.run_id, images, DONORS[:n], request_id=uuid.uuid4().hex)
        except ArenaCallError as error:
            assert error.code() == StatusCode.RESOURCE_EXHAUSTED, error
            assert dict(error.trailing_metadata()).get("arena-exhausted-samples") == str(TARGET)
            if refusal is not None:
                break
            refusal = error
            continue
        answered += n
    assert answered == BUDGET           # the old code: 9 donors x B + the target's own B
    info = client.get_run(run.run_id)
    assert info.queries_used[TARGET] == BUDGET and info.remaining[TARGET] == 0
    assert list(info.queries_used)[1:] == [0] * (NUM_SAMPLES - 1)
    # the verification of an image about the target is a query about it too: refused
    error = rpc_error(client.submit_adversarials, run.run_id, about(arena.images[TARGET], 1, 2.0, 99), [DONORS[0]])
    assert error.code() == StatusCode.RESOURCE_EXHAUSTED
    assert arena.server.arena.admission.in_flight(run.team, "tiny") == 0   # refusals give their room back


def test_remaining_is_that_of_the_charged_sample(arena, client, run):
    near_target = about(arena.images[TARGET], 3, radius=1.0, seed=1)
    _, remaining = client.predict(run.run_id, np.concatenate([near_target, arena.images[5:6]]), [7, 8, 9, 5])
    assert remaining.tolist() == [BUDGET - 3] * 3 + [BUDGET - 1]
    used = list(client.get_run(run.run_id).queries_used)
    assert used[TARGET] == 3 and used[5] == 1 and used[7] == used[8] == used[9] == 0


def test_far_images_and_other_clean_images_stay_with_the_named_sample(arena, client, run):
    """What honest attacks query away from their sample is charged as before: uniform noise
    (far from every sample) and another sample's exact clean image (a starting point)."""
    noise = np.random.default_rng(0).uniform(0, 1, (2, 3, 64, 64)).astype(np.float32)
    _, remaining = client.predict(run.run_id, np.concatenate([noise, arena.images[4:5]]), [1, 2, 3])
    assert remaining.tolist() == [BUDGET - 1] * 3
    assert list(client.get_run(run.run_id).queries_used)[:5] == [0, 1, 1, 1, 0]


def test_honest_attack_accounting_is_unchanged(arena, client, run):
    """HopSkipJump through the arena: the server charges each sample exactly what the attack's
    own tracker counted for it (its queries are about its own samples or far from all)."""
    x, y = client.samples(run.run_id, 4)
    oracle = RemoteOracle(client, run, RequestIds("honest"))
    tracker = Tracker(oracle, x, y, BUDGET // 2, sample_indices=np.arange(4))
    HopSkipJump(init="noise", seed=0).run(tracker, x, y, None)
    used = np.asarray(client.get_run(run.run_id).queries_used)[:4]
    assert tracker.queries.sum() > 0
    assert used.tolist() == tracker.queries.tolist()


def test_charging_rule_matches_exact_arithmetic():
    """The fast path, the GEMM search and its float64 refinement give what exact float64
    distances give: an image inside sample c's ball (radius half the distance to c's nearest
    other sample) is charged to c, any other image to its named sample."""
    images = synthetic_images(40, seed=3)
    charger = SampleCharger(images)
    flat = images.reshape(40, -1).astype(np.float64)
    pairwise = ((flat[:, None] - flat[None]) ** 2).sum(-1)
    np.fill_diagonal(pairwise, np.inf)
    assert np.allclose(charger.radius2, pairwise.min(1) / 4, rtol=1e-12)
    rng = np.random.default_rng(0)
    target = rng.integers(0, 40, 300)
    named = np.where(rng.random(300) < 0.5, target, rng.integers(0, 40, 300))
    # distances from 0 to 1.5 radii, many right at the ball's edge (within float32 rounding)
    scale = np.concatenate([rng.uniform(0, 1.5, 200), 1 + rng.uniform(-1e-4, 1e-4, 100)])
    queries = np.stack([about(images[t], 1, s * np.sqrt(charger.radius2[t]), seed=int(k))[0]
                        for k, (t, s) in enumerate(zip(target, scale))])
    got = charger.charged(queries, named)
    d2 = ((queries.reshape(300, -1).astype(np.float64)[:, None] - flat[None]) ** 2).sum(-1)
    inside = (d2 < charger.radius2[None]) & (d2 > 0)
    assert (inside.sum(1) <= 1).all()                     # the balls never overlap
    expected = np.where(inside.any(1), inside.argmax(1), named)
    assert got.tolist() == expected.tolist()
    assert 0 < inside.any(1).sum() < 300 and charger.fast_images > 0 and charger.slow_images > 0


def test_a_split_of_one_sample_charges_everything_to_it():
    charger = SampleCharger(synthetic_images(1, seed=0))
    assert charger.charged(synthetic_images(3, seed=1), np.zeros(3, np.int64)).tolist() == [0, 0, 0]


@pytest.mark.parametrize("arena", ["sqlite"], indirect=True)
def test_old_rule_would_have_paid_donors(arena):
    """Sanity of the exploit test: by the names alone the 9 donors would have paid (the charge
    follows the image, not the name)."""
    charger = arena.server.arena.chargers["public"]
    images = about(arena.images[TARGET], len(DONORS), radius=2.0, seed=0)
    assert charger.charged(images, np.array(DONORS)).tolist() == [TARGET] * len(DONORS)


# ---------------------------------------------------------------- remaining is the request's own (issue 21)


def serial_history_errors(answers: list[tuple[np.ndarray, np.ndarray]], budget: int) -> list[str]:
    """answers: (sample per image, remaining per image) of every answered request. Each request's
    `remaining` must be its samples' budget left right after its own charge, so per sample the
    values remaining + own charge, in descending order, step down by exactly each request's charge
    from the budget: the history of some serial order. Returns what contradicts that."""
    history: dict[int, list[tuple[int, int]]] = {}
    errors = []
    for samples, remaining in answers:
        for s in np.unique(samples):
            values = set(remaining[samples == s].tolist())
            if len(values) != 1:
                errors.append(f"sample {s}: one request told {sorted(values)}")
            history.setdefault(int(s), []).append((int(remaining[samples == s][0]), int((samples == s).sum())))
    for s, steps in history.items():
        level = budget
        for remaining, charge in sorted(steps, key=lambda rc: -(rc[0] + rc[1])):
            if remaining + charge != level:
                errors.append(f"sample {s}: a request charged {charge} was told {remaining}, "
                              f"but {level} were left before it in any serial order")
            level = remaining
    return errors


def concurrent_answers(address: str, token: str, run_id: str, images: np.ndarray, clients: int,
                       requests: int, samples: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every answered request of `clients` concurrent clients, each of 1-6 images about random
    samples (their own clean images), until `requests` each or refusals."""
    import threading

    from arena.ground.client import ArenaClient, BudgetRefused

    answers: list = []
    errors: list = []

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            with ArenaClient(address, token, timeout=60) as c:
                for _ in range(requests):
                    chosen = rng.integers(0, samples, int(rng.integers(1, 7)))
                    try:
                        _, remaining = c.predict(run_id, images[chosen], chosen, request_id=uuid.uuid4().hex)
                    except BudgetRefused:
                        continue
                    answers.append((chosen, np.asarray(remaining, dtype=np.int64)))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors
    return answers


def test_remaining_forms_one_serial_history(arena, client, run):
    """One server (SQLite or PostgreSQL), concurrent clients on one run: every answer's
    remaining is the request's own post-charge figure."""
    answers = concurrent_answers(arena.address, client.token, run.run_id, arena.images, clients=6, requests=12,
                                 samples=4)
    assert len(answers) > 20
    assert serial_history_errors(answers, BUDGET) == []


def test_serial_history_check_sees_a_stale_figure():
    samples = np.array([0, 0])
    assert serial_history_errors([(samples, np.array([8, 8])), (samples, np.array([6, 6]))], 10) == []
    # the case: 2, 5 and 5 images all told 31 (expected 48, 43, 38 from 50)
    told = [(np.zeros(n, np.int64), np.full(n, 31)) for n in (2, 5, 5)]
    assert serial_history_errors(told, 50)
