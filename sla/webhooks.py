"""Webhook dispatch: every workspace event posted to the subscriptions that select it.

(What waits between attempts is `sla/webhook_store.py`; one POST is
`sla/webhook_sender.py`.)

Any number of replicas run a `WebhookDispatcher` side by side:

- New events are read from the workspace stream with one consumer group
  (`webhooks`) shared by every replica, so each entry goes to one replica.
- Each entry is posted (signed, see `sla.signing`) to every matching
  subscription; what fails is put in a per-workspace retry sorted set (score =
  next attempt ms, exponential backoff with full jitter) in the same script
  that acknowledges the entry, so a crash between the two loses nothing.
- Due retries are claimed with a lease (the member is pushed into the future);
  a replica that dies holding one leaves it to be claimed again. After
  `max_age` a delivery goes to a dead-letter list; `replay_dead_letters` puts
  dead letters back.
- Entries read by a replica that died are taken over with XAUTOCLAIM once idle.

Delivery is at least once: a replica that is slower than the claim idle time
or the lease, or stops mid-request, can cause a second send. Receivers dedupe
on `webhook-id` (`<stream id>.<subscription>`), the same on every attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any

import aiohttp
import msgspec
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from router.runtime.aio import cancel_requested, worker_name
from router.store.keys import WsKeys
from router.store.shards import Shards
from router.store.workspaces import Workspaces
from sla.signing import Webhook, matches
from sla.webhook_sender import post_event
from sla.webhook_store import (
    DELIVERY,
    GROUP,
    WebhookKeys,
    backoff_ms,
    create_group,
    script,
)

log = logging.getLogger(__name__)
_EVENT = msgspec.json.Decoder(dict[str, Any])

Subscriptions = Callable[[str], Awaitable[Mapping[str, Webhook]]]
WorkspaceNames = Callable[[], Awaitable[Iterable[str]]]


class WebhookDispatcher:
    """Delivers workspace events to webhooks; run one per replica.

    `subscriptions(ws)` returns the current subscriptions of a workspace by name
    (the routing config). The backoff, idle and lease times are parameters so
    tests can shorten them; `max_age` (seconds), when given, replaces every
    subscription's own max age, for tests only (`Webhook` rejects less than an hour).
    """

    def __init__(
        self,
        shards: Shards,
        subscriptions: Subscriptions,
        *,
        workspaces: WorkspaceNames | None = None,
        consumer: str | None = None,
        concurrency: int = 64,
        poll: float = 0.2,
        claim_idle: float = 60.0,
        lease: float = 60.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 600.0,
        max_age: float | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._shards = shards
        self._subscriptions = subscriptions
        self._workspaces = workspaces or Workspaces(shards).names
        self.consumer = consumer or worker_name()
        self._sem = asyncio.Semaphore(concurrency)
        # Entries and retries in progress at once; reading stops above this so
        # that nothing waits long enough for its claim or lease to run out.
        self._max_inflight = concurrency
        self._poll = poll
        self._claim_idle_ms = int(claim_idle * 1000)
        self._lease_ms = int(lease * 1000)
        self._backoff = (backoff_base, backoff_cap)
        self._max_age_ms = None if max_age is None else int(max_age * 1000)
        self._session = session
        self._own_session = session is None
        self._settle = script("webhook_settle")
        self._claim = script("webhook_claim")
        self._groups: set[str] = set()
        self._next_autoclaim: dict[str, float] = {}
        self._autoclaim_from: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # What this replica holds, to hand back on stop: (ws, stream id) entries
        # and (ws, member) retries.
        self._held_entries: set[tuple[str, str]] = set()
        self._held_retries: set[tuple[str, str]] = set()
        self._stop = asyncio.Event()
        self._freed = asyncio.Event()  # set whenever a delivery finishes
        self._runner: asyncio.Task[None] | None = None
        # Counters for later export as metrics.
        self.delivered = 0  # attempts answered 2xx
        self.failed = 0  # attempts that failed (non-2xx, timeout, connection error)
        self.retried = 0  # retries scheduled
        self.dead = 0  # deliveries moved to the dead letters
        self.dropped = 0  # retries dropped because their subscription was removed

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_inflight),
                # Receivers' cookies must not make one delivery depend on another.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        self._runner = asyncio.create_task(self.run(), name="webhook-dispatcher")

    async def stop(self, grace: float = 10.0) -> None:
        """Stops reading, lets in-flight deliveries finish for `grace` seconds,
        then cancels the rest and hands them back so another replica sends them now."""
        self._stop.set()
        if self._runner is not None:
            # On a timeout wait_for cancels it; the runner itself holds nothing.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._runner, self._poll + 5)
            self._runner = None
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._hand_back()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self) -> None:
        """Polls every workspace until stopped or cancelled."""
        while not self._stop.is_set() and not cancel_requested():
            busy = False
            try:
                for ws in list(await self._workspaces()):
                    busy = await self.poll(ws) or busy
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhook poll failed (%s)", type(exc).__name__)
            self._freed.clear()
            if len(self._tasks) >= self._max_inflight:
                # Every slot taken: read more as soon as one frees, not a poll later
                # (a fixed pause here would cap delivery at slots per poll interval).
                wake: Awaitable[object] = self._freed.wait()
            elif busy:
                continue
            else:
                wake = self._stop.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake, self._poll)

    async def poll(self, ws: str) -> bool:
        """Starts deliveries for new entries, idle entries of dead replicas and due
        retries of one workspace; True when there was more than room for."""
        try:
            subs = await self._subscriptions(ws)
            # A workspace that never had a webhook gets no group (nor stream) from
            # us; one that had keeps being read, so removing and re-adding a
            # webhook does not deliver the events in between.
            if not subs and ws not in self._groups:
                return False
            keys = WebhookKeys(ws)
            if ws not in self._groups:
                await create_group(self._of(ws), ws)
                self._groups.add(ws)
            room = self._max_inflight - len(self._tasks)
            if room <= 0:
                return False
            entries = await self._read(keys, room)
            for sid, fields in entries:
                if (ws, sid) in self._held_entries:
                    continue  # our own slow delivery, idle long enough for XAUTOCLAIM
                self._held_entries.add((ws, sid))
                self._spawn(self._deliver_entry(keys, sid, fields, subs))
            due: list[str] = []
            if room > len(entries):
                due = await self._claim(
                    keys=[keys.retry],
                    args=[room - len(entries), self._lease_ms],
                    client=self._of(ws),
                )
                for member in due:
                    self._held_retries.add((ws, member))
                    self._spawn(self._deliver_retry(keys, member))
        except asyncio.CancelledError:
            raise
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream was deleted: make the group again
                self._groups.discard(ws)
            log.warning("webhook poll of workspace %s failed (%s)", ws, exc)
            return False
        except Exception as exc:
            self._shards.suspect(exc)
            log.warning("webhook poll of workspace %s failed (%s)", ws, type(exc).__name__)
            return False
        return len(entries) + len(due) >= room

    def _of(self, ws: str) -> Redis:
        return self._shards.of(WsKeys(ws).tag)

    async def _read(self, keys: WebhookKeys, count: int) -> list[tuple[str, Any]]:
        client = self._of(keys.ws)
        res: Any = await client.xreadgroup(GROUP, self.consumer, {keys.events: ">"}, count=count)
        entries: list[tuple[str, Any]] = list(res[0][1]) if res else []
        now = time.monotonic()
        if len(entries) < count and now >= self._next_autoclaim.get(keys.ws, 0.0):
            # Entries another replica read and never acknowledged (it died).
            self._next_autoclaim[keys.ws] = now + self._claim_idle_ms / 4000
            claimed: Any = await client.xautoclaim(
                keys.events, GROUP, self.consumer, self._claim_idle_ms,
                self._autoclaim_from.get(keys.ws, "0-0"), count=count - len(entries),
            )  # fmt: skip
            # XAUTOCLAIM scans a bounded part of the pending list per call: go on
            # from where it stopped next time, back to the start once through.
            self._autoclaim_from[keys.ws] = claimed[0]
            entries.extend((sid, fields) for sid, fields in claimed[1] if sid is not None)
        return entries

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._freed.set()

    async def _deliver_entry(
        self, keys: WebhookKeys, sid: str, fields: Any, subs: Mapping[str, Webhook]
    ) -> None:
        failures: list[Any] = []
        try:
            raw = fields.get("e") if isinstance(fields, dict) else None
            if not isinstance(raw, str):
                log.warning("webhook: stream entry %s of %s has no event; skipped", sid, keys.ws)
            else:
                event = _EVENT.decode(raw)
                etype = str(event.get("type", ""))
                targets = [name for name, wh in subs.items() if matches(wh.events, etype)]
                errors = await asyncio.gather(
                    *(self._send(keys.ws, sid, name, subs[name], event) for name in targets)
                )
                for name, error in zip(targets, errors, strict=True):
                    if error is not None:
                        failures += self._failure(subs[name], 1, "", sid, name, raw, error)
            await self._settle_and_count(keys, sid, "", failures)
        except msgspec.DecodeError:
            log.warning("webhook: stream entry %s of %s is not JSON; skipped", sid, keys.ws)
            await self._settle_and_count(keys, sid, "", [])
        except Exception as exc:
            # Left pending in the group: XAUTOCLAIM sends it again after the idle time.
            log.warning(
                "webhook delivery of %s in %s failed (%s)", sid, keys.ws, type(exc).__name__
            )
        finally:
            if not cancel_requested():
                self._held_entries.discard((keys.ws, sid))

    async def _deliver_retry(self, keys: WebhookKeys, member: str) -> None:
        try:
            d = DELIVERY.decode(member)
            wh = (await self._subscriptions(keys.ws)).get(d.sub)
            failures: list[Any] = []
            if wh is None:
                log.warning("webhook %s of %s was removed; its retry is dropped", d.sub, keys.ws)
                self.dropped += 1
            else:
                error = await self._send(keys.ws, d.id, d.sub, wh, _EVENT.decode(d.e))
                if error is not None:
                    failures = self._failure(wh, d.n + 1, str(d.first), d.id, d.sub, d.e, error)
            await self._settle_and_count(keys, "", member, failures)
        except msgspec.DecodeError:
            log.warning("webhook: unreadable retry in %s removed", keys.ws)
            await self._settle_and_count(keys, "", member, [])
        except Exception as exc:
            # Its lease runs out and it is claimed again.
            log.warning("webhook retry in %s failed (%s)", keys.ws, type(exc).__name__)
        finally:
            if not cancel_requested():
                self._held_retries.discard((keys.ws, member))

    def _failure(
        self, wh: Webhook, attempts: int, first: str, sid: str, sub: str, raw: str, error: str
    ) -> list[Any]:
        """The settle script's arguments for one failed delivery."""
        max_age_ms = self._max_age_ms if self._max_age_ms is not None else wh.max_age * 1000
        delay = backoff_ms(attempts, *self._backoff)
        return [delay, max_age_ms, first, attempts, sid, sub, raw, error]

    async def _settle_and_count(
        self, keys: WebhookKeys, sid: str, member: str, failures: list[Any]
    ) -> None:
        res = await self._settle(
            keys=[keys.events, keys.retry, keys.dead],
            args=[GROUP, sid, member, *failures],
            client=self._of(keys.ws),
        )
        self.retried += int(res[1])
        self.dead += int(res[2])
        if int(res[2]):
            log.warning("webhook deliveries of %s moved to dead letters: %d", keys.ws, res[2])

    async def _send(
        self, ws: str, sid: str, sub: str, wh: Webhook, event: Mapping[str, Any]
    ) -> str | None:
        """One signed POST; None when answered 2xx, else a short reason (no URL or secret)."""
        session = self._session
        assert session is not None, "start() creates the HTTP session"
        status, reason = await post_event(session, self._sem, ws, sid, sub, wh, event)
        if 200 <= status < 300:
            self.delivered += 1
            return None
        self.failed += 1
        log.info("webhook %s of %s: attempt failed (%s)", sub, ws, reason)
        return reason

    async def _hand_back(self) -> None:
        """Makes what this replica holds claimable by others at once."""
        entries: dict[str, list[Any]] = {}
        for ws, sid in self._held_entries:
            entries.setdefault(ws, []).append(sid)
        try:
            for ws, sids in entries.items():
                # XCLAIM to ourselves with a long idle time: the next XAUTOCLAIM
                # of any replica takes them instead of waiting for the idle time.
                await self._of(ws).xclaim(
                    WsKeys(ws).events, GROUP, self.consumer, 0, sids,
                    idle=self._claim_idle_ms * 10, justid=True,
                )  # fmt: skip
            for ws, member in self._held_retries:
                await self._of(ws).zadd(WebhookKeys(ws).retry, {member: 0}, xx=True)
        except Exception as exc:
            # Not lost: claims and leases still run out, only later.
            log.warning("webhook hand-back failed (%s)", type(exc).__name__)
        self._held_entries.clear()
        self._held_retries.clear()
