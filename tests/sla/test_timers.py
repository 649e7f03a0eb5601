"""The timer store: lease claims, re-fire after a lost owner, hand-back, idempotent effects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from router.routing.engine import Engine
from router.routing.validation import parse_config
from router.store.keys import WsKeys
from router.store.shards import Shards
from tests.support.client import SUP, act, add_agent, create, put_config, small_config


@pytest.fixture
async def engine(redis_url: str) -> AsyncIterator[Engine]:
    client = Redis.from_url(redis_url, decode_responses=True)
    eng = Engine(Shards(client))
    await eng.scripts.load_all(client)
    yield eng
    await eng.close()
    await client.aclose()


_CLAIM_IDS = iter(range(1, 1_000_000))


async def claim(
    engine: Engine, ws: WsKeys, owner: str, lease_ms: int = 5000, claim_id: int | None = None
) -> list[Any]:
    res = await engine.scripts["claim"](
        keys=[ws.timers, ws.timer_leases, ws.timer_lease_info, ws.timer_claims],
        args=[100, lease_ms, owner, next(_CLAIM_IDS) if claim_id is None else claim_id],
        client=engine.shards.single,
    )
    return [tuple(res[i : i + 3]) for i in range(2, len(res), 3)]


async def fire(engine: Engine, ws: WsKeys, member: str) -> list[Any]:
    """Fires one timer (due now); its code as [1] applied or [0] stale."""
    return await engine.scripts["fire"](  # type: ignore[no-any-return]
        keys=[ws.runtime, ws.timer_leases, ws.timer_lease_info],
        args=[member, 0],
        client=engine.shards.single,
    )


async def test_lost_lease_is_refired_and_effect_happens_once(engine: Engine, ws: str) -> None:
    """A replica that claims a timer and dies before acknowledging it does not lose it."""
    await engine.put_config(ws, parse_config(msgspec.json.encode(small_config())), "admin:test")
    keys = WsKeys(ws)
    client = engine.shards.single
    # an offered contact whose offer timer is due now; nobody runs the worker here
    await client.hset(
        keys.contact("c1"),
        mapping={  # type: ignore[misc]
            "id": "c1",
            "st": "queued",
            "ch": "voice",
            "enq": 0,
            "rank": 0,
            "stage": 1,
            "stages": "0:cards|1:loans",
            "w": 100,
            "og": 0,
            "cust": "x",
        },
    )
    await client.zadd(keys.timers, {"stage|c1|2": 1})
    claimed = await claim(engine, keys, "replica-a", lease_ms=100)
    assert [c[0] for c in claimed] == ["stage|c1|2"] and claimed[0][2] == 0
    assert await claim(engine, keys, "replica-b") == []  # leased: nobody else takes it yet
    await asyncio.sleep(0.2)
    again = await claim(engine, keys, "replica-b")
    assert again == [("stage|c1|2", 1, 1)]  # re-fired with its original due time
    assert (await fire(engine, keys, "stage|c1|2"))[0] == 1
    assert (await fire(engine, keys, "stage|c1|2"))[0] == 0  # a second fire changes nothing
    assert await client.hget(keys.contact("c1"), "stage") == "2"
    assert await client.zcard(keys.timer_leases) == 0
    assert await client.zscore(keys.queue("loans", "voice"), "c1") == 0


async def test_hand_back_returns_only_own_leases(engine: Engine, ws: str) -> None:
    keys = WsKeys(ws)
    await engine.shards.single.zadd(keys.timers, {"expire|x|0": 5, "expire|y|0": 6})
    a = await claim(engine, keys, "a")
    assert len(a) == 2
    n = await engine.scripts["handback"](
        keys=[keys.timers, keys.timer_leases, keys.timer_lease_info],
        args=["b", "expire|x|0"],
        client=engine.shards.single,
    )
    assert n == 0
    n = await engine.scripts["handback"](
        keys=[keys.timers, keys.timer_leases, keys.timer_lease_info],
        args=["a", "expire|x|0", "expire|y|0"],
        client=engine.shards.single,
    )
    assert n == 2
    assert await engine.shards.single.zrange(keys.timers, 0, -1, withscores=True) == [
        ("expire|x|0", 5.0),
        ("expire|y|0", 6.0),
    ]


async def test_offer_timeout_fired_by_the_service(api: Any, ws: str) -> None:
    cfg = small_config()
    cfg["channels"]["voice"]["offer_timeout"] = 0.2
    await put_config(api, ws, cfg)
    await add_agent(api, ws, "a1", {"cards": 5})
    c = await create(api, ws, "c1")
    assert c["state"] == "offered"
    for _ in range(100):
        got = await (await api.get(f"/v1/workspaces/{ws}/contacts/c1", headers=SUP)).json()
        if got["state"] == "queued":
            break
        await asyncio.sleep(0.05)
    assert got["state"] == "queued" and got["rank"] == c["rank"]
    assert any(e["type"] == "contact.offer_timeout" for e in got["timeline"])
    r = await act(api, ws, "c1", "accept", agent_id="a1")
    assert r.status == 409 and (await r.json())["state"] == "queued"


async def test_claim_retried_after_a_lost_reply_gets_the_same_timers(
    engine: Engine, ws: str
) -> None:
    """redis-py re-sends a timed-out command: the retry must not strand the timers
    the first call leased (they would wait for the lease to run out)."""
    keys = WsKeys(ws)
    await engine.shards.single.zadd(keys.timers, {"expire|x|0": 5, "expire|y|0": 6})
    first = await claim(engine, keys, "a", claim_id=7)  # its reply is "lost"
    retry = await claim(engine, keys, "a", claim_id=7)
    assert (
        sorted(m for m, *_ in retry) == sorted(m for m, *_ in first) == ["expire|x|0", "expire|y|0"]
    )
    assert {m: due for m, due, _ in retry} == {"expire|x|0": 5, "expire|y|0": 6}
    assert await claim(engine, keys, "a", claim_id=8) == []  # a new call: nothing new is due
    for m, *_ in retry:
        await fire(engine, keys, m)
    assert await engine.shards.single.zcard(keys.timer_leases) == 0
    assert await claim(engine, keys, "a", claim_id=7) == []  # acknowledged: gone for good
