"""Probes and scrapes: /healthz (process up), /readyz (Redis and scripts), /metrics."""

from __future__ import annotations

import contextlib
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from router.api.appkeys import ENGINE, EXPORTER, METRICS, SHARDS
from router.api.common import json_response

log = logging.getLogger(__name__)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; the Redis-state series only on the exporter replica."""
    m = request.app[METRICS]
    try:
        await request.app[EXPORTER].refresh()
        m.redis_up.set(1)
    except Exception as exc:  # a scrape still gets this replica's own metrics
        log.warning("metrics: reading the shared state failed (%s)", type(exc).__name__)
        m.redis_errors.labels("metrics").inc()
        m.redis_up.set(0)
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(_: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when every primary answers and holds the scripts (one server, or each
    primary of a cluster: a request may need any of them)."""
    shards = request.app[SHARDS]
    engine = request.app[ENGINE]
    try:
        primaries = shards.primaries()
        if not primaries:
            raise ConnectionError("no Redis Cluster primary known")
        missing = []
        for client in primaries:
            await client.ping()
            if not await engine.scripts.loaded(client):
                missing.append(client)
    except Exception as exc:
        shards.suspect(exc)
        return json_response({"status": "unavailable", "redis": False}, status=503)
    if missing:
        for client in missing:
            with contextlib.suppress(Exception):
                await engine.scripts.load_all(client)
        return json_response({"status": "loading", "redis": True, "scripts": False}, status=503)
    return json_response(
        {"status": "ready", "redis": True, "scripts": True, "primaries": len(primaries)}
    )
