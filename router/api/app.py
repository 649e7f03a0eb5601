"""The aiohttp application: state, middlewares, background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import msgspec
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.audit.sealer import make_sealer
from router.auth import AUTH, Authenticator, authorize
from router.engine import Engine
from router.errors import Forbidden, NotFound, RouterError, Unauthorized, Unavailable
from router.metrics import Metrics, StateExporter
from router.notify import Notifier
from router.pauses import PauseMeter
from router.redisclient import make_client
from router.serving import DRAIN, Drain, drain_middleware
from router.settings import Settings, Token
from sla.timers import TimerWorker
from sla.webhooks import Webhook, WebhookDispatcher

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", Engine)
NOTIFIER = web.AppKey("notifier", Notifier)
TIMERS = web.AppKey("timers", TimerWorker)
REDIS = web.AppKey("redis", Redis)
METRICS = web.AppKey("metrics", Metrics)
EXPORTER = web.AppKey("exporter", StateExporter)
TOKEN = web.RequestKey("token", Token)  # the caller, set by auth

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_ENC = msgspec.json.Encoder()
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/metrics"})


def problem(status: int, title: str, detail: str, slug: str, **extra: object) -> web.Response:
    body: dict[str, object] = {
        "type": f"https://contact-router.dev/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {"Retry-After": "1"} if status == 503 else None
    return web.Response(
        status=status,
        body=_ENC.encode(body),
        content_type="application/problem+json",
        headers=headers,
    )


def error_response(exc: RouterError) -> web.Response:
    return problem(exc.status, exc.title, exc.detail, exc.slug, **exc.extra())


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RouterError as exc:
        return error_response(exc)
    except (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError) as exc:
        log.warning("redis unavailable: %s", type(exc).__name__)
        request.app[METRICS].redis_errors.labels("http").inc()
        return error_response(Unavailable("the state store is unreachable; retry shortly"))
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].max_body  # also ends chunked bodies (no Content-Length)
        detail = f"the request body is over the limit of {limit} bytes (ROUTER_MAX_BODY)"
        return problem(413, "Payload too large", detail, "too-large", limit=limit)
    except web.HTTPException as exc:
        if exc.status >= 400:
            response = problem(exc.status, exc.reason, exc.text or exc.reason, "http")
            if "Allow" in exc.headers:  # a 405 must list the methods (RFC 9110)
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        raise
    except Exception:
        log.exception("unhandled error on %s", request.match_info.route.resource)
        return problem(500, "Internal error", "an internal error occurred", "internal")


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Labelled by route template, never the raw path (bounded cardinality).
    info = request.match_info.route.resource
    route = info.canonical if info is not None else "unmatched"
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        request.app[METRICS].http.labels(request.method, route, str(status)).observe(
            time.perf_counter() - start
        )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.handler
    if request.path in OPEN_PATHS or getattr(route, "open_access", False):
        return await handler(request)
    auth = request.app[AUTH]
    token: Token | None = None
    try:
        token = auth.identify(request.headers.get("Authorization", ""))
        request[TOKEN] = token
        if request.match_info.http_exception is None:  # unknown route: its 404 / 405
            authorize(token, route, request.match_info.get("ws"))
        return await handler(request)
    except (Unauthorized, Forbidden) as exc:  # from here or a handler's scope check
        auth.denied(request.app.get(REDIS), request, token, exc)
        raise


def actor(request: web.Request) -> str:
    tok: Token = request[TOKEN]
    return f"{tok.role}:{tok.name}"


async def _background(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    client = make_client(settings.redis_url, settings.redis_timeout)
    metrics = app[METRICS]
    engine = Engine(client, observe=metrics.decision)
    notifier = Notifier(client)

    timers = TimerWorker(
        client,
        engine.scripts["claim"],
        engine.scripts["handback"],
        engine.fire_timers,
        poll=settings.timer_poll,
        on_fired=metrics.observe_timer,
        lease_ms=round(settings.timer_lease * 1000),
    )

    async def subscriptions(ws: str) -> Mapping[str, Webhook]:
        try:
            return (await engine.configs.get(ws)).config.webhooks
        except NotFound:  # a workspace without a config yet has no webhooks
            return {}

    webhooks = WebhookDispatcher(client, subscriptions, claim_idle=settings.webhook_claim_idle)
    metrics.state.webhooks = webhooks
    exporter = StateExporter(client, engine.configs, metrics.state, settings.metrics_group)
    app[REDIS], app[ENGINE], app[NOTIFIER], app[TIMERS] = client, engine, notifier, timers
    app[EXPORTER] = exporter
    sealer = make_sealer(client, metrics.registry, settings)  # audit trail (router/audit/)
    try:
        await engine.scripts.load_all(client)
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        # Start anyway: /readyz answers 503 and loads them once Redis answers.
        log.warning("loading scripts failed (%s); /readyz will retry", type(exc).__name__)
    tasks = [
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
    await engine.close()
    await client.aclose()


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
    from router.api.ratelimit import ratelimit_middleware
    from router.api.routes import setup_routes

    app = web.Application(
        middlewares=[
            metrics_middleware,
            errors_middleware,
            drain_middleware,  # requests in flight, for the drain on shutdown
            auth_middleware,
            ratelimit_middleware(settings),  # after auth: limits the caller's token
        ],
        client_max_size=settings.max_body,
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[DRAIN] = Drain()
    app[AUTH] = Authenticator(settings, app[METRICS].registry)
    app.cleanup_ctx.append(_background)
    app.cleanup_ctx.append(_auth_background)  # torn down first: drains before Redis closes
    app.on_shutdown.append(_release_metrics_lease)
    app.on_shutdown.append(_hand_over)
    setup_routes(app)
    return app
