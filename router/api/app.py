"""The aiohttp application: state, middlewares, background tasks, stages of shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping

from aiohttp import web
from psycopg import AsyncConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.api.appkeys import (
    ENGINE,
    EXPORTER,
    HISTORY,
    METRICS,
    NOTIFIER,
    SETTINGS,
    SHARDS,
    TIMERS,
)
from router.api.middlewares import access_middleware, edge_middleware
from router.api.ratelimit import LIMITER, RateLimiter, limiter_context
from router.api.routes import setup_routes
from router.archive.events import EventArchiver
from router.archive.history import History
from router.archive.retention import ArchiveRetention
from router.archive.schema import SchemaError, migrate
from router.routing.engine import Engine
from router.runtime.errors import NotFound
from router.runtime.metrics import Metrics
from router.runtime.pauses import PauseMeter
from router.runtime.serving import DRAIN, Drain
from router.runtime.settings import Settings
from router.security.audit.sealer import make_sealer
from router.security.auth import AUTH, Authenticator
from router.store.client import make_shards
from router.store.notify import Notifier
from router.store.shards import Shards
from router.store.topology import parse
from router.store.workspaces import Workspaces
from router.wfm.exporter import StateExporter
from sla.signing import Webhook
from sla.timers import TimerWorker
from sla.webhooks import WebhookDispatcher

log = logging.getLogger(__name__)


async def _background(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    shards = make_shards(settings.redis_url, settings.redis_timeout)
    metrics = app[METRICS]
    engine = Engine(
        shards,
        observe=metrics.decision,
        wait_replicas=settings.redis_wait_replicas,
        wait_timeout=settings.redis_wait_timeout,
        versions_kept=settings.config_versions_kept,
    )
    workspaces = engine.configs.workspaces  # one cached list for every background job
    timers = TimerWorker(
        shards,
        engine.scripts["claim"],
        engine.scripts["handback"],
        engine.fire_timers,
        poll=settings.timer_poll,
        on_fired=metrics.observe_timer,
        lease_ms=round(settings.timer_lease * 1000),
        workspaces=workspaces,
    )
    notifier = Notifier(shards, workspaces, on_timers=timers.wake)

    async def subscriptions(ws: str) -> Mapping[str, Webhook]:
        try:
            return (await engine.configs.get(ws)).config.webhooks
        except NotFound:  # a workspace without a config yet has no webhooks
            return {}

    webhooks = WebhookDispatcher(
        shards,
        subscriptions,
        workspaces=workspaces.names,
        claim_idle=settings.webhook_claim_idle,
    )
    metrics.state.webhooks = webhooks
    exporter = StateExporter(shards, engine.configs, metrics.state, settings.metrics_group)
    app[SHARDS], app[ENGINE], app[NOTIFIER], app[TIMERS] = shards, engine, notifier, timers
    app[EXPORTER] = exporter
    if settings.archive_url:
        app[HISTORY] = History(settings.archive_url)
    sealer = make_sealer(shards, metrics.registry, settings, workspaces)  # the audit trail
    try:
        await shards.start()  # a cluster's slot map
        for client in shards.primaries():
            await engine.scripts.load_all(client)
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        # Start anyway: /readyz answers 503 and loads them once Redis answers.
        log.warning("loading scripts failed (%s); /readyz will retry", type(exc).__name__)
    tasks = [*_archive_tasks(settings, shards, workspaces, metrics)]
    tasks += [
        asyncio.create_task(PauseMeter(metrics.registry).run(), name="pause-meter"),
        asyncio.create_task(notifier.run(), name="notifier"),
        asyncio.create_task(engine.configs.watch(), name="config-watch"),
        asyncio.create_task(timers.run(), name="timers"),
        asyncio.create_task(exporter.run(), name="metrics-lease"),
        asyncio.create_task(sealer.run(), name="audit-sealer"),
    ]
    await webhooks.start()
    yield
    # Stop in stages: stop claiming timers, hand back leases, then close.
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(Exception):
        await sealer.release()  # another replica seals from now on, without waiting
    with contextlib.suppress(Exception):
        await timers.hand_back()
    with contextlib.suppress(Exception):
        await webhooks.stop(grace=5.0)  # in-flight deliveries finish or are handed back
    if HISTORY in app:
        await app[HISTORY].close()
    await engine.close()
    await shards.aclose()


def _archive_tasks(
    settings: Settings, shards: Shards, workspaces: Workspaces, metrics: Metrics
) -> list[asyncio.Task[None]]:
    """The history archive's writer, when ROUTER_ARCHIVE_URL names one: it
    brings the schema up to date, then copies events; routing never waits for it.
    Once the schema is there, retention drops old days (one replica at a time)."""
    url = settings.archive_url
    if not url:
        return []
    archiver = EventArchiver(
        shards, workspaces, url, metrics.registry, claim_idle=settings.archive_claim_idle
    )
    retention = ArchiveRetention(shards, workspaces, url, metrics.registry)
    migrated = asyncio.Event()

    async def run() -> None:
        while True:
            try:
                async with await AsyncConnection.connect(url, connect_timeout=10) as conn:
                    applied = await migrate(conn)
                if applied:
                    log.info("archive schema: applied %s", applied)
                break
            except SchemaError as exc:  # a newer database, or a changed file: not ours to fix
                log.error("history archive off: %s", exc)
                return
            except Exception as exc:  # PostgreSQL not there yet: routing goes on
                # the type and SQLSTATE only: a driver's message may quote the connection
                state = getattr(exc, "sqlstate", None) or "-"
                log.warning("archive schema check failed (%s, %s); retrying",
                            type(exc).__name__, state)  # fmt: skip
                await asyncio.sleep(5)
        migrated.set()
        await archiver.run()

    async def prune() -> None:
        await migrated.wait()
        await retention.run()

    return [
        asyncio.create_task(run(), name="archive-events"),
        asyncio.create_task(prune(), name="archive-retention"),
    ]


async def _auth_background(app: web.Application) -> AsyncIterator[None]:
    auth = app[AUTH]
    watcher = asyncio.create_task(auth.watch_file(), name="tokens-file")
    yield
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    await auth.drain()


async def _hand_over(app: web.Application) -> None:
    # On shutdown, once the listener is closed and before aiohttp waits for the
    # requests in flight: stop claiming timers and hand back the leases held, so
    # other replicas fire them now rather than when the leases run out; wake
    # every long-poll so it answers now rather than being cut when the drain
    # times out.
    if NOTIFIER in app:
        app[NOTIFIER].close()
    if TIMERS in app:
        try:
            n = await app[TIMERS].stop()
        except Exception as exc:  # Redis unreachable: the leases run out, others re-fire
            log.warning("handing back timer leases failed (%s)", type(exc).__name__)
        else:
            log.info("shutting down: %d timer lease(s) handed back", n)


async def _release_metrics_lease(app: web.Application) -> None:
    # First thing on shutdown, so another replica exports at its next scrape
    # rather than after the lease runs out.
    if EXPORTER in app:
        await app[EXPORTER].release()


def create_app(settings: Settings) -> web.Application:
    parse(settings.redis_url)  # a URL naming no topology stops the start (TopologyError)
    limiter = RateLimiter(settings.rate_limits, settings.rate_limit_overrides)
    app = web.Application(
        middlewares=[
            edge_middleware,  # latency, errors as problem+json, requests in flight
            access_middleware(limiter),  # the token, its role, its rate limit
        ],
        client_max_size=settings.max_body,
    )
    app[LIMITER] = limiter
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[DRAIN] = Drain()
    app[AUTH] = Authenticator(settings, app[METRICS].registry)
    app.cleanup_ctx.append(_background)
    app.cleanup_ctx.append(limiter_context)  # its last counts sent before Redis closes
    app.cleanup_ctx.append(_auth_background)  # torn down first: drains before Redis closes
    app.on_shutdown.append(_release_metrics_lease)
    app.on_shutdown.append(_hand_over)
    setup_routes(app)
    return app
