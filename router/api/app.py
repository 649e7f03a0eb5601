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

from router.engine import Engine
from router.errors import Forbidden, NotFound, RouterError, Unauthorized, Unavailable
from router.keys import WsKeys
from router.metrics import Metrics, StateExporter
from router.notify import Notifier
from router.redisclient import make_client
from router.settings import Settings, Token, token_hash
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
        return problem(413, "Payload too large", "request body is too large", "too-large")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return problem(exc.status, exc.reason, exc.text or exc.reason, "http")
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


def _token(request: web.Request) -> Token | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        return None
    return request.app[SETTINGS].tokens.get(token_hash(value.strip()))


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in OPEN_PATHS or getattr(handler, "open_access", False):
        return await handler(request)
    token = _token(request)
    if token is None:
        raise Unauthorized("a valid bearer token is required")
    roles = getattr(handler, "roles", None)
    if roles is not None and token.role not in roles and token.role != "admin":
        raise Forbidden(f"role {token.role!r} may not do this; needs one of {sorted(roles)}")
    request[TOKEN] = token
    return await handler(request)


def actor(request: web.Request) -> str:
    tok: Token = request[TOKEN]
    return f"{tok.role}:{tok.name}"


async def _background(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    client = make_client(settings.redis_url, settings.redis_timeout)
    metrics = app[METRICS]
    engine = Engine(client, observe=metrics.decision)
    notifier = Notifier(client)

    async def fire(ws: WsKeys, timers: list[tuple[str, int]]) -> object:
        args: list[object] = []
        for member, due in timers:
            if member.startswith("followup|"):
                # Python effect, acknowledged after it: a crash in between re-fires
                # it, and the follow-up's id is derived from the timer (idempotent).
                await engine.sla.create_followup(ws.name, member)
                await engine.batcher.call(
                    engine.scripts["ack"], (ws.timer_leases, ws.timer_lease_info), [member]
                )
            else:
                args += (member, due)
        if not args:
            return None
        keys = (ws.runtime, ws.timer_leases, ws.timer_lease_info)
        return await engine.batcher.call(engine.scripts["fire"], keys, args)

    timers = TimerWorker(
        client,
        engine.scripts["claim"],
        engine.scripts["handback"],
        fire,
        poll=settings.timer_poll,
        on_fired=metrics.observe_timer,
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
    try:
        await engine.scripts.load_all(client)
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        # Start anyway: /readyz answers 503 and loads them once Redis answers.
        log.warning("loading scripts failed (%s); /readyz will retry", type(exc).__name__)
    tasks = [
        asyncio.create_task(notifier.run(), name="notifier"),
        asyncio.create_task(engine.configs.watch(), name="config-watch"),
        asyncio.create_task(timers.run(), name="timers"),
        asyncio.create_task(exporter.run(), name="metrics-lease"),
    ]
    await webhooks.start()
    yield
    # Stop in stages: stop claiming timers, hand back leases, then close.
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(Exception):
        await timers.hand_back()
    with contextlib.suppress(Exception):
        await webhooks.stop(grace=5.0)  # in-flight deliveries finish or are handed back
    await engine.close()
    await client.aclose()


async def _release_metrics_lease(app: web.Application) -> None:
    # First thing on shutdown, so another replica exports at its next scrape
    # rather than after the lease runs out.
    if EXPORTER in app:
        await app[EXPORTER].release()


def create_app(settings: Settings) -> web.Application:
    from router.api.routes import setup_routes

    app = web.Application(
        middlewares=[metrics_middleware, errors_middleware, auth_middleware],
        client_max_size=settings.max_body,
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_release_metrics_lease)
    setup_routes(app)
    return app
