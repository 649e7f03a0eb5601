"""Per-token request rate limits, counted in Redis so that all replicas share them.

Strategy: fixed windows aligned to the clock, counted by the `limits` library's
Redis storage (its INCRBY + EXPIRE script). A request costs one EVALSHA, sent
through the engine's ScriptBatcher so the checks of concurrent requests share
one pipeline. Its reply, the window's count, gives RateLimit-Remaining, and
since windows are aligned the window's end (RateLimit-Reset, Retry-After) is
known without a second call (`limits`' own fixed-window limiter starts a window
at a token's first request and needs a TTL call to report it). A sliding
window counter would smooth the burst a fixed window allows around its end (up
to twice the limit across a boundary) at the price of two keys, a reply without
the count and a second call for the headers; these limits keep a runaway or
compromised client from swamping the service, where that burst is harmless.

The check runs after authentication and before the handler, so a refused
request has changed nothing. Redis unreachable: the check fails open (the
request goes on, counted in router_redis_errors_total{where="ratelimit"}).
The limiter protects capacity, not access (tokens are checked in memory
before it); with Redis down every stateful request answers 503 on its own, and
failing closed would only add refusals of requests the engine could serve when
one check call is lost. After a failed check the next ones are skipped for
SKIP_AFTER_FAILURE seconds, so a slow Redis does not cost every request a
second timeout before its own.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.storage.redis.redispy import RedispyBridge
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from router.api.appkeys import ENGINE, METRICS, SHARDS, TOKEN, Handler
from router.api.common import problem
from router.runtime.settings import Settings, Token
from router.store.scripts import Script

log = logging.getLogger(__name__)

# Under `router:*`, the key pattern the service's Redis ACL user is granted.
KEY_PREFIX = "router:rl"
WARN_EVERY = 10.0  # seconds between warnings while Redis cannot be reached
SKIP_AFTER_FAILURE = 1.0  # seconds without checks after a check failed
MAX_CACHED = 4096  # tokens whose key is kept ready


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: float  # seconds until the window ends
    window: int  # window length in seconds

    def headers(self) -> dict[str, str]:
        """IETF draft-ietf-httpapi-ratelimit-headers fields (delta seconds)."""
        reset = str(max(1, math.ceil(self.reset)))
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": reset,
            "RateLimit-Policy": f"{self.limit};w={self.window}",
        }
        if not self.allowed:
            out["Retry-After"] = reset
        return out


class RateLimiter:
    """Counts each token's requests per window; one Redis call per request."""

    def __init__(self, roles: Mapping[str, str], overrides: Mapping[str, str]) -> None:
        self._roles = {role: parse(spec) for role, spec in roles.items() if spec != "off"}
        # None: the token is exempt whatever its role's limit.
        self._names: dict[str, RateLimitItem | None] = {
            name: None if spec == "off" else parse(spec) for name, spec in overrides.items()
        }
        self.enabled = bool(self._roles) or any(self._names.values())
        self._script: Script | None = None
        self._prefix: Callable[[str], str] = str
        # token -> (its limit, its key without the window); bounded, since
        # identity-provider tokens bring an open set of names.
        self._keys: dict[Token, tuple[RateLimitItem, str] | None] = {}
        self._warned_at = -math.inf
        self._skip_until = -math.inf

    def item_for(self, token: Token) -> RateLimitItem | None:
        if token.name in self._names:
            return self._names[token.name]
        return self._roles.get(token.role)

    def _incr_script(self, app: web.Application) -> Script:
        script = self._script
        if script is None:
            # The limits storage on the service's own connection pool: same
            # address, TLS and ACL user, same timeouts; no second pool.
            # (only its script and key names are used: calls go through the batcher,
            # to the primary that holds each key)
            pool = app[SHARDS].of(KEY_PREFIX).connection_pool
            options: dict[str, Any] = {"connection_pool": pool}
            storage = RedisStorage(
                "async+redis://", implementation="redispy", key_prefix=KEY_PREFIX, **options
            )
            bridge = storage.bridge
            assert isinstance(bridge, RedispyBridge)
            # Annotated as a sync Script by limits, registered on an asyncio client.
            registered: object = bridge.lua_incr_expire
            assert isinstance(registered, AsyncScript)
            self._prefix = bridge.prefixed_key
            self._script = script = Script(_text(registered.script))
        return script

    async def hit(self, app: web.Application, token: Token) -> Decision | None:
        """Counts one request; None when the token has no limit or Redis failed."""
        script = self._incr_script(app)
        if token in self._keys:
            entry = self._keys[token]
        else:
            if len(self._keys) >= MAX_CACHED:
                self._keys.clear()
            limit = self.item_for(token)
            entry = None
            if limit is not None:
                entry = (limit, self._prefix(limit.key_for(token.role, token.name)))
            self._keys[token] = entry
        if entry is None:
            return None
        if time.monotonic() < self._skip_until:
            return None
        item, base = entry
        expiry = item.get_expiry()
        now = time.time()
        window = int(now // expiry)
        try:
            count = int(await app[ENGINE].batcher.call(script, [f"{base}/{window}"], [expiry, 1]))
        except (RedisError, OSError) as exc:
            app[METRICS].redis_errors.labels("ratelimit").inc()
            self._skip_until = time.monotonic() + SKIP_AFTER_FAILURE
            if now - self._warned_at >= WARN_EVERY:
                self._warned_at = now
                log.warning("rate limits not checked, Redis failed (%s)", type(exc).__name__)
            return None
        return Decision(
            allowed=count <= item.amount,
            limit=item.amount,
            remaining=max(0, item.amount - count),
            reset=(window + 1) * expiry - now,
            window=expiry,
        )


def _text(script: bytes | str | memoryview) -> str:
    return bytes(script).decode() if not isinstance(script, str) else script


def ratelimit_middleware(settings: Settings) -> Middleware:
    """Registered after auth: it limits the token auth accepted."""
    limiter = RateLimiter(settings.rate_limits, settings.rate_limit_overrides)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = request.get(TOKEN) if limiter.enabled else None  # open paths have none
        decision = None if token is None else await limiter.hit(request.app, token)
        if decision is None:
            return await handler(request)
        if not decision.allowed:
            response = problem(
                429,
                "Too many requests",
                f"this token may make {decision.limit} requests per {decision.window} s; "
                f"retry in {decision.headers()['Retry-After']} s",
                "rate-limited",
            )
            response.headers.update(decision.headers())
            return response
        answer = await handler(request)
        if not answer.prepared:  # streams (events, WebSocket) sent theirs already
            answer.headers.update(decision.headers())
        return answer

    return middleware
