"""The two middlewares every request passes, outermost first.

`edge_middleware`: the request's latency by route template and status, every
error as problem+json, and the count of requests in flight for the drain on
shutdown (`router/runtime/serving.py`). `access_middleware`: the bearer token
and its role, then the token's rate limit (`router/api/ratelimit.py`).
Two layers rather than five: each layer is a coroutine and an await on every
request, and this is the hottest path the service has.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import Histogram

from router.api.appkeys import METRICS, SETTINGS, SHARDS, TOKEN, Handler
from router.api.common import error_response, problem
from router.api.ratelimit import RateLimiter, limited
from router.runtime.errors import Forbidden, RouterError, Unauthorized, Unavailable
from router.runtime.serving import DRAIN
from router.runtime.settings import Token
from router.security.auth import AUTH, authorize
from router.store.failures import store_unavailable

log = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/metrics"})
DRAINING = "this replica is shutting down; retry on another"
_MAX_CHILDREN = 4096  # (method, route, status) series cached; all of them in practice
_children: dict[tuple[int, str, str, int], Histogram] = {}


def _observe(request: web.Request, status: int, seconds: float) -> None:
    """Labelled by route template, never the raw path (bounded cardinality);
    the labelled series is looked up once, not on every request."""
    http = request.app[METRICS].http
    info = request.match_info.route.resource
    route = info.canonical if info is not None else "unmatched"
    key = (id(http), request.method, route, status)
    child = _children.get(key)
    if child is None:
        if len(_children) >= _MAX_CHILDREN:
            _children.clear()
        child = _children[key] = http.labels(request.method, route, str(status))
    child.observe(seconds)


def _error(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The problem+json answer for an exception a handler raised."""
    if isinstance(exc, RouterError):
        return error_response(exc)
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        limit = request.app[SETTINGS].max_body  # also ends chunked bodies (no Content-Length)
        detail = f"the request body is over the limit of {limit} bytes (ROUTER_MAX_BODY)"
        return problem(413, "Payload too large", detail, "too-large", limit=limit)
    if isinstance(exc, web.HTTPException):  # 4xx / 5xx: 3xx are re-raised before
        response = problem(exc.status, exc.reason, exc.text or exc.reason, "http")
        if "Allow" in exc.headers:  # a 405 must list the methods (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    if store_unavailable(exc):  # e.g. a failover under way: transient
        log.warning("redis unavailable: %s", type(exc).__name__)
        request.app[METRICS].redis_errors.labels("http").inc()
        if SHARDS in request.app:  # a cluster's slot may have moved: read the map again
            request.app[SHARDS].suspect(exc)
        return error_response(Unavailable("the state store is unreachable; retry shortly"))
    log.exception("unhandled error on %s", request.match_info.route.resource)
    return problem(500, "Internal error", "an internal error occurred", "internal")


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    status = 500
    drain = request.app[DRAIN]
    response: web.StreamResponse
    try:
        if drain.draining:  # arrived after the drain began, on a kept-alive connection
            response = error_response(Unavailable(DRAINING))
        else:
            drain.enter()
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:  # a redirect is an answer, not an error
                    status = exc.status
                    raise
                response = _error(request, exc)
            except Exception as exc:
                response = _error(request, exc)
            finally:
                drain.leave()
        status = response.status
        return response
    finally:
        _observe(request, status, time.perf_counter() - start)


def access_middleware(limiter: RateLimiter) -> Middleware:
    """The caller's token, its role checked against the route, then its rate
    limit: a refused request has changed nothing."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
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
            if limiter.enabled:
                return await limited(limiter, request, token, handler)
            return await handler(request)
        except (Unauthorized, Forbidden) as exc:  # from here or a handler's scope check
            auth.denied(request.app.get(SHARDS), request, token, exc)
            raise

    return middleware
