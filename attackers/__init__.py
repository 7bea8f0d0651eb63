"""Decision-based attacks as clients of a label-only oracle.

    from attackers import HopSkipJump, LocalOracle
    result = HopSkipJump(seed=0).run(LocalOracle("model.onnx", budget=1000), images, labels, budget=1000)
    result.distances, result.success, result.queries, result.adversarials

- `Oracle` (attackers.oracle): bounds, num_classes, labels(images, sample_ids); implemented by
  `LocalOracle` (an ONNX file in-process) and `RemoteOracle` (an arena run over gRPC), with the
  same per-sample budget semantics.
- `Tracker` (attackers.tracker): between attacks and the oracle; counts every query, refuses
  queries past the budget, keeps each sample's best adversarial and its distance.
- Attacks (`Attack.run(oracle_or_tracker, images, labels, budget)` -> `AttackResult`):
  `BoundaryAttack`, `HopSkipJump`, `TransferPGD` (torch only there, imported lazily).
"""

from attackers.base import Attack, AttackResult
from attackers.boundary import BoundaryAttack
from attackers.hopskipjump import HopSkipJump
from attackers.local import LocalOracle
from attackers.oracle import BudgetExceeded, InvalidRequest, Oracle, OracleError
from attackers.tracker import Answer, Tracker
from attackers.transfer import SurrogateError, TransferPGD

ATTACKS = {cls.name: cls for cls in (BoundaryAttack, HopSkipJump, TransferPGD)}


def make_attack(name: str, *, seed: int | None = 0, surrogate=None, **params) -> Attack:
    """The attack registered as `name` ("boundary", "hsja", "transfer-pgd") with its defaults."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}")
    if name == TransferPGD.name:
        if surrogate is None:
            raise ValueError("transfer-pgd needs a surrogate checkpoint (--surrogate CKPT, from `arena train`)")
        return TransferPGD(surrogate, seed=seed, **params)
    if surrogate is not None:
        raise ValueError(f"--surrogate is only used by transfer-pgd, not by {name}")
    return ATTACKS[name](seed=seed, **params)


__all__ = [
    "ATTACKS", "Answer", "Attack", "AttackResult", "BoundaryAttack", "BudgetExceeded", "HopSkipJump",
    "InvalidRequest", "LocalOracle", "Oracle", "OracleError", "SurrogateError", "Tracker", "TransferPGD",
    "make_attack",
]
