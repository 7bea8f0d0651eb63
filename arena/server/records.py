"""The scoreboard's input records, built from the arena's store (`scoreboard.records`), per split.

`build_records(store, split)` -> (accepted defenses, the split's runs, the split's evaluation
set), samples indexed within the split; the scoring ignores unfinished runs itself. Disqualified
defenses and runs are left out (`disqualified(store)` lists them with their reasons).
`gallery_items(store, board, split)` picks the report's gallery (clean image beside the kept
adversarial) from the same store.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from arena.ground.contract import IMAGE_SHAPE, DefenseStatus
from arena.server import evaluation as evaluation_module
from arena.server.store import PUBLIC, Store, open_store
from scoreboard.records import DefenseRecord, EvaluationSet, RunRecord
from scoreboard.scoring import Disqualification


def _store(store: Store | str | Path) -> tuple[Store, bool]:
    if isinstance(store, Store):
        return store, False
    return open_store(store), True


def build_records(store: Store | str | Path, split: str = PUBLIC
                  ) -> tuple[list[DefenseRecord], list[RunRecord], EvaluationSet]:
    """Accepted, not disqualified defenses (with per-sample clean correctness on the split), the
    split's runs that were not disqualified (with their smallest verified distance per sample,
    +inf where none, and the queries they spent) and the split's worst-case distances.

    `store` is an open Store, a database URL (sqlite:///...) or a store folder."""
    store, owned = _store(store)
    try:
        meta = store.evaluation()
        if meta is None:
            n, part = 0, slice(0, 0)
            evaluation = EvaluationSet(worst_case=np.zeros(0))
        else:
            part = meta.split_slice(split)
            n = part.stop - part.start
            evaluation = EvaluationSet(worst_case=np.asarray(meta.worst_case, dtype=np.float64)[part])
        # a defense whose private clean correctness is still being measured (rules v3: after its
        # acceptance) joins the private board once it is
        defenses = [
            DefenseRecord(name=d.name, team=d.team, submitted_at=d.submitted_at,
                          clean_correct=np.asarray(d.clean_correct, dtype=np.bool_)[part])
            for d in store.list_defenses() if d.status == DefenseStatus.ACCEPTED and not d.disqualified_reason
            and np.asarray(d.clean_correct).size >= part.stop
        ]
        runs = [_run_record(store, r, n) for r in store.list_runs() if r.split == split and not r.disqualified_reason]
        return defenses, runs, evaluation
    finally:
        if owned:
            store.close()


def _run_record(store: Store, row, n: int) -> RunRecord:
    """A run as the scoring needs it. A sample is attacked once the run spent queries on it (a
    verification costs a query too, unless Predict already paid for those bytes): docs/rules.md
    section 6."""
    spent = store.usage(row.run_id, n)
    return RunRecord(run_id=row.run_id, defense=row.defense, attack=row.attack, team=row.team,
                     started_at=row.started_at, finished=row.finished, distances=store.best_distances(row.run_id, n),
                     queries=int(spent.sum()), attacked=spent > 0, budget=int(row.budget))


def disqualified(store: Store, split: str | None = None) -> list[Disqualification]:
    """Every disqualified defense, and every disqualified run (of `split`, if named), with the
    organizer's reason."""
    out = [Disqualification("defense", d.name, d.team, d.disqualified_reason)
           for d in store.list_defenses() if d.disqualified_reason]
    out += [Disqualification("run", r.run_id, r.team, r.disqualified_reason, f"{r.attack} against {r.defense}")
            for r in store.list_runs() if r.disqualified_reason and (split is None or r.split == split)]
    return out


def gallery_items(store: Store, board, split: str = PUBLIC, per_defense: int = 4) -> list:
    """The report's gallery: for each ranked defense, up to `per_defense` samples (see
    scoreboard.report.pick_gallery_samples) with the clean image and the kept adversarial."""
    from scoreboard.report import GalleryItem, pick_gallery_samples

    if store.evaluation() is None:
        return []
    data = evaluation_module.from_store(store)
    base = data.split_slice(split).start
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
                    attack = f"{runs[run_id].team}/{runs[run_id].attack}" if run_id in runs else ""
            true = int(data.labels[base + i])
            items.append(GalleryItem(
                defense=score.name, sample_index=int(i), clean=data.images[base + i],
                adversarial=adversarial, true_label=names[true] if true < len(names) else str(true),
                adversarial_label=label, distance=distance, attack=attack,
            ))
    return items
