"""Per-team bounds on the work in flight on one defense (docs/rules.md section 5, rules v3).

One team must not starve a defense: its Predict and SubmitAdversarials requests on a defense may
hold at most `limit` images in flight together (queued in the batcher or running). A request that
would go past it waits for the team's earlier requests to be answered, at most `wait_s` seconds,
then is refused (RESOURCE_EXHAUSTED, nothing charged). A request larger than the limit runs when
the team has nothing else in flight there. Other teams never wait for this team's requests.

Runs on the event loop only: admission is a dict update when there is room (the hot path), a
future per waiting request otherwise.
"""

from __future__ import annotations

import asyncio
from collections import deque

from arena.server.errors import Busy


class TeamAdmission:
    def __init__(self, limit: int, wait_s: float) -> None:
        self.limit = int(limit)
        self.wait_s = float(wait_s)
        self._inflight: dict[tuple[str, str], int] = {}
        self._waiters: dict[tuple[str, str], deque[asyncio.Future]] = {}

    def _fits(self, key: tuple[str, str], n: int) -> bool:
        held = self._inflight.get(key, 0)
        return held == 0 or held + n <= self.limit

    async def enter(self, team: str, defense: str, n: int) -> None:
        """Admits n images of `team` on `defense`, waiting for room; raises Busy after `wait_s`."""
        key = (team, defense)
        if not self._fits(key, n):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.wait_s
            while not self._fits(key, n):
                left = deadline - loop.time()
                waiter = loop.create_future()
                self._waiters.setdefault(key, deque()).append(waiter)
                try:
                    await asyncio.wait_for(waiter, max(left, 0.0))
                except TimeoutError:
                    raise Busy(f"team {team!r} has {self._inflight.get(key, 0)} images in flight on defense "
                               f"{defense!r} (at most {self.limit} at once); this request of {n} waited "
                               f"{self.wait_s:g} s for room and was refused, nothing charged: send it again "
                               "once earlier requests are answered") from None
        self._inflight[key] = self._inflight.get(key, 0) + n

    def leave(self, team: str, defense: str, n: int) -> None:
        key = (team, defense)
        left = self._inflight.get(key, 0) - n
        if left > 0:
            self._inflight[key] = left
        else:
            self._inflight.pop(key, None)
        waiters = self._waiters.pop(key, None)
        while waiters:          # each re-checks for room, in arrival order
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def in_flight(self, team: str, defense: str) -> int:
        return self._inflight.get((team, defense), 0)


__all__ = ["TeamAdmission"]
