"""Agent delivery (long-poll, WebSocket), pool reads, probes and the OpenAPI document."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from tests.conftest import AG_FOR, SUP, add_agent, create, put_config, small_config


async def test_long_poll_wakes_when_an_offer_arrives(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    poll = asyncio.create_task(api.get(f"/v1/workspaces/{ws}/agents/a1/offers?wait=10",
                                       headers=AG_FOR("a1")))
    await asyncio.sleep(0.2)
    assert not poll.done()
    await create(api, ws, "c1")
    r = await asyncio.wait_for(poll, 8)
    body = await r.json()
    assert [o["id"] for o in body["offers"]] == ["c1"]


async def test_long_poll_returns_empty_after_wait(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    r = await api.get(f"/v1/workspaces/{ws}/agents/a1/offers?wait=0.2", headers=AG_FOR("a1"))
    assert r.status == 200 and (await r.json())["offers"] == []
    r = await api.get(f"/v1/workspaces/{ws}/agents/a1/offers?wait=600", headers=AG_FOR("a1"))
    assert r.status == 422 and (await r.json())["field"] == "wait"


async def test_websocket_pushes_state_and_offers(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    sock = await api.ws_connect(f"/v1/workspaces/{ws}/agents/a1/ws", headers=AG_FOR("a1"))
    first = msgspec.json.decode(await asyncio.wait_for(sock.receive_bytes(), 5))
    assert first["agent"]["state"] == "available" and first["offers"] == []
    await create(api, ws, "c1")
    pushed = msgspec.json.decode(await asyncio.wait_for(sock.receive_bytes(), 5))
    assert [o["id"] for o in pushed["offers"]] == ["c1"]
    assert pushed["agent"]["load"] == 100
    await sock.close()


async def test_pool_stats_show_queue_and_agents(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    await add_agent(api, ws, "a2", {"cards": 5}, available=False)
    await create(api, ws, "c1")
    await create(api, ws, "c2")
    await asyncio.sleep(0.05)
    r = await api.get(f"/v1/workspaces/{ws}/pools/cards", headers=SUP)
    stats = await r.json()
    assert stats["depth"] == 1 and stats["depth_by_channel"]["voice"] == 1
    assert stats["longest_wait"] > 0
    assert stats["agents_by_state"] == {"busy": 1, "offline": 1}
    assert stats["occupancy"] == 1.0
    assert stats["estimated_wait"] is not None and stats["estimated_wait"] > 0
    r = await api.get(f"/v1/workspaces/{ws}/pools", headers=SUP)
    assert {p["id"] for p in (await r.json())["pools"]} == {"cards", "loans"}
    r = await api.get(f"/v1/workspaces/{ws}/pools/nope", headers=SUP)
    assert r.status == 404 and r.content_type == "application/problem+json"


async def test_probes_and_openapi_cover_every_route(api: Any) -> None:
    assert (await api.get("/healthz")).status == 200
    ready = await api.get("/readyz")
    assert ready.status == 200 and (await ready.json())["scripts"] is True
    doc = await (await api.get("/openapi.json")).json()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    for route in api.app.router.routes():
        info = route.resource.get_info()
        path = info.get("path") or info.get("formatter")
        if route.method == "HEAD" or path == "/openapi.json":
            continue
        assert (route.method, path) in documented, (route.method, path)


async def test_config_versions_and_actor(api: Any, ws: str) -> None:
    first = await put_config(api, ws, small_config())
    second = await put_config(api, ws, small_config(reoffer_after=5))
    assert (first["version"], second["version"]) == (1, 2)
    assert second["actor"] == "admin:admin"
    r = await api.get(f"/v1/workspaces/{ws}", headers=SUP)
    assert (await r.json())["config"]["defaults"]["reoffer_after"] == 5
    stale = await api.put(f"/v1/workspaces/{ws}", json=small_config(),
                          headers={**SUP, "Authorization": "Bearer demo-admin", "If-Match": "1"})
    assert stale.status == 409


async def test_config_change_recomputes_membership_and_is_an_event(api: Any, ws: str,
                                                                  redis_url: str) -> None:
    from redis.asyncio import Redis

    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    stricter = small_config()
    stricter["pools"]["cards"]["skills"] = [{"skill": "cards", "min": 6}]
    await put_config(api, ws, stricter)
    agent = await (await api.get(f"/v1/workspaces/{ws}/agents/a1", headers=SUP)).json()
    assert agent["pools"] == []
    c = await create(api, ws, "c1")
    assert c["state"] == "queued"
    client = Redis.from_url(redis_url, decode_responses=True)
    events = [msgspec.json.decode(e["e"]) for _, e in
              await client.xrange("{ws:" + ws + "}:events")]
    await client.aclose()
    updates = [e for e in events if e["type"] == "config.updated"]
    assert [e["version"] for e in updates] == [1, 2]
    assert all(e["actor"] == "admin:admin" for e in updates)
