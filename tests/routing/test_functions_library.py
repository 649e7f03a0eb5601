"""The routing code as a Redis Functions library: a Redis that lost it (restarted
empty, flushed) gets it back on the next call, without a failed request."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from router.routing.library import ROUTING_SCRIPTS, routing_library
from tests.support.client import act, add_agent, create, put_config, small_config


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
