"""The timer store: due timers in a per-workspace sorted set, claimed with a lease.

Members are `kind|contact|arg` (kinds: offer, stage, wrap, expire, pref),
score = due time in ms from Redis TIME. A replica claims due timers with a
lease in one script, applies each effect with the routing `fire` script
(which also acknowledges it), and a timer whose owner died is claimed again by
another replica once its lease runs out. Effects check the contact's state,
so a timer fired twice changes nothing the second time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

from redis.asyncio import Redis

from router.aio import cancel_requested
from router.keys import WORKSPACES, WsKeys

log = logging.getLogger(__name__)

CLAIM_BATCH = 500
LEASE_MS = 5_000
# Timers applied per fire call: they share one script prelude and round trip,
# while each call stays short enough not to hold Redis up (a few ms).
FIRE_BATCH = 32

# Applies and acknowledges (member, due ms) timers; raises when it could not.
Fire = Callable[[WsKeys, list[tuple[str, int]]], Awaitable[object]]


class TimerWorker:
    def __init__(
        self,
        client: Redis,
        claim: Any,
        handback: Any,
        fire: Fire,
        poll: float = 0.02,
        on_fired: Callable[[int], None] | None = None,
    ) -> None:
        self._on_fired = on_fired  # lag ms of each fired timer (metrics)
        self._client = client
        self._claim = claim
        self._handback = handback
        self._fire = fire
        self._poll = poll
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.fired = 0
        self.late = 0
        self._held: dict[str, set[str]] = {}
        self._claims = 0  # claim ids: the same id on a retried call returns the same timers

    async def claim_once(self, ws: WsKeys) -> int:
        self._claims += 1
        res = await self._claim(
            keys=[ws.timers, ws.timer_leases, ws.timer_lease_info, ws.timer_claims],
            args=[CLAIM_BATCH, LEASE_MS, self.owner, self._claims],
        )
        now = int(res[0])
        members = res[2::3]
        if not members:
            return 0
        held = self._held.setdefault(ws.name, set())
        held.update(members)
        timers = list(zip(members, (int(d) for d in res[3::3]), strict=True))
        chunks = [timers[i : i + FIRE_BATCH] for i in range(0, len(timers), FIRE_BATCH)]
        results = await asyncio.gather(
            *(self._fire(ws, chunk) for chunk in chunks), return_exceptions=True
        )
        for chunk, r in zip(chunks, results, strict=True):
            if isinstance(r, BaseException):
                log.warning(
                    "timer effects failed (%s); their leases will expire and re-fire",
                    type(r).__name__,
                )
                continue
            for m, due in chunk:
                held.discard(m)
                self.fired += 1
                if now - due > 250:
                    self.late += 1
                if self._on_fired is not None:
                    self._on_fired(now - due)
        return len(members)

    async def run(self) -> None:
        """Polls every workspace until cancelled."""
        while not cancel_requested():
            busy = False
            try:
                for name in cast(set[str], await self._client.smembers(WORKSPACES)):
                    n = await self.claim_once(WsKeys(name))
                    busy = busy or n >= CLAIM_BATCH
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("timer poll failed (%s)", type(exc).__name__)
                await asyncio.sleep(0.5)
            if not busy:
                await asyncio.sleep(self._poll)

    async def hand_back(self) -> int:
        """Returns unacknowledged leases so another replica fires them now."""
        n = 0
        for name, members in self._held.items():
            if members:
                ws = WsKeys(name)
                n += int(
                    await self._handback(
                        keys=[ws.timers, ws.timer_leases, ws.timer_lease_info],
                        args=[self.owner, *members],
                    )
                )
        self._held.clear()
        return n
