"""The scoreboard's input records, built from the arena's store (`scoreboard.records`).

`build_records(store)` -> (accepted defenses, every run, the evaluation set); the scoring
ignores unfinished runs itself. `gallery_items(store, board)` picks the report's gallery
(clean image beside the kept adversarial) from the same store.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from arena.contract import IMAGE_SHAPE, DefenseStatus
from arena.server import evaluation as evaluation_module
from arena.server.store import Store, open_store
from scoreboard.records import DefenseRecord, EvaluationSet, RunRecord


def _store(store: Store | str | Path) -> tuple[Store, bool]:
    if isinstance(store, Store):
        return store, False
    return open_store(store), True


def build_records(store: Store | str | Path) -> tuple[list[DefenseRecord], list[RunRecord], EvaluationSet]:
    """Accepted defenses (with per-sample clean correctness), all runs (with their smallest verified
    distance per sample, +inf where none) and the evaluation set's worst-case distances.

    `store` is an open Store, a database URL (sqlite:///...) or a store folder."""
    store, owned = _store(store)
    try:
        meta = store.evaluation()
        if meta is None:
            n = 0
            evaluation = EvaluationSet(worst_case=np.zeros(0))
        else:
            n = meta.num_samples
            evaluation = EvaluationSet(worst_case=np.asarray(meta.worst_case, dtype=np.float64))
        defenses = [
            DefenseRecord(name=d.name, team=d.team, submitted_at=d.submitted_at,
                          clean_correct=np.asarray(d.clean_correct, dtype=np.bool_))
            for d in store.list_defenses() if d.status == DefenseStatus.ACCEPTED
        ]
        runs = [
            RunRecord(run_id=r.run_id, defense=r.defense, attack=r.attack, team=r.team, started_at=r.started_at,
                      finished=r.finished, distances=store.best_distances(r.run_id, n))
            for r in store.list_runs()
        ]
        return defenses, runs, evaluation
    finally:
        if owned:
            store.close()


def gallery_items(store: Store, board, per_defense: int = 4) -> list:
    """The report's gallery: for each ranked defense, up to `per_defense` samples (see
    scoreboard.report.pick_gallery_samples) with the clean image and the kept adversarial."""
    from scoreboard.report import GalleryItem, pick_gallery_samples

    if store.evaluation() is None:
        return []
    data = evaluation_module.from_store(store)
    names = data.class_names
    runs = {r.run_id: r for r in store.list_runs()}
    adversarials: dict[str, dict[int, object]] = {}
    items = []
    for score in board.defenses:
        if not score.distances:
            continue
        for i in pick_gallery_samples(score, per_defense):
            run_id = score.best_runs[i]
            adversarial = label = None
            attack = ""
            distance = float("inf")
            if run_id:
                if run_id not in adversarials:
                    adversarials[run_id] = {a.sample: a for a in store.adversarials(run_id)}
                row = adversarials[run_id].get(i)
                if row is not None:
                    adversarial = np.frombuffer(row.image, dtype="<f4").reshape(IMAGE_SHAPE)
                    label = names[row.label] if 0 <= row.label < len(names) else (
                        "no answer" if row.label < 0 else str(row.label))
                    distance = row.distance
                    attack = runs[run_id].attack if run_id in runs else ""
            true = int(data.labels[i])
            items.append(GalleryItem(
                defense=score.name, sample_index=int(i), clean=data.images[i],
                adversarial=adversarial, true_label=names[true] if true < len(names) else str(true),
                adversarial_label=label, distance=distance, attack=attack,
            ))
    return items
