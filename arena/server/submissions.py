"""The submissions room: a defense's upload, its validation (docs/rules.md section 3), the
verdict recorded, the phase check and the caps; and how a defense is shown to a caller."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time

import numpy as np

from arena.ground.contract import DefenseStatus
from arena.server import sandbox, validation
from arena.server.calls import DefenseUpload, DefenseView
from arena.server.errors import AlreadyExists, BadRequest, Busy, FailedPrecondition, NotFound, OverCap, Rejected
from arena.server.store import FINAL, OPEN, ORGANIZER, PRIVATE, PUBLIC, CapReached, DefenseRow, PhaseClosed, StoreError

log = logging.getLogger("arena.core")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DESCRIPTION_MAX = 1000
VALIDATION_NICE = 10                  # validations yield the cores to serving


class Submissions:
    """SubmitDefense, ListDefenses, GetDefense. At most one validation per team and per name at a time."""

    def __init__(self, arena) -> None:
        self.arena = arena   # arena.server.core.Arena: the state the rooms share
        self.validating_teams: set[str] = set()
        self._submitting: set[str] = set()

    def view(self, row: DefenseRow, role: str = "team") -> DefenseView:
        evaluation = self.arena.evaluation
        public, private = (evaluation.split_slice(s) for s in (PUBLIC, PRIVATE))
        correct = np.asarray(row.clean_correct, dtype=bool)
        # the private part is measured after acceptance (rules v3): until then it is shown as 0
        accepted = row.status == DefenseStatus.ACCEPTED and correct.size >= public.stop
        measured = accepted and correct.size == evaluation.num_samples
        show_private = measured and (self.arena.phase == FINAL or role == ORGANIZER) and private.stop > private.start
        return DefenseView(
            name=row.name, team=row.team, accepted=row.status == DefenseStatus.ACCEPTED,
            description=row.description, sha256=row.sha256, size_bytes=row.size_bytes,
            num_classes=row.num_classes,
            clean_accuracy=(float(correct[public].mean()) if accepted and public.stop > public.start
                            else 0.0 if accepted and not show_private and private.stop > private.start
                            else row.clean_accuracy),   # the whole set's figure would tell the private split's
            clean_accuracy_private=float(correct[private].mean()) if show_private else 0.0,
            rejection_reasons=tuple(row.rejection_reasons), submitted_at=row.submitted_at,
            disqualified_reason=row.disqualified_reason, serving_mode=row.serving_mode,
        )

    async def list(self) -> list[DefenseRow]:
        return await self.arena.io(self.arena.store.list_defenses)

    async def get(self, name: str) -> DefenseRow:
        row = await self.arena.io(self.arena.store.get_defense, name)
        if row is None:
            raise NotFound(f"name: no defense {name!r}")
        return row

    async def submit(self, team: str, upload: DefenseUpload, role: str = "team") -> DefenseRow:
        """Returns the accepted defense; raises Rejected with every failed rule when rejected
        (the rejection is recorded and visible in ListDefenses), OverCap at a cap."""
        arena, name = self.arena, upload.name
        if not NAME_PATTERN.match(name):
            raise BadRequest(f"metadata.name: {name!r} must be 1-64 characters of [A-Za-z0-9_.-]")
        if len(upload.description) > DESCRIPTION_MAX:
            raise BadRequest(f"metadata.description: {len(upload.description)} characters, at most {DESCRIPTION_MAX}")
        arena.sync()
        if arena.phase != OPEN:
            raise FailedPrecondition("submissions are closed: the competition is in its final phase")
        existing = await arena.io(arena.store.get_defense, name)
        if existing is not None and (existing.status == DefenseStatus.ACCEPTED or existing.team != team):
            raise AlreadyExists(f"metadata.name: a defense named {name!r} already exists")
        if name in self._submitting:
            raise AlreadyExists(f"metadata.name: a defense named {name!r} is being validated right now")
        if team in self.validating_teams:
            raise Busy(f"team {team!r} already has a submission being validated; submit again once it is done")
        capped = role != ORGANIZER
        if capped:
            await self._check_defense_cap(team)
        self._submitting.add(name)
        self.validating_teams.add(team)
        day, counted = utc_day(), False
        try:
            counted = capped and await self._count_submission(team, day)
            row = await self._receive_and_validate(team, upload, capped)
            counted = False   # a verdict: the submission stays counted
            return row
        except (Rejected, OverCap):
            counted = False   # rejected (recorded), or validated and then over the cap: counts
            raise
        finally:
            self._submitting.discard(name)
            self.validating_teams.discard(team)
            if counted:       # no verdict (bad stream, shutdown): not a submission
                await arena.io(arena.store.return_submission, team, day)

    async def _check_defense_cap(self, team: str) -> None:
        cap = self.arena.config.max_defenses_per_team
        if cap and sum(1 for d in await self.arena.io(self.arena.store.list_defenses) if d.team == team
                       and d.status == DefenseStatus.ACCEPTED and not d.disqualified_reason) >= cap:
            raise OverCap(_defense_cap_message(team, cap))

    async def _count_submission(self, team: str, day: str) -> bool:
        cap = self.arena.config.max_submissions_per_day
        if not cap:
            return False
        if not await self.arena.io(self.arena.store.take_submission, team, day, cap):
            raise OverCap(f"cap: team {team!r} has made {cap} submissions on {day} (UTC), the most a team may "
                          "make in a day (`arena serve --max-submissions-per-day`); rejected ones count. "
                          "Submit again after midnight UTC")
        return True

    async def _receive(self, chunks_in) -> tuple[bytes | None, int]:
        """(the upload's bytes, its size); None once it exceeds the size limit."""
        limit = self.arena.config.max_upload_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in chunks_in:
            size += len(chunk)
            if size > limit:
                return None, size
            chunks.append(chunk)
        return b"".join(chunks), size

    async def _receive_and_validate(self, team: str, upload: DefenseUpload, capped: bool = True) -> DefenseRow:
        arena, config, name, description = self.arena, self.arena.config, upload.name, upload.description
        limit = config.max_upload_bytes
        data, size = await self._receive(upload.chunks)
        now = time.time()
        if data is None:
            reasons = [f"file: the upload exceeds the size limit of {limit} bytes"]
            await arena.io(arena.store.put_defense, _rejected(name, team, description, "", size, reasons, now))
            raise Rejected(_rejection_message(name, reasons))
        digest = hashlib.sha256(data).hexdigest()
        # rules v3: validation sees the public split only; the private one is measured after acceptance
        public = arena.evaluation.split_slice(PUBLIC)
        public_x, public_y = arena.evaluation.images[public], arena.evaluation.labels[public]
        limits = validation.Limits(max_bytes=limit, latency_ms=config.latency_ms,
                                   max_chunk=config.max_chunk, threads=arena.threads)
        loop = asyncio.get_running_loop()
        if config.isolate:
            limits_in_child = sandbox.ValidationLimits(
                config.validation_timeout_s,
                sandbox.ChildLimits(config.validation_memory_mb, arena.threads, nice=VALIDATION_NICE))
            result = await loop.run_in_executor(
                arena.validation_pool, arena.metrics.timed_validation(sandbox.validate_in_child), name, data,
                public_x, public_y, limits, limits_in_child, arena.children)
        else:
            result = await loop.run_in_executor(
                arena.validation_pool, arena.metrics.timed_validation(validation.validate), name, data,
                public_x, public_y, limits)
        if result.details:   # runtime text: the operator's, never the team's
            log.warning("defense %s (team %s) validation details: %s", name, team, " | ".join(result.details))
        if not result.accepted:
            row = _rejected(name, team, description, digest, len(data), result.reasons, now)
            await arena.io(arena.store.put_defense, row)
            raise Rejected(_rejection_message(name, result.reasons))
        await arena.io(arena.store.blobs.put, data)
        row = DefenseRow(
            name=name, team=team, status=DefenseStatus.ACCEPTED, description=description, sha256=digest,
            size_bytes=len(data), num_classes=result.num_classes, clean_accuracy=result.clean_accuracy,
            clean_correct=result.clean_correct, rejection_reasons=(), serving_mode=result.serving_mode,
            submitted_at=now,
        )
        cap = config.max_defenses_per_team if capped else 0
        try:
            await arena.io(arena.store.put_defense, row, True, cap or None)
        except PhaseClosed as error:   # the final phase began while it was validated
            raise FailedPrecondition(str(error)) from None
        except CapReached:             # another replica accepted one of the team's meanwhile
            raise OverCap(_defense_cap_message(team, cap)) from None
        except StoreError as error:
            raise AlreadyExists(f"metadata.name: {error}") from None
        if result.model is not None:
            arena.registry.add(result.model)
        elif config.isolate:  # start its worker now, not on the first Predict
            warm = loop.run_in_executor(arena.io_pool, arena.sessions.get, name)
            warm.add_done_callback(lambda f: f.cancelled() or f.exception())
        log.info("defense %s accepted (team %s, clean accuracy %.3f on the public split, %s)", name, team, row.clean_accuracy,
                 row.serving_mode)
        arena.private.measure_later(name)
        return row


def _rejected(name, team, description, digest, size, reasons, now) -> DefenseRow:
    return DefenseRow(name=name, team=team, status=DefenseStatus.REJECTED, description=description, sha256=digest,
                      size_bytes=size, num_classes=0, clean_accuracy=0.0,
                      clean_correct=np.zeros(0, dtype=np.bool_), rejection_reasons=tuple(reasons),
                      serving_mode="", submitted_at=now)


def utc_day() -> str:
    """Today in UTC ("YYYY-MM-DD"): the day the cap on submissions counts in."""
    return time.strftime("%Y-%m-%d", time.gmtime())


def _defense_cap_message(team: str, cap: int) -> str:
    return (f"cap: team {team!r} already has {cap} accepted defenses, the most a team may have "
            "(`arena serve --max-defenses-per-team`)")


def _rejection_message(name: str, reasons: list[str]) -> str:
    return f"defense {name!r} rejected ({len(reasons)} failed rule{'s' if len(reasons) != 1 else ''}): " + "; ".join(reasons)
