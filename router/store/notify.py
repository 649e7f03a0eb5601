"""Fan-out of agent notifications from Redis pub/sub to local waiters.

Scripts publish `<tag>|a|<agent>` on `router:notify` whenever an agent's
offers or state change; every replica wakes the long-polls and WebSockets it
holds for that agent. `<tag>|t` says a timer was added earlier than the
workspace's next one: the replica's timer worker claims it in time
(`on_timers`, with the workspace's name; with None after a resubscription,
when anything may have been missed). On shutdown every waiter is woken (and new ones return
at once), so long-polls answer before the server stops instead of being cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator

from redis.asyncio import Redis

from router.runtime.aio import cancel_requested
from router.store.keys import NOTIFY_CHANNEL, WsKeys

log = logging.getLogger(__name__)


class Notifier:
    def __init__(
        self, client: Redis, on_timers: Callable[[str | None], None] | None = None
    ) -> None:
        self._client = client
        self.on_timers = on_timers
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self.closing = False

    @staticmethod
    def topic(ws: str, agent_id: str) -> str:
        return WsKeys(ws).tag + "|a|" + agent_id

    @contextlib.contextmanager
    def listen(self, ws: str, agent_id: str) -> Iterator[asyncio.Event]:
        ev = asyncio.Event()
        if self.closing:
            ev.set()
        key = self.topic(ws, agent_id)
        self._waiters[key].add(ev)
        try:
            yield ev
        finally:
            self._waiters[key].discard(ev)
            if not self._waiters[key]:
                del self._waiters[key]

    def close(self) -> None:
        """Wakes every waiter for good: the replica is draining its requests."""
        self.closing = True
        self._wake_all()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for ev in waiters:
                ev.set()
        if self.on_timers is not None:
            self.on_timers(None)

    def _wake(self, key: str) -> None:
        if key.endswith("|t"):
            if self.on_timers is not None and key.startswith("{ws:"):
                self.on_timers(key[4:-3])  # `{ws:<name>}|t`
            return
        for ev in self._waiters.get(key, ()):
            ev.set()

    async def run(self) -> None:
        """Runs until cancelled, resubscribing after a Redis outage."""
        while not cancel_requested():
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(NOTIFY_CHANNEL)
                # Pub/sub delivers at most once: whatever was published while
                # this replica was not subscribed is lost, so every waiter
                # re-reads its state now.
                self._wake_all()
                async for msg in pubsub.listen():
                    if msg.get("type") == "message":
                        self._wake(msg["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("notification stream lost (%s); retrying", type(exc).__name__)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
