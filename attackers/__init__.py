"""Decision-based attacks as clients of a label-only oracle.

    from attackers import HopSkipJump, LocalOracle
    result = HopSkipJump(seed=0).run(LocalOracle("model.onnx", budget=1000), images, labels, budget=1000)
    result.distances, result.success, result.queries, result.adversarials

- `Oracle` (attackers.oracle): bounds, num_classes, labels(images, sample_indices); implemented by
  `LocalOracle` (an ONNX file in-process) and `RemoteOracle` (an arena run over gRPC), with the
  same per-sample budget semantics.
- `Tracker` (attackers.tracker): between attacks and the oracle; counts every query, refuses
  queries past the budget, keeps each sample's best adversarial and its distance.
- Attacks (`Attack.run(oracle_or_tracker, images, labels, budget)` -> `AttackResult`):
  `BoundaryAttack`, `HopSkipJump`, `CGBA` (surrogate-free); `TransferPGD`, `PriorGuidedCGBA`,
  `LIVIA` (white-box surrogates; torch imported lazily).
- Bring your own (docs/write-an-attack.md): subclass `Attack`, implement `search`, then run it
  with `attack_local(oracle, attack, ...)` or `attack_remote(client, defense=..., attack=...)`
  (what `arena attack` does), or name it to `arena attack --attack package.module:ClassName`,
  or register it in the entry-point group `robustness_arena.attacks`.
"""

from attackers.base import Attack, AttackResult
from attackers.boundary import BoundaryAttack
from attackers.cgba import CGBA
from attackers.hopskipjump import HopSkipJump
from attackers.livia import LIVIA
from attackers.local import LocalOracle
from attackers.oracle import BudgetExceeded, InvalidRequest, Oracle, OracleError
from attackers.prior_guided import PriorGuidedCGBA
from attackers.registry import ENTRY_POINT_GROUP, attack_class, builtin_attacks, make_attack
from attackers.surrogates import SurrogateError, Surrogates
from attackers.tracker import Answer, Tracker
from attackers.transfer import TransferPGD

ATTACKS = builtin_attacks()

# Remote pieces import grpc and the protos: loaded on first use.
_LAZY = {
    "RemoteOracle": "attackers.remote", "RequestIds": "attackers.remote", "ArenaClient": "arena.ground.client",
    "ArenaCallError": "arena.ground.client", "attack_remote": "attackers.session", "attack_local": "attackers.session",
    "Outcome": "attackers.session", "SessionError": "attackers.session",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'attackers' has no attribute {name!r}")


__all__ = [
    "ATTACKS", "Answer", "ArenaCallError", "ArenaClient", "Attack", "AttackResult", "BoundaryAttack", "BudgetExceeded", "CGBA", "ENTRY_POINT_GROUP",
    "HopSkipJump", "InvalidRequest", "LIVIA", "LocalOracle", "Oracle", "OracleError", "Outcome", "PriorGuidedCGBA",
    "RemoteOracle", "RequestIds", "SessionError", "SurrogateError", "Surrogates",
    "Tracker", "TransferPGD", "attack_class", "attack_local", "attack_remote", "make_attack",
]
