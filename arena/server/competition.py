"""The competition room: its phase and budget as a caller sees them, and the organizer's actions
(docs/rules.md sections 4, 8), each recorded with its reason."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from arena.server.auth import TEAM_PATTERN, create_token
from arena.server.calls import CompetitionInfo
from arena.server.errors import AlreadyExists, BadRequest, NotFound
from arena.server.store import FINAL, OPEN, PRIVATE, PUBLIC, ROLES, Action, NameTaken

log = logging.getLogger("arena.core")

REASON_MAX = 1000


class Competition:
    """GetCompetition and the AdminService's actions."""

    def __init__(self, arena) -> None:
        self.arena = arena   # arena.server.core.Arena: the state the rooms share

    def info(self, team: str, role: str) -> CompetitionInfo:
        arena = self.arena
        arena.sync()
        return CompetitionInfo(
            phase=arena.phase, budget_per_sample=arena.budget,
            public_samples=arena.evaluation.split_size(PUBLIC), private_samples=arena.evaluation.split_size(PRIVATE),
            team=team, role=role, private_split_source=arena.evaluation.private_source, demo=arena.evaluation.demo)

    @staticmethod
    def _action(organizer: str, action: str, target: str, reason: str) -> Action:
        reason = " ".join(reason.split())
        if not reason:
            raise BadRequest("reason: required (every organizer action is recorded with its reason)")
        if len(reason) > REASON_MAX:
            raise BadRequest(f"reason: at most {REASON_MAX} characters")
        return Action(time.time(), organizer, action, target, reason)

    async def set_phase(self, organizer: str, phase: str, reason: str) -> None:
        """Open -> final closes submissions (atomically with any racing submission: see the store)
        and points new runs at the private split. Final -> open is allowed (a mistaken switch)."""
        if phase not in (OPEN, FINAL):
            raise BadRequest("phase: must be PHASE_OPEN or PHASE_FINAL")
        action = self._action(organizer, "set_phase", phase, reason)
        await self.arena.io(self.arena.store.set_phase, phase, action)
        self.arena.phase = phase
        log.info("phase set to %s by %s: %s", phase, organizer, action.reason)

    async def set_budget(self, organizer: str, budget: int, reason: str) -> None:
        if not 1 <= budget <= 1_000_000:
            raise BadRequest(f"budget_per_sample: must be in [1, 1000000], got {budget}")
        action = self._action(organizer, "set_budget", str(budget), reason)
        await self.arena.io(self.arena.store.set_budget, budget, action)
        self.arena.budget = int(budget)

    async def create_token(self, organizer: str, team: str, role: str, reason: str) -> str:
        if not TEAM_PATTERN.match(team):
            raise BadRequest(f"team: {team!r} must be 1-64 characters of [A-Za-z0-9_.-]")
        if role not in ROLES:
            raise BadRequest("role: must be ROLE_TEAM or ROLE_ORGANIZER")
        action = self._action(organizer, "create_token", f"{team} ({role})", reason)
        try:
            return await self.arena.io(lambda: create_token(self.arena.store, team, role=role, action=action))
        except NameTaken as error:
            raise AlreadyExists(f"team: {error}") from None

    async def revoke_tokens(self, organizer: str, team: str, reason: str) -> int:
        if not TEAM_PATTERN.match(team):
            raise BadRequest(f"team: {team!r} must be 1-64 characters of [A-Za-z0-9_.-]")
        action = self._action(organizer, "revoke_tokens", team, reason)
        return await self.arena.io(self.arena.store.revoke_tokens, team, action)

    async def disqualify(self, organizer: str, kind: str, name: str, reason: str) -> None:
        action = self._action(organizer, f"disqualify_{kind}", name, reason)
        if not await self.arena.io(self.arena.store.disqualify, kind, name, action.reason, action):
            raise NotFound(f"{'defense' if kind == 'defense' else 'run_id'}: no {kind} {name!r}")
        state = self.arena.runs.loaded(name) if kind == "run" else None
        if state is not None:
            state.row = replace(state.row, disqualified_reason=action.reason)

    async def actions(self) -> list[Action]:
        return await self.arena.io(self.arena.store.actions)
