"""The routing code as a Redis Functions library: a Redis that lost it (restarted
empty, flushed) gets it back on the next call, without a failed request."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from router.routing.library import ROUTING_SCRIPTS, routing_library
from router.store.keys import WsKeys
from tests.support.client import AG_FOR, GW, act, add_agent, create, put_config, small_config


async def test_library_names_carry_a_digest_of_the_code() -> None:
    code, digest = routing_library()
    assert code.startswith(f"#!lua name=router_{digest}\n")
    for name in ROUTING_SCRIPTS:  # two versions during an upgrade never share a name
        assert f"redis.register_function('{name}_{digest}'" in code


async def test_functions_lost_by_redis_are_loaded_again(api: Any, ws: str, redis_url: str) -> None:
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 3})
    client = Redis.from_url(redis_url)
    try:
        await client.function_flush()  # what a restart without persistence leaves
        ready = await api.get("/readyz")
        assert ready.status == 503 and (await ready.json())["scripts"] is False
        # the batched path: the create finds no function, loads the library, retries
        c = await create(api, ws, "c1")
        assert c["state"] == "offered" and c["agent"] == "a1"
        r = await act(api, ws, "c1", "accept", agent_id="a1")
        assert r.status == 200 and (await r.json())["state"] == "assigned"
        assert (await api.get("/readyz")).status == 200
        assert await client.function_list()  # loaded once more, for every replica
    finally:
        await client.aclose()


async def test_a_new_config_applies_from_the_next_call(api: Any, ws: str) -> None:
    # The library keeps a workspace's runtime config between calls while its
    # version stands; a new version is read afresh by the very next call, in
    # every part cached from it (a pool's queue cap, a channel's weight).
    cfg = small_config()
    cfg["pools"]["cards"]["max_queue"] = 1
    await put_config(api, ws, cfg)
    await create(api, ws, "q1")
    body = {"id": "q2", "channel": "voice", "customer": {"id": "cu-q2", "tier": "standard"}}
    r = await api.post(f"/v1/workspaces/{ws}/contacts", json=body, headers=GW)
    assert r.status == 429 and (await r.json())["type"].endswith("/queue-full")
    cfg["pools"]["cards"]["max_queue"] = 5
    cfg["channels"]["voice"]["weight"] = 50
    await put_config(api, ws, cfg)
    assert (await create(api, ws, "q2"))["state"] == "queued"
    assert (await create(api, ws, "q3"))["state"] == "queued"
    # q1 keeps the weight it was created with (100), q2 and q3 weigh 50: an
    # agent of capacity 150 takes q1 and q2 (with weight 100 it would take q1 only)
    await add_agent(api, ws, "a1", {"cards": 3}, capacity=150)
    r = await api.get(f"/v1/workspaces/{ws}/agents/a1", headers=AG_FOR("a1"))
    agent = await r.json()
    assert agent["load"] == 150 and sorted(agent["contacts"]) == ["q1", "q2"], agent


async def test_the_archivers_mark_applies_from_the_next_call(
    api: Any, ws: str, redis_url: str
) -> None:
    # The archiver marks a workspace archived in its runtime hash without a new
    # config version: the next call already keeps no timeline copy in Redis.
    await put_config(api, ws, small_config())
    keys = WsKeys(ws)
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        await create(api, ws, "t1")  # the runtime config is cached from here on
        await create(api, ws, "t2")
        assert await client.exists(keys.timeline("t1"), keys.timeline("t2")) == 2
        await client.hset(keys.runtime, "arch", "1")
        await create(api, ws, "t3")
        assert not await client.exists(keys.timeline("t3"))
        assert (await client.hgetall(keys.contact("t3")))["st"] == "queued"
    finally:
        await client.aclose()
