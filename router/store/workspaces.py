"""The names of the workspaces, read from Redis rarely and shared in the process.

Every background job of a replica (timers, the config watcher, webhook
dispatch, audit sealing, the metrics export) walks every workspace. Reading
`router:workspaces` on each round made an idle replica read it dozens of times
a second. Now one `Workspaces` per process holds the list: it is read again
when it is older than `max_age`, and a workspace the process learns of (its
config was written, a config notification named it) is added at once.
Workspaces are never removed while the service runs, so a list that is a
little old only lacks the newest ones, which the next read or notification
brings in. `added` is set whenever a name is new to the process (the notifier
subscribes to its channel then).
"""

from __future__ import annotations

import asyncio
import time
from typing import cast

from router.store.keys import WORKSPACES
from router.store.shards import Shards

MAX_AGE = 10.0  # seconds a read of the list is used before it is read again


class Workspaces:
    def __init__(self, shards: Shards, max_age: float = MAX_AGE) -> None:
        self._shards = shards
        self._max_age = max_age
        self._names: set[str] = set()
        self._read_at = float("-inf")
        self.reads = 0  # SMEMBERS sent (the idle-cost benchmark reads it)
        self.added = asyncio.Event()  # a name new to the process; cleared by its reader

    def add(self, name: str) -> None:
        if name not in self._names:
            self._names.add(name)
            self.added.set()

    async def register(self, name: str) -> None:
        """Lists a workspace in Redis (before its config is first written)."""
        await self._shards.of(WORKSPACES).sadd(WORKSPACES, name)
        self.add(name)

    def known(self) -> list[str]:
        """The names known now, without reading Redis."""
        return sorted(self._names)

    def invalidate(self) -> None:
        """The next `names()` reads Redis (e.g. after a lost subscription)."""
        self._read_at = float("-inf")

    async def names(self) -> list[str]:
        if time.monotonic() - self._read_at >= self._max_age:
            read = cast(set[str], await self._shards.of(WORKSPACES).smembers(WORKSPACES))
            self._read_at = time.monotonic()
            if read - self._names:
                self._names |= read
                self.added.set()
            self.reads += 1
        return sorted(self._names)
