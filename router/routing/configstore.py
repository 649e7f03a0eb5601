"""Per-replica cache of workspace configs, kept fresh across replicas.

A config change is published on `router:notify`; the watcher also re-reads
versions every second so a missed message never leaves a replica stale for
longer than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import cast

import msgspec
from redis.asyncio import Redis

from router.routing.config import CONFIG_DECODER, RoutingConfig, StoredConfig
from router.runtime.aio import cancel_requested
from router.runtime.errors import NotFound
from router.store.keys import WORKSPACES, WsKeys

log = logging.getLogger(__name__)
REFRESH_SECONDS = 1.0


class ConfigStore:
    def __init__(self, client: Redis) -> None:
        self._client = client
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
        names = cast(set[str], await self._client.smembers(WORKSPACES))
        for ws in names:
            version = await self._client.hget(WsKeys(ws).config, "version")
            old = self._cache.get(ws)
            if version is not None and (old is None or int(version) > old.version):
                await self._load(ws)

    async def watch(self) -> None:
        """Runs until cancelled: reloads on notifications and every second."""
        pubsub = self._client.pubsub()
        await pubsub.subscribe("router:config")
        try:
            while not cancel_requested():
                with contextlib.suppress(TimeoutError):
                    await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=REFRESH_SECONDS
                    )
                try:
                    await self.refresh_all()
                except (OSError, msgspec.DecodeError, ConnectionError) as exc:
                    log.warning("config refresh failed: %s", type(exc).__name__)
                except Exception as exc:  # keep watching; Redis may come back
                    log.warning("config refresh failed: %s", type(exc).__name__)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
