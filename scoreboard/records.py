"""The records the scoreboard is computed from: what the arena's store hands over, nothing more.

Arrays are indexed by evaluation-sample index (0..N-1, the arena's fixed evaluation set).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DefenseRecord:
    """An accepted defense as the scoring needs it: name, team, submission time, clean correctness per
    sample."""

    name: str
    team: str
    submitted_at: float          # unix seconds; ties break on the earlier submission
    clean_correct: np.ndarray    # bool [N]: the defense classifies the clean image correctly

    @property
    def clean_accuracy(self) -> float:
        return float(np.mean(self.clean_correct)) if self.clean_correct.size else 0.0


@dataclass(frozen=True)
class RunRecord:
    """A run as the scoring needs it: who attacked what with which attack, finished or not, its best
    distances and queries."""

    run_id: str
    defense: str
    attack: str
    team: str
    started_at: float            # unix seconds
    finished: bool               # only finished runs count
    distances: np.ndarray        # float64 [N]: smallest verified distance, +inf where none
    queries: int = 0             # images the run was charged (shown beside its attack's entry)
    # bool [N]: the samples the run spent queries on or submitted for (docs/rules.md section 6:
    # only attacked samples get a d). None: every sample (records that predate coverage).
    attacked: np.ndarray | None = None
    budget: int = 0              # queries per sample the run was allowed (the arena's B at its start)


@dataclass(frozen=True)
class EvaluationSet:
    """The evaluated split as the scoring needs it: each clean image's worst-case distance."""

    worst_case: np.ndarray       # float64 [N]: ||max(x, 1 - x)||_2 per clean image

    @property
    def num_samples(self) -> int:
        return int(self.worst_case.shape[0])
