"""Per-replica cache of workspace configs, kept fresh across replicas.

A config change is published on `router:config` (`<tag>|<version>`); the
watcher reloads that workspace when the version is newer than the one it
holds. Pub/sub delivers at most once, so after (re)subscribing, and every
`REFRESH_SECONDS` in case a message was dropped, it compares every
workspace's version in one pipeline. An idle replica thus reads the versions
a few times a minute instead of every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import cast

from redis.asyncio.client import PubSub

from router.routing.config import CONFIG_DECODER, RoutingConfig, StoredConfig
from router.runtime.aio import cancel_requested
from router.runtime.errors import NotFound
from router.store.keys import CONFIG_CHANNEL, WORKSPACES, WsKeys
from router.store.shards import Shards
from router.store.workspaces import Workspaces

log = logging.getLogger(__name__)
REFRESH_SECONDS = 10.0
RETRY_SECONDS = 0.5


class ConfigStore:
    def __init__(self, shards: Shards, workspaces: Workspaces | None = None) -> None:
        self._shards = shards
        self.workspaces = workspaces or Workspaces(shards)
        self._cache: dict[str, StoredConfig] = {}
        self.on_change: list[asyncio.Queue[tuple[str, RoutingConfig]]] = []

    def cached(self, ws: str) -> StoredConfig | None:
        return self._cache.get(ws)

    async def get(self, ws: str) -> StoredConfig:
        stored = self._cache.get(ws)
        if stored is None:
            stored = await self._load(ws)
            if stored is None:
                raise NotFound(f"workspace {ws!r} does not exist", field="ws")
        return stored

    async def _load(self, ws: str) -> StoredConfig | None:
        keys = WsKeys(ws)
        raw = cast(dict[str, str], await self._shards.of(keys.tag).hgetall(keys.config))
        if not raw:
            return None
        stored = StoredConfig(
            version=int(raw["version"]),
            updated_at=int(raw["updated_at"]) / 1000,
            actor=raw["actor"],
            config=CONFIG_DECODER.decode(raw["doc"]),
        )
        self.remember(ws, stored)
        return stored

    def remember(self, ws: str, stored: StoredConfig) -> None:
        old = self._cache.get(ws)
        if old is None or stored.version > old.version:
            self._cache[ws] = stored

    async def refresh_all(self) -> None:
        by_shard: dict[int, list[str]] = {}
        clients = {}
        for ws in await self.workspaces.names():
            client = self._shards.of(WsKeys(ws).tag)
            clients[id(client)] = client
            by_shard.setdefault(id(client), []).append(ws)
        for key, names in by_shard.items():  # one pipeline per primary
            pipe = clients[key].pipeline(transaction=False)
            for ws in names:
                pipe.hget(WsKeys(ws).config, "version")
            for ws, version in zip(names, await pipe.execute(), strict=True):
                await self._reload_if_newer(ws, version)

    async def _reload_if_newer(self, ws: str, version: str | int | None) -> None:
        old = self._cache.get(ws)
        if version is not None and (old is None or int(version) > old.version):
            await self._load(ws)

    async def _on_message(self, data: str) -> None:
        """`<tag>|<version>` of a config just written (`config_put.lua`)."""
        tag, _, version = data.rpartition("|")
        if tag.startswith("{ws:") and tag.endswith("}") and version.isdigit():
            ws = tag[4:-1]
            self.workspaces.add(ws)
            await self._reload_if_newer(ws, int(version))

    async def watch(self) -> None:
        """Runs until cancelled: reloads on notifications, compares every version
        after subscribing and every `REFRESH_SECONDS`, resubscribes after an outage."""
        while not cancel_requested():
            pubsub: PubSub | None = None
            try:
                # a classic channel: any node of a cluster delivers it
                pubsub = self._shards.of(WORKSPACES).pubsub()
                await pubsub.subscribe(CONFIG_CHANNEL)
                self.workspaces.invalidate()
                await self.refresh_all()  # what was published while unsubscribed
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep watching; Redis may come back
                self._shards.suspect(exc)
                log.warning("config watch failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(RETRY_SECONDS)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _listen(self, pubsub: PubSub) -> None:
        refreshed = time.monotonic()
        while not cancel_requested():
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=REFRESH_SECONDS)
            if msg is not None and msg.get("type") == "message":
                await self._on_message(str(msg["data"]))
            if time.monotonic() - refreshed >= REFRESH_SECONDS:
                await self.refresh_all()
                refreshed = time.monotonic()
