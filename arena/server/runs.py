"""The runs room: a run's start (its split and the team's shared budget, docs/rules.md section 4),
its lookup, its figures, its samples, its finish, and the list of runs."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import replace

import numpy as np

from arena.ground.contract import IMAGE_BYTES, DefenseStatus
from arena.server.calls import RunInfo, Samples
from arena.server.errors import BadRequest, FailedPrecondition, NotFound, PermissionDenied
from arena.server.ledger import Account, RunState, make_account
from arena.server.settings import MESSAGE_SLACK
from arena.server.store import OPEN, ORGANIZER, PRIVATE, PUBLIC, FinishRun, RunRow

ATTACK_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")
DEFAULT_PAGE_BYTES = 4 << 20          # GetRunSamples(limit=0) fits gRPC's default receive limit


class Runs:
    """StartRun, GetRun, GetRunSamples, FinishRun, ListRuns; the runs and budget accounts in memory."""

    def __init__(self, arena) -> None:
        self.arena = arena   # arena.server.core.Arena: the state the rooms share
        self._runs: dict[str, RunState] = {}
        self._accounts: dict[tuple[str, str, str], Account] = {}

    def loaded(self, run_id: str) -> RunState | None:
        """The run if this replica holds it in memory."""
        return self._runs.get(run_id)

    def split_for(self, role: str, requested: str | None) -> str:
        """The split a new run attacks: the current phase's, unless the organizer names another."""
        arena = self.arena
        arena.sync()
        current = PUBLIC if arena.phase == OPEN else PRIVATE
        if requested is None or requested == current:
            return current
        if role != ORGANIZER:
            raise PermissionDenied(f"split: runs attack the {current} split in the {arena.phase} phase; "
                                   f"only the organizer may attack the {requested} split now")
        return requested

    async def _account(self, team: str, defense: str, split: str) -> Account:
        key = (team, defense, split)
        account = self._accounts.get(key)
        if account is None:
            arena = self.arena
            used = await arena.io(arena.store.account_usage, team, defense, split, arena.evaluation.split_size(split))
            account = self._accounts.setdefault(key, make_account(arena.store, key, used, lambda: arena.budget))
        return account

    async def start(self, team: str, defense: str, attack: str, *, role: str = "team",
                    split: str | None = None, config_digest: str = "") -> RunState:
        arena = self.arena
        if not ATTACK_PATTERN.match(attack):
            raise BadRequest(f"attack: {attack!r} must be 1-64 characters of [A-Za-z0-9_.+-]")
        if config_digest and not re.fullmatch(r"[0-9a-f]{64}", config_digest):
            raise BadRequest("attack_config_digest: must be a sha256 in hex (64 characters of 0-9a-f)")
        row = await arena.io(arena.store.get_defense, defense)
        if row is None:
            raise NotFound(f"defense: no defense {defense!r}")
        if row.status != DefenseStatus.ACCEPTED:
            raise NotFound(f"defense: {defense!r} was rejected; nothing of it is served")
        if row.disqualified_reason:
            raise FailedPrecondition(f"defense: {defense!r} was disqualified ({row.disqualified_reason})")
        split = self.split_for(role, split)
        size = arena.evaluation.split_size(split)
        if size == 0:
            raise FailedPrecondition(f"split: the {split} split of this arena is empty")
        account = await self._account(team, defense, split)
        run = RunRow(run_id=uuid.uuid4().hex, team=team, defense=defense, attack=attack, num_samples=size,
                     budget=arena.budget, started_at=time.time(), finished_at=None, split=split,
                     attack_config_digest=config_digest)
        await arena.io(arena.store.create_run, run)
        state = RunState(run, account, np.zeros(size, np.int64), np.full(size, np.inf))
        if not state.shared:   # another replica may answer any id of a shared run: ask the store
            state.request_ids = set()
        self._runs[run.run_id] = state
        return state

    async def get(self, team: str, run_id: str, field: str = "run_id") -> RunState:
        """The caller's run; another team's run reads exactly like an unknown id (NOT_FOUND)."""
        state = self._runs.get(run_id)
        if state is None:
            if not run_id:
                raise BadRequest(f"{field}: required")
            io, store = self.arena.io, self.arena.store
            row = await io(store.get_run, run_id)
            if row is None or row.team != team:
                raise NotFound(f"{field}: no run {run_id!r} for team {team!r}")
            state = self._runs.get(run_id)  # loaded meanwhile?
            if state is None:
                account = await self._account(row.team, row.defense, row.split)
                spent = await io(store.usage, run_id, row.num_samples)
                best = await io(store.best_distances, run_id, row.num_samples)
                ids = None if row.finished else await io(store.request_ids, run_id)
                state = self._runs.get(run_id)
                if state is None:
                    state = self._runs[run_id] = RunState(row, account, spent, best)
                    state.request_ids = None if state.shared else ids
        if state.row.team != team:
            raise NotFound(f"{field}: no run {run_id!r} for team {team!r}")
        return state

    def _refresh(self, state: RunState) -> None:
        """A shared run's figures from the store: other replicas charge and finish it too."""
        store = self.arena.store
        state.row = store.get_run(state.row.run_id) or state.row
        team, defense, split = state.account.key
        used = store.account_usage(team, defense, split, state.num_samples)
        with state.lock:
            state.account.used = np.maximum(state.account.used, used)
            state.spent = store.usage(state.row.run_id, state.num_samples)
            state.best = np.minimum(state.best, store.best_distances(state.row.run_id, state.num_samples))
        state.finishing = state.finishing or state.row.finished

    async def current_info(self, state: RunState) -> RunInfo:
        """The run's info with a shared run's figures read from the store first (off the event loop)."""
        if state.shared:
            await self.arena.io(self._refresh, state)
        return self.info(state)

    @staticmethod
    def header(row: RunRow) -> RunInfo:
        """What a run's row alone says (ListRuns gives only this)."""
        return RunInfo(
            run_id=row.run_id, defense=row.defense, attack=row.attack, team=row.team,
            num_samples=row.num_samples, budget_per_sample=row.budget, finished=row.finished,
            started_at=row.started_at, split=row.split,
            attack_config_digest=row.attack_config_digest, disqualified_reason=row.disqualified_reason)

    def info(self, state: RunState) -> RunInfo:
        row, config = state.row, self.arena.config
        if state.num_classes is None:
            defense = self.arena.store.get_defense(row.defense)
            state.num_classes = defense.num_classes if defense else 0
        with state.lock:
            used = state.account.used.copy()
            spent = state.spent.copy()
        return replace(
            self.header(row), budget_per_sample=state.budget, max_batch=config.max_batch,
            max_message_bytes=config.max_message_bytes, num_classes=state.num_classes,
            queries_used=[int(v) for v in used], remaining=[int(v) for v in np.maximum(state.budget - used, 0)],
            run_queries=[int(v) for v in spent], best_distances=[float(v) for v in state.best])

    def samples(self, state: RunState, offset: int, limit: int) -> Samples:
        n, evaluation = state.num_samples, self.arena.evaluation
        if offset > n:
            raise BadRequest(f"offset: {offset} is past the end of the run's split ({n} samples)")
        fit_default = max(1, (DEFAULT_PAGE_BYTES - (64 << 10)) // IMAGE_BYTES)
        fit_max = max(1, (self.arena.config.max_message_bytes - MESSAGE_SLACK) // IMAGE_BYTES)
        count = fit_default if limit == 0 else min(limit, fit_max)
        base = evaluation.split_slice(state.row.split).start
        start, stop = base + offset, base + min(n, offset + count)
        return Samples(offset=offset, images=evaluation.images[start:stop], labels=evaluation.labels[start:stop])

    async def list(self, team: str, role: str) -> list[RunInfo]:
        rows = await self.arena.io(self.arena.store.list_runs)
        return [self.header(row) for row in rows if role == ORGANIZER or row.team == team]

    async def finish(self, state: RunState) -> RunState:
        """Refuses new queries at once, waits for those in flight, then records the end durably.
        Finishing a finished run returns it unchanged."""
        if state.row.finished:
            return state
        state.finishing = True
        await state.wait_idle()
        if state.row.finished:
            return state
        now = time.time()
        await self.arena.writer.commit([FinishRun(state.row.run_id, now)])
        state.row = replace(state.row, finished_at=now)
        state.request_ids = None   # replays of a finished run read the store
        return state
