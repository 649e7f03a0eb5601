"""The timer store: due timers in a per-workspace sorted set, claimed with a lease.

Members are `kind|contact|arg` (kinds: offer, stage, wrap, expire, pref; cbdue and
cbmiss for callbacks, `router/routing/lua/lib/85_callbacks.lua`; sla and followup),
score = due time in ms from Redis TIME. A replica claims due timers with a
lease in one script, applies each effect with the routing `fire` script
(which also acknowledges it), and a timer whose owner died is claimed again by
another replica once its lease runs out. Effects check the contact's state,
so a timer fired twice changes nothing the second time.

A replica claims a workspace when its next timer is due, not on every poll:
the claim script returns the earliest due time (and the earliest lease that
runs out), and the worker sleeps until then, at most `IDLE_MAX`. A timer added
earlier than that wakes the workers at once: the script that adds it publishes
`<tag>|t` on `router:notify` (`router/store/notify.py` calls `wake`), so an
idle replica sends Redis nothing but this, and a busy one claims each
workspace at most once per `poll`.

On shutdown a replica stops claiming, lets the round in progress finish and
hands back every lease it still holds (also those of a claim whose reply it
never read), so the other replicas fire them at once rather than after the
lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from router.runtime.aio import cancel_requested, worker_name
from router.store.failures import store_unavailable
from router.store.keys import WsKeys
from router.store.shards import Shards
from router.store.workspaces import Workspaces

log = logging.getLogger(__name__)

CLAIM_BATCH = 500
RETRY_AFTER = 0.5  # seconds before a workspace whose claim failed is claimed again
LEASE_MS = 5_000  # default; ROUTER_TIMER_LEASE
# Seconds a stopping worker waits for its round in progress (claims and fires
# in flight) before cancelling it; what is left is handed back.
STOP_GRACE = 2.0
# Seconds a stopping worker keeps trying to hand its leases back while Redis
# fails (a dropped link, a failover); after that they run out and re-fire.
HANDBACK_RETRY = 5.0
# Timers applied per fire call: they share one script prelude and round trip,
# while each call stays short enough not to hold Redis up (a few ms).
FIRE_BATCH = 32

# Longest sleep between claims of an idle workspace: covers a wake-up lost
# while the notification subscription was down.
IDLE_MAX = 5.0

# Applies and acknowledges (member, due ms) timers; raises when it could not.
Fire = Callable[[WsKeys, list[tuple[str, int]]], Awaitable[object]]


class TimerWorker:
    def __init__(
        self,
        shards: Shards,
        claim: Any,
        handback: Any,
        fire: Fire,
        poll: float = 0.02,
        on_fired: Callable[[int], None] | None = None,
        lease_ms: int = LEASE_MS,
        workspaces: Workspaces | None = None,
        idle_max: float = IDLE_MAX,
    ) -> None:
        self._on_fired = on_fired  # lag ms of each fired timer (metrics)
        self._shards = shards
        self._claim = claim
        self._handback = handback
        self._fire = fire
        self._poll = poll
        self._lease_ms = lease_ms
        self.owner = worker_name()
        self.fired = 0
        self.late = 0
        self._claims = 0  # claim ids: the same id on a retried call returns the same timers
        # Per workspace, the id of a claim whose reply never came (a timeout, a
        # dropped connection): the next claim there reuses it, so timers the lost
        # call leased come back now instead of after the lease.
        self._unanswered: dict[str, int] = {}
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._workspaces = workspaces or Workspaces(shards)
        self._idle_max = idle_max
        # Per workspace, the monotonic time of its next claim (absent: claim now).
        self._next: dict[str, float] = {}
        self._woken = asyncio.Event()
        self.claims = 0  # claim calls sent (tests and the idle-cost benchmark read it)
        self.claims_by_ws: Counter[str] = Counter()  # the same, per workspace

    def wake(self, ws_name: str | None = None) -> None:
        """A timer was added (or, with no name, anything may have been missed):
        claim that workspace, or every one, at the next round."""
        if ws_name is None:
            self._next.clear()
        else:
            self._workspaces.add(ws_name)  # a workspace this replica has not seen yet
            self._next.pop(ws_name, None)
        self._woken.set()

    async def claim_once(self, ws: WsKeys) -> int:
        claim_id = self._unanswered.get(ws.name)
        if claim_id is None:
            self._claims += 1
            claim_id = self._unanswered[ws.name] = self._claims
        self.claims += 1
        self.claims_by_ws[ws.name] += 1
        res = await self._claim(
            keys=[ws.timers, ws.timer_leases, ws.timer_lease_info, ws.timer_claims],
            args=[CLAIM_BATCH, self._lease_ms, self.owner, claim_id],
            client=self._shards.of(ws.tag),
        )
        del self._unanswered[ws.name]
        now = int(res[0])
        members = res[2::3]
        self._schedule(ws.name, now, int(res[1]), len(members))
        if not members:
            return 0
        timers = list(zip(members, (int(d) for d in res[3::3]), strict=True))
        chunks = [timers[i : i + FIRE_BATCH] for i in range(0, len(timers), FIRE_BATCH)]
        results = await asyncio.gather(
            *(self._fire(ws, chunk) for chunk in chunks), return_exceptions=True
        )
        failed: list[str] = []
        for chunk, r in zip(chunks, results, strict=True):
            if isinstance(r, BaseException):
                log.warning("timer effects failed (%s)", type(r).__name__)
                if store_unavailable(r):  # the link or a failover, not the timer itself
                    failed += (m for m, _ in chunk)
                continue
            for _, due in chunk:
                self.fired += 1
                if now - due > 250:
                    self.late += 1
                if self._on_fired is not None:
                    self._on_fired(now - due)
        if failed:
            # Lost on the way to or from Redis: fired again at the next poll
            # rather than after the lease (a fire that did go through left no
            # lease, so this skips it). If Redis is still failing, the leases run
            # out and another replica re-fires. Other errors (a script error)
            # wait for the lease, so a timer that cannot fire is not retried hot.
            with contextlib.suppress(Exception):
                await self._handback(
                    keys=[ws.timers, ws.timer_leases, ws.timer_lease_info],
                    args=[self.owner, *failed],
                    client=self._shards.of(ws.tag),
                )
            self.wake(ws.name)
        return len(members)

    def _schedule(self, name: str, now_ms: int, next_ms: int, claimed: int) -> None:
        """When to claim `name` again: at once while there is a backlog, else
        when its next timer (or lease) is due, at most `idle_max` from now."""
        if claimed >= CLAIM_BATCH:
            self._next[name] = 0.0
            return
        wait = self._idle_max if next_ms < 0 else min(self._idle_max, (next_ms - now_ms) / 1000)
        self._next[name] = time.monotonic() + max(0.0, wait)

    async def run(self) -> None:
        """Claims every workspace when its timers are due, until stopped or cancelled."""
        self._task = asyncio.current_task()
        while not cancel_requested() and not self._stopping:
            self._woken.clear()
            try:
                names = await self._workspaces.names()
            except Exception as exc:
                log.warning("listing workspaces failed (%s)", type(exc).__name__)
                names = self._workspaces.known()
            for name in names:
                if self._next.get(name, 0.0) <= time.monotonic():
                    try:
                        await self.claim_once(WsKeys(name))
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # that workspace's shard: the others go on
                        self._shards.suspect(exc)
                        log.warning("timer claim failed (%s)", type(exc).__name__)
                        self._next[name] = time.monotonic() + RETRY_AFTER
            await asyncio.sleep(self._poll)  # a busy workspace: at most one claim per poll
            soonest = min(self._next.values(), default=time.monotonic() + self._idle_max)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), max(0.0, soonest - time.monotonic()))

    async def stop(self, grace: float = STOP_GRACE, retry_for: float = HANDBACK_RETRY) -> int:
        """Stops claiming; the round in progress may finish within `grace` seconds
        (its fires acknowledge what it claimed), then every lease still held is
        handed back, retried for `retry_for` seconds. Returns how many were."""
        self._stopping = True
        task = self._task
        if task is not None and not task.done():
            _, pending = await asyncio.wait({task}, timeout=grace)
            if pending:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        deadline = time.monotonic() + retry_for
        while True:
            try:
                return await self.hand_back()
            except Exception as exc:
                if time.monotonic() >= deadline:
                    raise
                log.warning("handing back timer leases failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(0.25)

    async def hand_back(self) -> int:
        """Returns every lease this worker holds, unacknowledged ones it knows of
        and any it lost track of, so another replica fires them now."""
        n = 0
        self._workspaces.invalidate()  # hand back in every workspace, new ones too
        for name in await self._workspaces.names():
            ws = WsKeys(name)
            n += int(
                await self._handback(
                    keys=[ws.timers, ws.timer_leases, ws.timer_lease_info],
                    args=[self.owner],
                    client=self._shards.of(ws.tag),
                )
            )
        return n
