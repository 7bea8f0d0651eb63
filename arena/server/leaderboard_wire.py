"""The leaderboard on the wire: scoreboard.Leaderboard <-> arena.v1 GetLeaderboardResponse.

The one place that knows both shapes (scoreboard/ never imports protos or grpc). The wire
carries the tables only: per-sample distances, the attack x defense means and the attacks'
tie-breaking start times stay on the server, so `from_proto` leaves them empty / NaN.
"""

from __future__ import annotations

from protos import arena_v1_pb2 as pb
from scoreboard.scoring import DEFAULT_RADII, AttackScore, DefenseScore, Leaderboard, Uncertainty

_UNCERTAINTY = ("mean_ci_low", "mean_ci_high", "diff_next", "diff_next_ci_low", "diff_next_ci_high")


def _uncertainty_fields(u: Uncertainty) -> dict:
    return {**{f: getattr(u, f) for f in _UNCERTAINTY}, "separated_from_next": bool(u.separated_from_next)}


def _uncertainty(standing) -> Uncertainty:
    return Uncertainty(**{f: getattr(standing, f) for f in _UNCERTAINTY})


SPLITS = {"public": pb.SPLIT_PUBLIC, "private": pb.SPLIT_PRIVATE}


def to_proto(board: Leaderboard, split: str = "public", disqualified=()) -> pb.GetLeaderboardResponse:
    return pb.GetLeaderboardResponse(
        split=SPLITS[split],
        disqualified=[pb.Disqualified(kind=k, name=n, team=t, reason=r) for k, n, t, r in disqualified],
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
        )
        for a in response.attacks
    )
    # The radii are the server's; every defense carries the same ones.
    radii = tuple(e for e, _ in defenses[0].robust_accuracy) if defenses else DEFAULT_RADII
    return Leaderboard(defenses=defenses, attacks=attacks, num_samples=response.num_samples, radii=radii,
                       resamples=response.bootstrap_resamples)
