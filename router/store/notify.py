"""Fan-out of agent notifications from Redis pub/sub to local waiters.

Scripts publish `<tag>|a|<agent>` on the workspace's sharded channel
`<tag>:notify` (SPUBLISH) whenever an agent's offers or state change, followed
by a line feed and the agent's view as the call left it (JSON: the agent's
pairs, then each offered contact's); every replica hands it to the long-polls
and WebSockets it holds for that agent, which push it without reading the agent
again. Only the latest view waits for a listener: views that arrive while a push
is under way coalesce into one. A listener woken without a view (after a
resubscription, or by a publisher that sent none) reads the agent itself.
`<tag>|t` says a timer was added earlier than the workspace's next one: the
replica's timer worker claims it in time (`on_timers`, with the workspace's
name; with None after a resubscription, when anything may have been missed).
On shutdown every waiter is woken (and new ones return at once), so
long-polls answer before the server stops instead of being cut.

A replica subscribes to the channel of every workspace it knows, on the
primary that holds the workspace: on a cluster a notification then travels to
the replicas subscribed on that one shard instead of being broadcast to every
node, as a classic channel is. A workspace new to the process (`Workspaces.added`)
is subscribed to as soon as it is known; a lost connection or a moved slot
subscribes everything again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator

from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from router.runtime.aio import cancel_requested
from router.store.keys import WsKeys
from router.store.shards import Shards
from router.store.workspaces import Workspaces

log = logging.getLogger(__name__)


class Listener:
    """One desktop's wake-up: `event` is set on every notification for its
    agent; `view` holds the latest view that came with one (None: read it)."""

    __slots__ = ("event", "view")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.view: str | None = None

    def take(self) -> str | None:
        """The view to push now (None: read the agent), clearing the wake-up."""
        self.event.clear()
        view, self.view = self.view, None
        return view

    def wake(self, view: str | None) -> None:
        self.view = view
        self.event.set()


class Notifier:
    def __init__(
        self,
        shards: Shards,
        workspaces: Workspaces,
        on_timers: Callable[[str | None], None] | None = None,
    ) -> None:
        self._shards = shards
        self._workspaces = workspaces
        self.on_timers = on_timers
        self._waiters: defaultdict[str, set[Listener]] = defaultdict(set)
        self.closing = False

    @staticmethod
    def topic(ws: str, agent_id: str) -> str:
        return WsKeys(ws).tag + "|a|" + agent_id

    @contextlib.contextmanager
    def listen(self, ws: str, agent_id: str) -> Iterator[Listener]:
        ev = Listener()
        if self.closing:
            ev.wake(None)
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
                ev.wake(None)
        if self.on_timers is not None:
            self.on_timers(None)

    def _wake(self, data: str) -> None:
        key, _, view = data.partition("\n")
        if key.endswith("|t"):
            if self.on_timers is not None and key.startswith("{ws:"):
                self.on_timers(key[4:-3])  # `{ws:<name>}|t`
            return
        for ev in self._waiters.get(key, ()):
            ev.wake(view or None)

    async def run(self) -> None:
        """Runs until cancelled, resubscribing after a Redis outage."""
        while not cancel_requested():
            listeners: dict[int, tuple[PubSub, set[str]]] = {}
            tasks: set[asyncio.Task[None]] = set()
            try:
                names = await self._workspaces.names()
                self._workspaces.added.clear()
                await self._subscribe(names, listeners, tasks)
                # Pub/sub delivers at most once: whatever was published while
                # this replica was not subscribed is lost, so every waiter
                # re-reads its state now.
                self._wake_all()
                while True:
                    added = asyncio.ensure_future(self._workspaces.added.wait())
                    done, _ = await asyncio.wait(
                        {added, *tasks}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if added not in done:
                        added.cancel()
                        for task in done:
                            task.result()  # a listener failed: resubscribe all
                        raise ConnectionError("a notification listener stopped")
                    self._workspaces.added.clear()
                    await self._subscribe(self._workspaces.known(), listeners, tasks)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._shards.suspect(exc)
                log.warning("notification stream lost (%s); retrying", type(exc).__name__)
                await asyncio.sleep(0.5)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                for pubsub, _ in listeners.values():
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _subscribe(
        self,
        names: list[str],
        listeners: dict[int, tuple[PubSub, set[str]]],
        tasks: set[asyncio.Task[None]],
    ) -> None:
        """Subscribes to the channels of `names` not subscribed yet, one
        connection per primary that holds them."""
        todo: dict[int, tuple[Redis, list[str]]] = {}
        for name in names:
            client = self._shards.of(WsKeys(name).tag)
            channel = WsKeys(name).notify
            known = listeners.get(id(client))
            if known is None or channel not in known[1]:
                todo.setdefault(id(client), (client, []))[1].append(channel)
        for key, (client, channels) in todo.items():
            if key not in listeners:
                pubsub = client.pubsub()
                listeners[key] = (pubsub, set())
                await pubsub.ssubscribe(*channels)
                tasks.add(asyncio.create_task(self._listen(pubsub), name="notify-listener"))
            else:
                await listeners[key][0].ssubscribe(*channels)
            listeners[key][1].update(channels)

    async def _listen(self, pubsub: PubSub) -> None:
        """Hands each notification to its waiters. With hiredis' parser (always
        present) messages are taken straight from its reader: redis-py's
        `listen()` passes each through several coroutines and builds a dict per
        message, for ~3 messages a contact on every replica. Subscription
        confirmations are skipped alike; an error reply or a lost connection
        ends the listener, and `run` subscribes everything again."""
        conn = pubsub.connection
        parser = getattr(conn, "_parser", None)
        reader = getattr(parser, "_reader", None)
        if not isinstance(parser, _AsyncHiredisParser) or reader is None:
            async for msg in pubsub.listen():
                if msg.get("type") == "smessage":
                    self._wake(msg["data"])
            return
        while True:
            reply = reader.gets()
            if reply is NOT_ENOUGH_DATA:
                await parser.read_from_socket()  # type: ignore[no-untyped-call]
            elif isinstance(reply, Exception):
                raise reply
            elif isinstance(reply, list) and len(reply) == 3 and reply[0] == "smessage":
                self._wake(reply[2])
