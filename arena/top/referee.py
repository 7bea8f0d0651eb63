"""The reference evaluation (docs/rules.md section 4): the organizer's own attacks against every
accepted defense on both splits, so that every defense faces at least those attacks.

`Referee.pending(client)` lists the (defense, split, attack) evaluations not yet done: those
without a finished run of the organizer's team with that attack name. `Referee.run(client)` does
them one by one through the ordinary client (`attackers.session.attack_remote`), as a client with
organizer rights (the only identity that may attack the private split before the final phase).
It is resumable: each evaluation keeps a state file under `state_dir`, so an interrupted referee
started again replays what it already paid for (free) and carries on; finished ones are skipped.

Seeds: the reference attacks' seed is the organizer's secret (rules v3): with a known seed a
defender could replay them offline and tune against exactly the queries they will make. Unless
`seed` is given (reproducible research), it is drawn with `secrets` on the first run and kept in
`state_dir/seed` (readable by the organizer only), so that a resumed referee replays its attacks.

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
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from arena.ground.client import ArenaClient, split_name
from protos import arena_v1_pb2 as pb

# The strongest attack measured, with the whole budget (docs/benchmarks.md, "The referee's
# attacks": LIVIA with all 1000 queries beats LIVIA and CGBA with 500 each); without the
# organizer's surrogates, the strongest surrogate-free one (FALLBACK_ATTACKS).
DEFAULT_ATTACKS = ("livia",)
FALLBACK_ATTACKS = ("cgba",)
SPLITS = ("public", "private")


@dataclass(frozen=True)
class Evaluation:
    """One reference evaluation: an attack against a defense on a split."""
    defense: str
    split: str
    attack: str


@dataclass
class Referee:
    """The organizer's reference attacks. `surrogate`: the organizer's surrogate checkpoints (one
    path or a list, at least one adversarially trained, none of them a defender's): an attack
    that takes one (transfer-pgd) gets the first, one that takes several (livia, prior-cgba) all;
    without any, those attacks are left out, with a note."""

    attacks: Sequence[str] = DEFAULT_ATTACKS
    surrogate: Path | Sequence[Path] | None = None
    budget: int | None = None             # per attack; None: the arena's full budget B
    seed: int | None = None               # None: the organizer's secret seed (state_dir/seed)
    state_dir: Path = Path("referee-state")
    splits: Sequence[str] = SPLITS
    log: Callable[[str], None] = print
    done: list[tuple[Evaluation, float | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from attackers.registry import surrogate_parameter

        given = self.surrogate
        self.surrogates = [] if given is None else [Path(given)] if isinstance(given, (str, Path)) else list(given)
        self.names = list(self.attacks)       # the attacks it runs
        for name in [n for n in self.names if surrogate_parameter(n) and not self.surrogates]:
            self.log(f"referee: no --surrogate given: {name} is left out")
            self.names.remove(name)
        if not self.names and self.attacks:
            self.names = list(FALLBACK_ATTACKS)
            self.log(f"referee: running {', '.join(self.names)} instead (needs no surrogate)")

    def _surrogates_for(self, attack: str):
        from attackers.registry import surrogate_parameter

        kind = surrogate_parameter(attack)
        return None if kind is None else self.surrogates[0] if kind == "surrogate" else self.surrogates

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
        seed = self.seed if self.seed is not None else secret_seed(self.state_dir)
        for ev in todo:
            attack = make_attack(ev.attack, seed=seed, surrogate=self._surrogates_for(ev.attack))
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

SEED_FILE = "seed"


def secret_seed(state_dir: Path) -> int:
    """The referee's secret seed: drawn once with `secrets`, then read back from `state_dir/seed`
    (created readable by its owner only; never printed or sent)."""
    path = Path(state_dir) / SEED_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return int(path.read_text().strip())
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{secrets.randbits(63)}\n")
    return int(path.read_text().strip())
