"""Synthetic records for the scoreboard tests: a small arena with three defenses and three attacks."""

from __future__ import annotations

import numpy as np
import pytest

from scoreboard.records import DefenseRecord, EvaluationSet, RunRecord
from scoreboard.report import GalleryItem, pick_gallery_samples
from scoreboard.scoring import Leaderboard, leaderboard

LABELS = ("goldfish", "tabby cat", "school bus", "lemon", "volcano", "teapot")


def synthetic_images(n: int, seed: int = 0) -> np.ndarray:
    """n smooth, colourful float32 [3,64,64] images in [0, 1] (gradients plus a disc)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    images = np.empty((n, 3, 64, 64), dtype=np.float32)
    for i in range(n):
        base = rng.uniform(0.15, 0.85, size=(3, 1, 1))
        tilt = rng.uniform(-0.3, 0.3, size=(3, 2, 1, 1))
        cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.12, 0.25)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.float32)
        colour = rng.uniform(0, 1, size=(3, 1, 1))
        img = base + tilt[:, 0] * (yy - 0.5) + tilt[:, 1] * (xx - 0.5)
        images[i] = np.clip(img * (1 - disc) + colour * disc, 0, 1)
    return images


@pytest.fixture(scope="session")
def arena_records():
    """(defenses, runs, evaluation, images): 40 samples; 'trades' is the most robust."""
    n = 40
    rng = np.random.default_rng(1)
    images = synthetic_images(n)
    worst = np.linalg.norm(np.maximum(images, 1 - images).reshape(n, -1), axis=1)
    evaluation = EvaluationSet(worst_case=worst)
    profiles = {  # name: (clean accuracy, typical distance, fraction never broken, submitted_at)
        "natural": (0.90, 0.35, 0.0, 100.0),
        "pgd-at": (0.78, 1.10, 0.05, 200.0),
        "trades": (0.74, 1.45, 0.10, 300.0),
    }
    defenses, runs = [], []
    attacks = {"boundary": 1.6, "hopskipjump": 1.2, "transfer-pgd": 1.9}
    for name, (acc, scale, unbroken, submitted) in profiles.items():
        clean = rng.uniform(size=n) < acc
        defenses.append(DefenseRecord(name=name, team="defenders", submitted_at=submitted, clean_correct=clean))
        never = rng.uniform(size=n) < unbroken
        for k, (attack, factor) in enumerate(attacks.items()):
            d = scale * factor * rng.lognormal(0.0, 0.45, size=n)
            d[never] = np.inf
            runs.append(RunRecord(run_id=f"{attack}@{name}", defense=name, attack=attack, team="attackers",
                                  started_at=1000.0 + 10 * k, finished=True, distances=d))
    # An attack that has not faced every defense: listed, unranked.
    runs.append(RunRecord(run_id="square@natural", defense="natural", attack="square", team="late",
                          started_at=2000.0, finished=True, distances=np.full(n, 0.5)))
    return defenses, runs, evaluation, images


@pytest.fixture(scope="session")
def board(arena_records) -> Leaderboard:
    defenses, runs, evaluation, _ = arena_records
    return leaderboard(defenses, runs, evaluation, split="public")


@pytest.fixture(scope="session")
def gallery(arena_records, board) -> list[GalleryItem]:
    """Up to 4 samples per defense: adversarials near the clean image, or none found."""
    _, _, _, images = arena_records
    rng = np.random.default_rng(2)
    items = []
    for score in board.defenses:
        for i in pick_gallery_samples(score, k=4):
            clean = images[i]
            found = bool(score.best_runs[i])
            adversarial = None
            if found:
                noise = rng.normal(size=clean.shape).astype(np.float32)
                adversarial = np.clip(clean + noise * (score.distances[i] / np.linalg.norm(noise)), 0, 1)
            items.append(GalleryItem(
                defense=score.name, sample_index=i, clean=clean, adversarial=adversarial,
                true_label=LABELS[i % len(LABELS)],
                adversarial_label=LABELS[(i + 1) % len(LABELS)] if found else None,
                distance=score.distances[i] if found else float("inf"),
                attack=score.best_runs[i].split("@")[0],
            ))
    return items
