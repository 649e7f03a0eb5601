"""Agent delivery (long-poll, WebSocket), pool reads, probes and the OpenAPI document."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from tests.support.client import AG_FOR, SUP, act, add_agent, create, put_config, small_config


async def test_long_poll_wakes_when_an_offer_arrives(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    poll = asyncio.create_task(
        api.get(f"/v1/workspaces/{ws}/agents/a1/offers?wait=10", headers=AG_FOR("a1"))
    )
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


async def test_a_desktop_offering_compression_gets_plain_pushes(api: Any, ws: str) -> None:
    # Browsers always offer permessage-deflate; the router declines it (a zlib
    # context per desktop, for messages of a few hundred bytes) and pushes as usual.
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    sock = await api.ws_connect(
        f"/v1/workspaces/{ws}/agents/a1/ws", headers=AG_FOR("a1"), compress=15
    )
    assert sock.compress == 0
    assert "Sec-WebSocket-Extensions" not in sock._response.headers
    assert (await _push(sock))["offers"] == []
    await create(api, ws, "c1")
    assert [o["id"] for o in (await _push(sock))["offers"]] == ["c1"]
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
    stale = await api.put(
        f"/v1/workspaces/{ws}",
        json=small_config(),
        headers={**SUP, "Authorization": "Bearer demo-admin", "If-Match": "1"},
    )
    assert stale.status == 409


async def test_config_change_recomputes_membership_and_is_an_event(
    api: Any, ws: str, redis_url: str
) -> None:
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
    events = [msgspec.json.decode(e["e"]) for _, e in await client.xrange("{ws:" + ws + "}:events")]
    await client.aclose()
    updates = [e for e in events if e["type"] == "config.updated"]
    assert [e["version"] for e in updates] == [1, 2]
    assert all(e["actor"] == "admin:admin" for e in updates)


async def _push(sock: Any, wait: float = 5) -> dict[str, Any]:
    return msgspec.json.decode(await asyncio.wait_for(sock.receive_bytes(), wait))  # type: ignore[no-any-return]


async def test_websocket_pushes_each_change_to_its_agent_only(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    await add_agent(api, ws, "a2", {"cards": 5}, available=False)
    sock = await api.ws_connect(f"/v1/workspaces/{ws}/agents/a1/ws", headers=AG_FOR("a1"))
    assert (await _push(sock))["offers"] == []
    await create(api, ws, "c1")
    assert [o["id"] for o in (await _push(sock))["offers"]] == ["c1"]
    await act(api, ws, "c1", "accept", agent_id="a1")
    accepted = await _push(sock)
    assert accepted["offers"] == [] and accepted["agent"]["contacts"] == ["c1"]
    # another agent's change, and no change at all, push nothing to this desktop
    r = await api.post(
        f"/v1/workspaces/{ws}/agents/a2/state", json={"state": "available"}, headers=AG_FOR("a2")
    )
    assert r.status == 200
    try:
        extra = await _push(sock, wait=0.5)
    except TimeoutError:
        extra = None
    assert extra is None
    await act(api, ws, "c1", "complete", agent_id="a1")
    done = await _push(sock)
    assert done["agent"]["contacts"] == [] and done["agent"]["load"] == 0
    await sock.close()


async def test_desktops_reread_after_the_notification_link_drops(
    api: Any, ws: str, redis_url: str
) -> None:
    """Pub/sub delivers at most once: whatever was published while a replica's
    subscription was down is lost, so every desktop is re-sent its state."""
    from redis.asyncio import Redis

    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    sock = await api.ws_connect(f"/v1/workspaces/{ws}/agents/a1/ws", headers=AG_FOR("a1"))
    assert (await _push(sock))["offers"] == []
    admin = Redis.from_url(redis_url, decode_responses=True)
    try:
        # a change nobody hears (written behind the router's back), then the link drops
        await admin.hset(f"{{ws:{ws}}}:a:a1", "reason", "lunch")
        assert await admin.client_kill_filter(_type="pubsub") >= 1
        pushed = await _push(sock)
        assert pushed["agent"]["reason"] == "lunch"
    finally:
        await admin.aclose()
    await sock.close()


async def test_pauses_and_loop_lag_are_exported(api: Any) -> None:
    import gc

    def count(text: str, series: str) -> float:
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith(series))  # fmt: skip

    before = await (await api.get("/metrics")).text()
    gc.collect()
    await asyncio.sleep(0.35)
    after = await (await api.get("/metrics")).text()
    gen2 = 'router_gc_pause_seconds_count{generation="2"}'
    assert count(after, gen2) > count(before, gen2)
    assert count(after, "router_event_loop_lag_seconds_count") >= 2


async def test_an_agent_notification_carries_the_view_as_the_call_left_it(
    api: Any, ws: str, redis_url: str
) -> None:
    """Desktops are pushed the view a notification carries, without reading the
    agent again: it holds the agent and its offered contacts as the script's
    writes left them, and the contact once accepted is no longer an offer."""
    from redis.asyncio import Redis

    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    sub = Redis.from_url(redis_url, decode_responses=True)
    pubsub = sub.pubsub()
    try:
        await pubsub.ssubscribe(f"{{ws:{ws}}}:notify")

        async def next_view() -> list[dict[str, str]]:
            deadline = asyncio.get_running_loop().time() + 5
            while True:
                assert asyncio.get_running_loop().time() < deadline, "no notification"
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if msg is None:  # the subscription's confirmation, or nothing yet
                    continue
                topic, _, view = msg["data"].partition("\n")
                if topic == f"{{ws:{ws}}}|a|a1":
                    flat = msgspec.json.decode(view)
                    return [dict(zip(p[::2], p[1::2], strict=True)) for p in flat]

        await create(api, ws, "c1")
        agent, offer = await next_view()
        assert (agent["load"], "h:c1" in agent) == ("100", True)
        assert (offer["id"], offer["st"], offer["agent"]) == ("c1", "offered", "a1")
        await act(api, ws, "c1", "accept", agent_id="a1")
        (agent,) = await next_view()  # accepted: held, no longer offered
        assert "h:c1" in agent
        await act(api, ws, "c1", "complete", agent_id="a1")
        (agent,) = await next_view()
        assert agent["load"] == "0" and "h:c1" not in agent
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await sub.aclose()


async def test_pushes_coalesce_into_the_latest_view() -> None:
    """Views that arrive while a push is under way wait as one: the latest. A
    wake-up without a view (a resubscription) makes the desktop read."""
    from router.store.notify import Listener

    listener = Listener()
    listener.wake("v1")
    listener.wake("v2")
    assert listener.event.is_set() and listener.take() == "v2"
    assert not listener.event.is_set() and listener.take() is None
    listener.wake("v3")
    listener.wake(None)
    assert listener.take() is None
