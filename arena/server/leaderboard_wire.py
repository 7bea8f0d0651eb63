"""The leaderboard on the wire: scoreboard.Leaderboard <-> arena.v1 GetLeaderboardResponse.

The one place that knows both shapes (scoreboard/ never imports protos or grpc). The wire
carries the tables only: per-sample distances, the attack x defense means and the attacks'
tie-breaking start times stay on the server, so `from_proto` leaves them empty / NaN.
"""

from __future__ import annotations

from protos import arena_v1_pb2 as pb
from scoreboard.scoring import (
    DEFAULT_RADII,
    AttackFaced,
    AttackScore,
    DefenseScore,
    Disqualification,
    Leaderboard,
    Uncertainty,
)

_UNCERTAINTY = ("mean_ci_low", "mean_ci_high", "diff_next", "diff_next_ci_low", "diff_next_ci_high", "diff_next_p")


def _uncertainty_fields(u: Uncertainty) -> dict:
    return {**{f: getattr(u, f) for f in _UNCERTAINTY}, "separated_from_next": bool(u.separated_from_next)}


def _uncertainty(standing) -> Uncertainty:
    return Uncertainty(**{f: getattr(standing, f) for f in _UNCERTAINTY}, separated=standing.separated_from_next)


SPLITS = {"public": pb.SPLIT_PUBLIC, "private": pb.SPLIT_PRIVATE}


def to_proto(board: Leaderboard) -> pb.GetLeaderboardResponse:
    return pb.GetLeaderboardResponse(
        split=SPLITS.get(board.split, pb.SPLIT_UNSPECIFIED),
        disqualified=[pb.Disqualified(kind=d.kind, name=d.name, team=d.team, reason=d.reason, detail=d.detail)
                      for d in board.disqualified],
        fill_cap=board.fill_cap,
        attack_defenses=board.attack_defenses,
        attack_set_rule=board.attack_set_rule,
        notice=board.notice,
        defenses=[
            pb.DefenseStanding(
                rank=s.rank,
                name=s.name,
                team=s.team,
                mean_l2=s.mean_l2,
                median_l2=s.median_l2,
                clean_accuracy=s.clean_accuracy,
                robust_accuracy=[pb.RobustAccuracy(eps=e, accuracy=a) for e, a in s.robust_accuracy],
                attacks_faced=s.attacks_faced,
                submitted_at=s.submitted_at,
                covered_samples=s.covered_samples,
                unbroken=s.unbroken,
                faced=[pb.AttackFaced(attack=f.attack, budget=f.budget, samples=f.samples) for f in s.faced],
                referee_covered=s.referee_covered,
                **_uncertainty_fields(s.uncertainty),
            )
            for s in board.defenses
        ],
        attacks=[
            pb.AttackStanding(
                rank=a.rank,
                attack=a.attack,
                mean_l2=a.mean_l2,
                defenses_faced=a.defenses_faced,
                teams=a.teams,
                team=a.team,
                queries=a.queries,
                budget=a.budget,
                referee=a.referee,
                defenses_listed=a.defenses_listed,
                own_defenses=a.own_defenses,
                **_uncertainty_fields(a.uncertainty),
            )
            for a in board.attacks
        ],
        num_samples=board.num_samples,
        bootstrap_resamples=board.resamples,
    )


def from_proto(response: pb.GetLeaderboardResponse) -> Leaderboard:
    defenses = tuple(
        DefenseScore(
            rank=s.rank,
            name=s.name,
            team=s.team,
            submitted_at=s.submitted_at,
            mean_l2=s.mean_l2,
            median_l2=s.median_l2,
            clean_accuracy=s.clean_accuracy,
            robust_accuracy=tuple((r.eps, r.accuracy) for r in s.robust_accuracy),
            attacks_faced=tuple(s.attacks_faced),
            uncertainty=_uncertainty(s),
            covered_samples=s.covered_samples,
            num_samples=response.num_samples,
            unbroken=s.unbroken,
            faced=tuple(AttackFaced(f.attack, f.budget, f.samples) for f in s.faced),
            referee_covered=s.referee_covered,
        )
        for s in response.defenses
    )
    attacks = tuple(
        AttackScore(
            rank=a.rank,
            attack=a.attack,
            mean_l2=a.mean_l2,
            defenses_faced=a.defenses_faced,
            teams=tuple(a.teams),
            team=a.team,
            queries=a.queries,
            uncertainty=_uncertainty(a),
            budget=a.budget,
            referee=a.referee,
            defenses_listed=a.defenses_listed,
            own_defenses=tuple(a.own_defenses),
        )
        for a in response.attacks
    )
    # The radii are the server's; every defense carries the same ones.
    radii = tuple(e for e, _ in defenses[0].robust_accuracy) if defenses else DEFAULT_RADII
    return Leaderboard(defenses=defenses, attacks=attacks, num_samples=response.num_samples, radii=radii,
                       resamples=response.bootstrap_resamples,
                       split={v: k for k, v in SPLITS.items()}.get(response.split, ""),
                       fill_cap=response.fill_cap, attack_defenses=tuple(response.attack_defenses),
                       attack_set_rule=response.attack_set_rule, notice=response.notice,
                       disqualified=tuple(Disqualification(d.kind, d.name, d.team, d.reason, d.detail)
                                          for d in response.disqualified))
