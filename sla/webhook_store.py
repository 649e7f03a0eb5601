"""Where webhook deliveries wait: keys, the retry set's members, backoff, dead letters.

A delivery that failed waits in the workspace's retry sorted set (score = its
next attempt in ms, exponential backoff with full jitter); after its
subscription's `max_age` it moves to the dead-letter list, from which
`replay_dead_letters` puts it back. The dispatcher (`sla/webhooks.py`) reads
new events with the consumer group `GROUP` and settles each attempt in one
script (`sla/lua/webhook_settle.lua`).
"""

from __future__ import annotations

import random

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from router.store.keys import WsKeys
from router.store.scripts import Script, read_lua

GROUP = "webhooks"


class WebhookKeys:
    """Redis keys of webhook delivery in one workspace (same hash tag as the rest)."""

    __slots__ = ("events", "ws")

    def __init__(self, ws: str) -> None:
        self.ws = ws
        # Stream of events; read with the consumer group `GROUP`.
        self.events = WsKeys(ws).events

    # Retry member: JSON {id, sub, n (attempts made), first (first attempt ms),
    # e (event JSON)}, score = next attempt ms (or the lease expiry while a
    # replica holds it). The event is kept in the member so a retry does not
    # depend on the stream still holding the entry after trimming.
    @property
    def retry(self) -> str:
        return WsKeys(self.ws).webhook_retry

    # Dead letters: the retry member plus `error`, oldest first.
    @property
    def dead(self) -> str:
        return WsKeys(self.ws).webhook_dead


class Delivery(msgspec.Struct):
    """A retry set member (written by the Lua scripts with cjson)."""

    id: str
    sub: str
    n: int
    first: int
    e: str


DELIVERY = msgspec.json.Decoder(Delivery)


def backoff_ms(attempt: int, base: float, cap: float) -> int:
    """Full jitter: uniform over [0, min(cap, base * 2^(attempt-1))].

    The jitter spreads the retries of many deliveries that failed together (a
    receiver outage) instead of sending them back in one burst.
    """
    ceiling = min(cap, base * 2 ** min(max(attempt - 1, 0), 40))
    return int(random.uniform(0, ceiling) * 1000)


def script(name: str) -> Script:
    return Script(read_lua("sla", name))


async def create_group(client: Redis, ws: str) -> bool:
    """Creates the consumer group at the stream's end; False when it exists.

    A new group starts from now (`$`): a workspace that first gets a webhook is
    not sent its whole history. The config writer may call this when webhooks
    are first configured, so no event between that and the first poll is skipped.
    """
    try:
        await client.xgroup_create(WsKeys(ws).events, GROUP, id="$", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
        return False
    return True


async def replay_dead_letters(client: Redis, ws: str, limit: int = 1000) -> int:
    """Moves up to `limit` dead letters (oldest first) back to the retry set, due now."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    keys = WebhookKeys(ws)
    replay = script("webhook_replay")
    return int(await replay(keys=[keys.dead, keys.retry], args=[limit], client=client))
