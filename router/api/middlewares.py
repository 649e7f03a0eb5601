"""The middlewares every request passes, outermost first: metrics, errors, auth.

(The drain middleware is `router/runtime/serving.py`, the rate limit
`router/api/ratelimit.py`.)
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from router.api.appkeys import METRICS, SETTINGS, SHARDS, TOKEN, Handler
from router.api.common import error_response, problem
from router.runtime.errors import Forbidden, RouterError, Unauthorized, Unavailable
from router.runtime.settings import Token
from router.security.auth import AUTH, authorize
from router.store.failures import store_unavailable

log = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/metrics"})


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RouterError as exc:
        return error_response(exc)
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
    except Exception as exc:
        if store_unavailable(exc):  # e.g. a failover under way: transient
            log.warning("redis unavailable: %s", type(exc).__name__)
            request.app[METRICS].redis_errors.labels("http").inc()
            if SHARDS in request.app:  # a cluster's slot may have moved: read the map again
                request.app[SHARDS].suspect(exc)
            return error_response(Unavailable("the state store is unreachable; retry shortly"))
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
        auth.denied(request.app.get(SHARDS), request, token, exc)
        raise
