"""Per-token request rate limits, counted in Redis so that all replicas share them.

Strategy: fixed windows aligned to the clock, counted by the `limits` library's
Redis storage script (INCRBY + EXPIRE), sent through the engine's
ScriptBatcher. Far from its limit a request does not wait for its count: the
hit is added in the next loop tick, coalesced per token, in the pipeline that
carries that tick's script calls (see `RateLimiter`); near the limit it waits
for Redis' count, which decides exactly. The count gives RateLimit-Remaining,
and since windows are aligned the window's end (RateLimit-Reset, Retry-After)
is known without a second call (`limits`' own fixed-window limiter starts a
window at a token's first request and needs a TTL call to report it). A
sliding window counter would smooth the burst a fixed window allows around its
end (up to twice the limit across a boundary) at the price of two keys, a reply
without the count and a second call for the headers; these limits keep a
runaway or compromised client from swamping the service, where that burst is
harmless.

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

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.storage.redis.redispy import RedispyBridge
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from router.api.appkeys import ENGINE, METRICS, SHARDS, Handler
from router.api.common import problem
from router.runtime.settings import Token
from router.store.scripts import Script

log = logging.getLogger(__name__)

# Under `router:*`, the key pattern the service's Redis ACL user is granted.
KEY_PREFIX = "router:rl"
WARN_EVERY = 10.0  # seconds between warnings while Redis cannot be reached
SKIP_AFTER_FAILURE = 1.0  # seconds without checks after a check failed
MAX_CACHED = 65_536  # tokens whose key and count are kept ready: every desktop of a big floor
SLACK = 10  # a tenth of a limit: counted without waiting while this far from it


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


@dataclass(slots=True)
class _Count:
    """One token's count in its current window, as this replica knows it."""

    key: str  # the window's Redis key
    window: int
    expiry: int  # the window's length, seconds
    known: int = 0  # Redis' count in its last reply
    unsent: int = 0  # hits allowed here whose count has not left for Redis yet
    sending: int = 0  # hits whose count is on its way


class RateLimiter:
    """Counts each token's requests per window in Redis, shared by all replicas.

    Far from its limit a request goes on at once and its hit is added to Redis
    in the next loop tick, one INCRBY per token for all its hits of that tick,
    in the same pipeline as the requests' own script calls: no round trip of its
    own, and the reply keeps this replica's view of the count. Within a tenth of
    the limit (`SLACK`), or with a tenth of it unconfirmed here, a request waits
    for Redis' count, so the limit holds exactly where it matters. Another
    replica's hits of the same tick are not known yet, so a token may pass its
    limit by at most a tenth of it per other replica (a limit under 10 is always
    exact); fixed windows already allow twice the limit across a boundary."""

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
        self._counts: dict[str, _Count] = {}  # key without the window -> count
        self._unsent: list[_Count] = []  # counts with hits to send next tick
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

    def _entry(self, token: Token) -> tuple[RateLimitItem, str] | None:
        if token in self._keys:
            return self._keys[token]
        if len(self._keys) >= MAX_CACHED:
            self._keys.clear()
        limit = self.item_for(token)
        entry = None
        if limit is not None:
            entry = (limit, self._prefix(limit.key_for(token.role, token.name)))
        self._keys[token] = entry
        return entry

    def _count(self, app: web.Application, base: str, window: int, expiry: int) -> _Count:
        count = self._counts.get(base)
        if count is not None and count.window == window:
            return count
        if count is not None and count.unsent:  # the last window's hits still count there
            self._queue(app, count)
        elif count is None and len(self._counts) >= MAX_CACHED:
            # idle tokens go (a busy one keeps its count); rare: most entries go at once
            self._counts = {k: c for k, c in self._counts.items() if c.unsent or c.sending}
        count = self._counts[base] = _Count(f"{base}/{window}", window, expiry)
        return count

    async def hit(self, app: web.Application, token: Token) -> Decision | None:
        """Counts one request; None when the token has no limit or Redis failed."""
        self._incr_script(app)  # first: it sets the key prefix the entries use
        entry = self._entry(token)
        if entry is None or time.monotonic() < self._skip_until:
            return None
        item, base = entry
        expiry = item.get_expiry()
        now = time.time()
        window = int(now // expiry)
        count = self._count(app, base, window, expiry)
        slack = item.amount // SLACK
        unconfirmed = count.unsent + count.sending
        if unconfirmed < slack and count.known + unconfirmed < item.amount - slack:
            if not count.unsent:  # far from the limit: counted in Redis next tick
                self._queue(app, count)
            count.unsent += 1
            used = count.known + unconfirmed + 1
        else:  # near the limit: Redis' count decides, exactly
            n, count.unsent = count.unsent + 1, 0
            total = await self._send(app, count, n)
            if total is None:
                return None
            used = total
        return Decision(
            allowed=used <= item.amount,
            limit=item.amount,
            remaining=max(0, item.amount - used),
            reset=(window + 1) * expiry - now,
            window=expiry,
        )

    async def _send(self, app: web.Application, count: _Count, n: int) -> int | None:
        """Adds `n` hits to Redis' count: the new total, or None when Redis
        failed (the check fails open)."""
        count.sending += n
        try:
            script = self._incr_script(app)
            total = int(await app[ENGINE].batcher.call(script, [count.key], [count.expiry, n]))
        except (RedisError, OSError) as exc:
            self._failed(app, exc)
            return None
        finally:
            count.sending -= n
        count.known = max(count.known, total)
        return total

    def _queue(self, app: web.Application, count: _Count) -> None:
        if not self._unsent:
            asyncio.get_running_loop().call_soon(self._flush, app)
        self._unsent.append(count)

    def _flush(self, app: web.Application) -> None:
        """Sends every count with hits not sent yet, queued at once into the
        batcher: they ride in the pipeline of this tick's script calls."""
        counts, self._unsent = self._unsent, []
        script = self._incr_script(app)
        for count in counts:
            if not count.unsent:  # a request near the limit took them along
                continue
            n, count.unsent = count.unsent, 0
            count.sending += n
            fut = app[ENGINE].batcher.submit(script, [count.key], [count.expiry, n])
            fut.add_done_callback(functools.partial(self._sent, app, count, n))

    def _sent(self, app: web.Application, count: _Count, n: int, fut: asyncio.Future[Any]) -> None:
        count.sending -= n
        if fut.cancelled():  # the service is stopping
            return
        exc = fut.exception()
        if exc is None:
            count.known = max(count.known, int(fut.result()))
        elif isinstance(exc, RedisError | OSError):
            self._failed(app, exc)
        else:
            log.error("rate limit count not sent", exc_info=exc)

    def _failed(self, app: web.Application, exc: BaseException) -> None:
        if time.monotonic() < self._skip_until:
            return  # a count already on its way when checks stopped: the same outage
        app[METRICS].redis_errors.labels("ratelimit").inc()
        self._skip_until = time.monotonic() + SKIP_AFTER_FAILURE
        now = time.time()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning("rate limits not checked, Redis failed (%s)", type(exc).__name__)


def _text(script: bytes | str | memoryview) -> str:
    return bytes(script).decode() if not isinstance(script, str) else script


async def limited(
    limiter: RateLimiter, request: web.Request, token: Token, handler: Handler
) -> web.StreamResponse:
    """The handler's answer with the token's RateLimit headers, or 429 (the
    handler not run) when the token is over its limit."""
    decision = await limiter.hit(request.app, token)
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
