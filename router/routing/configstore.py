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

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from router.routing.config import CONFIG_DECODER, RoutingConfig, StoredConfig
from router.runtime.aio import cancel_requested
from router.runtime.errors import NotFound
from router.store.keys import WsKeys
from router.store.workspaces import Workspaces

log = logging.getLogger(__name__)
REFRESH_SECONDS = 10.0
RETRY_SECONDS = 0.5


class ConfigStore:
    def __init__(self, client: Redis, workspaces: Workspaces | None = None) -> None:
        self._client = client
        self.workspaces = workspaces or Workspaces(client)
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
        raw = cast(dict[str, str], await self._client.hgetall(WsKeys(ws).config))
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
        names = await self.workspaces.names()
        pipe = self._client.pipeline(transaction=False)
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
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe("router:config")
                self.workspaces.invalidate()
                await self.refresh_all()  # what was published while unsubscribed
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep watching; Redis may come back
                log.warning("config watch failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(RETRY_SECONDS)
            finally:
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
