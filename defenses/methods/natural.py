"""Natural (standard) training: cross-entropy on the clean batch."""

from __future__ import annotations

import torch.nn.functional as F

from defenses.methods.common import MethodSettings, StepOutput


def objective(model, x, y, settings: MethodSettings, attack_model=None) -> StepOutput:
    logits = model(x)
    return StepOutput(F.cross_entropy(logits.float(), y), logits=logits)
