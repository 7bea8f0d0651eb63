"""The reference evaluation (docs/rules.md section 4): the organizer's own attacks against every
accepted defense on both splits, so that every defense faces at least those attacks.

`Referee.pending(client)` lists the (defense, split, attack) evaluations not yet done: those
without a finished run of the organizer's team with that attack name. `Referee.run(client)` does
them one by one through the ordinary client (`attackers.session.attack_remote`), as a client with
organizer rights (the only identity that may attack the private split before the final phase).
It is resumable: each evaluation keeps a state file under `state_dir`, so an interrupted referee
started again replays what it already paid for (free) and carries on; finished ones are skipped.

Budget (docs/rules.md section 4, rules v3: each reference attack as strong as a team's): each
reference attack runs as its own organizer sub-team, `<organizer team>.<attack>` (e.g.
`org.hsja`), so each has the full budget of B queries per sample that a team has, under the same
ledger rule as every team (no server change: a budget account is a team's, per defense and
split). The referee makes the sub-teams' organizer tokens itself the first time (recorded in the
organizer's action log) and keeps them in `state_dir/tokens.json` (mode 0600). `budget` caps
every attack lower. The boards mark entries of organizer teams as the referee's.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from arena.client import ArenaClient, split_name
from protos import arena_v1_pb2 as pb

DEFAULT_ATTACKS = ("hsja", "boundary", "transfer-pgd")
SPLITS = ("public", "private")


@dataclass(frozen=True)
class Evaluation:
    """One reference evaluation: an attack against a defense on a split."""
    defense: str
    split: str
    attack: str


@dataclass
class Referee:
    """The organizer's reference attacks. `surrogate` is the organizer's checkpoint for
    transfer-pgd (None drops transfer-pgd from the attacks, with a note)."""

    attacks: Sequence[str] = DEFAULT_ATTACKS
    surrogate: Path | None = None
    budget: int | None = None             # per attack; None: the arena's full budget B
    seed: int = 0
    state_dir: Path = Path("referee-state")
    splits: Sequence[str] = SPLITS
    log: Callable[[str], None] = print
    done: list[tuple[Evaluation, float | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.names = list(self.attacks)       # the attacks it runs
        if "transfer-pgd" in self.names and self.surrogate is None:
            self.log("referee: no --surrogate given: transfer-pgd is left out")
            self.names.remove("transfer-pgd")

    @staticmethod
    def team_for(organizer: str, attack: str) -> str:
        """The organizer sub-team a reference attack runs as (its own budget account)."""
        return f"{organizer}.{attack}"

    def pending(self, client: ArenaClient, competition: pb.Competition | None = None) -> list[Evaluation]:
        competition = competition or client.get_competition()
        sizes = {"public": competition.public_samples, "private": competition.private_samples}
        teams = {self.team_for(competition.team, a): a for a in self.names}
        finished = {(r.defense, split_name(r.split), r.attack) for r in client.list_runs()
                    if r.finished and teams.get(r.team) == r.attack}
        defenses = [d.name for d in client.list_defenses()
                    if d.status == pb.DEFENSE_STATUS_ACCEPTED and not d.disqualified_reason]
        return [Evaluation(d, s, a) for d in defenses for s in self.splits if sizes[s] > 0
                for a in self.names if (d, s, a) not in finished]

    def run(self, client: ArenaClient, progress: bool = False) -> list[tuple[Evaluation, float | None]]:
        from attackers import make_attack
        from attackers.session import attack_remote

        competition = client.get_competition()
        if competition.role != pb.ROLE_ORGANIZER:
            raise PermissionError("the referee needs an organizer token (`arena admin token create --organizer`)")
        todo = self.pending(client, competition)
        full = int(competition.budget_per_sample)
        per_attack = full if self.budget is None else min(int(self.budget), full)
        self.log(f"referee: {len(todo)} evaluation(s) to run, {per_attack} queries per sample each "
                 f"({'the full budget' if per_attack == full else f'capped below the budget of {full}'}), "
                 f"each attack as its own organizer sub-team")
        tokens = self._tokens(client, competition.team, sorted({ev.attack for ev in todo}))
        for ev in todo:
            attack = make_attack(ev.attack, seed=self.seed,
                                 surrogate=self.surrogate if ev.attack == "transfer-pgd" else None)
            started = time.perf_counter()
            with ArenaClient(client.address, tokens[ev.attack], timeout=client.timeout) as sub:
                outcome = attack_remote(sub, defense=ev.defense, attack=attack, budget=per_attack, samples=None,
                                        state_path=self.state_dir / f"{ev.defense}-{ev.split}-{ev.attack}.json",
                                        progress=progress, log=lambda *_: None, split=ev.split)
            mean = outcome.summary()["mean_l2"]
            self.done.append((ev, mean))
            self.log(f"referee: {ev.attack:>12} vs {ev.defense:<10} {ev.split:<8} mean verified l2 "
                     f"{'-' if mean is None else f'{mean:.4f}'} ({time.perf_counter() - started:.0f} s)")
        return self.done

    def _tokens(self, client: ArenaClient, organizer: str, attacks: Sequence[str]) -> dict[str, str]:
        """attack -> its sub-team's organizer token, made once and kept in state_dir/tokens.json (0600)."""
        path = self.state_dir / "tokens.json"
        known = json.loads(path.read_text()) if path.is_file() else {}
        for attack in attacks:
            team = self.team_for(organizer, attack)
            if team not in known:
                known[team] = client.create_token(
                    team, f"referee: {attack} runs with its own budget (docs/rules.md section 4)", organizer=True)
                self.state_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as out:
                    json.dump(known, out)
        return {a: known[self.team_for(organizer, a)] for a in attacks}
