"""Per-token request rate limits, counted in Redis so that all replicas share them.

Strategy: fixed windows aligned to the clock, one Redis counter per token and
window (INCRBY, with the window's length as its TTL). Far from its limit a
request does not wait for its count: its hit is counted here and sent with
every other token's hits of the last FLUSH_EVERY seconds in one script call
(`lua/ratelimit.lua`) per counter slot, so a floor of thousands of desktops,
each making a request every few seconds, costs Redis a few calls a second
rather than one per request (one per request was 15-17% of the router's CPU
per contact lifecycle and ~100 µs of Redis', benchmarks/history/2026-12.md).
Near the limit a request waits for Redis' count, which decides exactly. The
count gives RateLimit-Remaining, and since windows are aligned the window's end
(RateLimit-Reset, Retry-After) is known without a second call. A sliding
window counter would smooth the burst a fixed window allows around its end (up
to twice the limit across a boundary) at the price of two keys, a reply
without the count and a second call for the headers; these limits keep a
runaway or compromised client from swamping the service, where that burst is
harmless.

Counters are spread over COUNTER_SLOTS hash tags (`router:rl:{rl:<n>}:...`,
by the token), so one call adds the hits of many tokens on one Redis Cluster
slot, and the counting load spreads over a cluster's shards. The `limits`
library parses the limits (`100/minute`) and names each token's counter.

The check runs after authentication and before the handler, so a refused
request has changed nothing. Redis unreachable: the check fails open (the
request goes on, counted in router_redis_errors_total{where="ratelimit"}).
The limiter protects capacity, not access (tokens are checked in memory
before it); with Redis down every stateful request answers 503 on its own, and
failing closed would only add refusals of requests the engine could serve when
one check call is lost. After a failed check the next ones are skipped for
SKIP_AFTER_FAILURE seconds, so a slow Redis does not cost every request a
second timeout before its own. On shutdown the hits not sent yet are sent
before Redis is closed; a replica that dies loses at most FLUSH_EVERY seconds
of hits far from any limit.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from limits import RateLimitItem, parse
from redis.exceptions import RedisError

from router.api.appkeys import ENGINE, METRICS, Handler
from router.api.common import problem
from router.runtime.metrics import Metrics
from router.runtime.settings import Token
from router.store.batch import ScriptBatcher
from router.store.scripts import Script, read_lua

log = logging.getLogger(__name__)

# Under `router:*`, the key pattern the service's Redis ACL user is granted.
KEY_PREFIX = "router:rl"
COUNTER_SLOTS = 8  # hash tags the counters are spread over
FLUSH_EVERY = 0.25  # seconds between sends of the hits far from any limit
WARN_EVERY = 10.0  # seconds between warnings while Redis cannot be reached
SKIP_AFTER_FAILURE = 1.0  # seconds without checks after a check failed
MAX_CACHED = 65_536  # tokens whose key and count are kept ready: every desktop of a big floor
SLACK = 10  # a tenth of a limit: counted without waiting while this far from it
COUNT_LUA = read_lua("router.api", "ratelimit")


def counter_base(item: RateLimitItem, role: str, name: str) -> str:
    """A token's counter key without its window (`<base>/<window>` is the key)."""
    ident = item.key_for(role, name)
    slot = zlib.crc32(ident.encode()) % COUNTER_SLOTS
    return f"{KEY_PREFIX}:{{rl:{slot}}}:{ident}"


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

    Far from its limit a request goes on at once and its hit is sent within
    FLUSH_EVERY seconds, with every other token's hits of that time: one
    `INCRBY n` per token in one script call per counter slot, whose reply keeps
    this replica's view of each count. Within a tenth of the limit (`SLACK`),
    or with a tenth of it unconfirmed here, a request waits for Redis' count,
    so the limit holds exactly where it matters. Another replica's unsent hits
    are not known yet, so a token may pass its limit by at most a tenth of it
    per other replica (a limit under 10 is always exact); fixed windows already
    allow twice the limit across a boundary."""

    def __init__(self, roles: Mapping[str, str], overrides: Mapping[str, str]) -> None:
        self._roles = {role: parse(spec) for role, spec in roles.items() if spec != "off"}
        # None: the token is exempt whatever its role's limit.
        self._names: dict[str, RateLimitItem | None] = {
            name: None if spec == "off" else parse(spec) for name, spec in overrides.items()
        }
        self.enabled = bool(self._roles) or any(self._names.values())
        self._script = Script(COUNT_LUA)
        self._batcher: ScriptBatcher | None = None
        self._metrics: Metrics | None = None
        # token -> (its limit, its key without the window); bounded, since
        # identity-provider tokens bring an open set of names.
        self._keys: dict[Token, tuple[RateLimitItem, str] | None] = {}
        self._counts: dict[str, _Count] = {}  # key without the window -> count
        self._unsent: list[_Count] = []  # counts with hits to send at the next flush
        self._timer: asyncio.TimerHandle | None = None
        self._sends: set[asyncio.Future[Any]] = set()
        self._warned_at = -math.inf
        self._skip_until = -math.inf

    def bind(self, batcher: ScriptBatcher, metrics: Metrics) -> None:
        """The engine's batcher (the calls ride its pipelines) and the metrics;
        until bound (the app starting) every check passes uncounted."""
        self._batcher, self._metrics = batcher, metrics

    def item_for(self, token: Token) -> RateLimitItem | None:
        if token.name in self._names:
            return self._names[token.name]
        return self._roles.get(token.role)

    def _entry(self, token: Token) -> tuple[RateLimitItem, str] | None:
        if token in self._keys:
            return self._keys[token]
        if len(self._keys) >= MAX_CACHED:
            self._keys.clear()
        limit = self.item_for(token)
        entry = None if limit is None else (limit, counter_base(limit, token.role, token.name))
        self._keys[token] = entry
        return entry

    def _count(self, base: str, window: int, expiry: int) -> _Count:
        count = self._counts.get(base)
        if count is not None and count.window == window:
            return count
        if count is not None and count.unsent:  # the last window's hits still count there
            self._queue(count)
        elif count is None and len(self._counts) >= MAX_CACHED:
            # idle tokens go (a busy one keeps its count); rare: most entries go at once
            self._counts = {k: c for k, c in self._counts.items() if c.unsent or c.sending}
        count = self._counts[base] = _Count(f"{base}/{window}", window, expiry)
        return count

    async def hit(self, token: Token) -> Decision | None:
        """Counts one request; None when the token has no limit or Redis failed."""
        entry = self._entry(token)
        if entry is None or self._batcher is None or time.monotonic() < self._skip_until:
            return None
        item, base = entry
        expiry = item.get_expiry()
        now = time.time()
        window = int(now // expiry)
        count = self._count(base, window, expiry)
        slack = item.amount // SLACK
        unconfirmed = count.unsent + count.sending
        if unconfirmed < slack and count.known + unconfirmed < item.amount - slack:
            if not count.unsent:  # far from the limit: counted in Redis at the next flush
                self._queue(count)
            count.unsent += 1
            used = count.known + unconfirmed + 1
        else:  # near the limit: Redis' count decides, exactly
            n, count.unsent = count.unsent + 1, 0
            total = await self._send(count, n)
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

    async def _send(self, count: _Count, n: int) -> int | None:
        """Adds `n` hits to Redis' count now: the new total, or None when Redis
        failed (the check fails open)."""
        assert self._batcher is not None
        count.sending += n
        try:
            totals = await self._batcher.call(self._script, [count.key], [count.expiry, n])
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        finally:
            count.sending -= n
        total = int(totals[0])
        count.known = max(count.known, total)
        # its own place in the count, not the highest seen: concurrent requests'
        # replies may be read after a later one's, and each decides by its own
        return total

    def _queue(self, count: _Count) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_EVERY, self._flush)
        self._unsent.append(count)

    def _flush(self) -> None:
        """Sends every count with hits not sent yet: one script call per
        counter slot, queued into the batcher's next pipeline."""
        self._timer = None
        counts, self._unsent = self._unsent, []
        if self._batcher is None:
            return
        by_slot: dict[str, list[tuple[_Count, int]]] = {}
        for count in counts:
            if not count.unsent:  # a request near the limit took them along
                continue
            n, count.unsent = count.unsent, 0
            count.sending += n
            slot = count.key[: count.key.index("}") + 1]  # `router:rl:{rl:<n>}`
            by_slot.setdefault(slot, []).append((count, n))
        for sent in by_slot.values():
            keys = [count.key for count, _ in sent]
            args = [a for count, n in sent for a in (count.expiry, n)]
            fut = self._batcher.submit(self._script, keys, args)
            self._sends.add(fut)
            fut.add_done_callback(functools.partial(self._sent, sent))

    def _sent(self, sent: list[tuple[_Count, int]], fut: asyncio.Future[Any]) -> None:
        self._sends.discard(fut)
        for count, n in sent:
            count.sending -= n
        if fut.cancelled():  # the service is stopping
            return
        exc = fut.exception()
        if exc is None:
            for (count, _), total in zip(sent, fut.result(), strict=True):
                count.known = max(count.known, int(total))
        elif isinstance(exc, RedisError | OSError):
            self._failed(exc)
        else:
            log.error("rate limit counts not sent", exc_info=exc)

    async def close(self) -> None:
        """Sends the hits not sent yet and waits for them (on shutdown, once
        no request is in flight, before Redis is closed)."""
        if self._timer is not None:
            self._timer.cancel()
        self._flush()
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)

    def _failed(self, exc: BaseException) -> None:
        if time.monotonic() < self._skip_until:
            return  # a count already on its way when checks stopped: the same outage
        if self._metrics is not None:
            self._metrics.redis_errors.labels("ratelimit").inc()
        self._skip_until = time.monotonic() + SKIP_AFTER_FAILURE
        now = time.time()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning("rate limits not checked, Redis failed (%s)", type(exc).__name__)


LIMITER = web.AppKey("limiter", RateLimiter)


async def limiter_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: binds the limiter once the engine is up; on shutdown sends
    the hits not sent yet (torn down before the engine and Redis close)."""
    limiter = app[LIMITER]
    limiter.bind(app[ENGINE].batcher, app[METRICS])
    yield
    await limiter.close()


async def limited(
    limiter: RateLimiter, request: web.Request, token: Token, handler: Handler
) -> web.StreamResponse:
    """The handler's answer with the token's RateLimit headers, or 429 (the
    handler not run) when the token is over its limit."""
    decision = await limiter.hit(token)
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
