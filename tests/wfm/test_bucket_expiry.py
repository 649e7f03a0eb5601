"""Statistics buckets the scripts write (per-minute pool statistics, per-day
arrivals) always expire: their expiry is set once, when a write creates the
key, never renewed, and must never be missed."""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from router.store.keys import WsKeys
from tests.support.client import act, add_agent, create, put_config, small_config

STAT_TTL = 7200  # lib/20_events.lua
ARRIVALS_TTL = 70 * 86400


async def bucket_ttls(client: Redis, ws: str) -> dict[str, int]:
    tag = WsKeys(ws).tag
    keys = [k async for k in client.scan_iter(tag + ":sl:*")]
    keys += [k async for k in client.scan_iter(tag + ":arr:*")]
    return {k: await client.ttl(k) for k in keys}


def check(ttls: dict[str, int]) -> None:
    """Each key expires the TTL after its bucket ends: no later, and no
    sooner than the TTL from now (when a renewing write would have put it)."""
    now = time.time()
    for key, ttl in ttls.items():
        bucket = int(key.rsplit(":", 1)[1])
        if ":sl:" in key:
            end, keep = (bucket + 1) * 60, STAT_TTL
        else:
            end, keep = (bucket + 1) * 86400, ARRIVALS_TTL
        assert keep - 2 <= ttl <= end + keep - now + 2, (key, ttl)


async def test_every_statistics_bucket_gets_an_expiry(api: Any, ws: str, redis_url: str) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        await put_config(api, ws, small_config())
        await add_agent(api, ws, "a1", {"cards": 5})
        await create(api, ws, "c1")
        assert (await act(api, ws, "c1", "accept", agent_id="a1")).status == 200
        assert (await act(api, ws, "c1", "complete", agent_id="a1")).status == 200
        ttls = await bucket_ttls(client, ws)
        assert any(":sl:" in k for k in ttls) and any(":arr:" in k for k in ttls)
        check(ttls)
        # the keys gone (expired): the next writes create them again, expiring
        await client.delete(*ttls)
        await create(api, ws, "c2")  # offered to a1: an arrival
        assert (await act(api, ws, "c2", "accept", agent_id="a1")).status == 200  # an answer
        assert (await act(api, ws, "c2", "complete", agent_id="a1")).status == 200  # handled
        await create(api, ws, "c3")
        assert (await act(api, ws, "c3", "abandon")).status == 200  # an abandon
        ttls = await bucket_ttls(client, ws)
        assert any(":sl:" in k for k in ttls) and any(":arr:" in k for k in ttls)
        check(ttls)
        # a bucket whose first write is an answer (the minute's key is new)
        for k in [k for k in ttls if ":sl:" in k]:
            await client.delete(k)
        await create(api, ws, "c4")
        for k in [k async for k in client.scan_iter(WsKeys(ws).tag + ":sl:*")]:
            await client.delete(k)
        assert (await act(api, ws, "c4", "accept", agent_id="a1")).status == 200
        ttls = await bucket_ttls(client, ws)
        answered = {k: v for k, v in ttls.items() if ":sl:" in k}
        assert answered
        for k in answered:
            assert await client.hget(k, "answered") == "1"
        check(ttls)
    finally:
        await client.aclose()
