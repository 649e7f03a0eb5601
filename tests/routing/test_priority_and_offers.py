"""Routing behaviour through the HTTP API against a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.client import AG_FOR, SUP, act, add_agent, create, put_config, small_config


async def offered_to(api: Any, ws: str, aid: str) -> list[str]:
    r = await api.get(f"/v1/workspaces/{ws}/agents/{aid}/offers", headers=AG_FOR(aid))
    assert r.status == 200
    return [o["id"] for o in (await r.json())["offers"]]


async def serve_next(api: Any, ws: str, aid: str) -> str:
    """The agent accepts and completes its single offer; returns its id."""
    (cid,) = await offered_to(api, ws, aid)
    assert (await act(api, ws, cid, "accept", agent_id=aid)).status == 200
    assert (await act(api, ws, cid, "complete", agent_id=aid)).status == 200
    return cid


async def test_contact_offered_to_ready_agent(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    c = await create(api, ws, "c1")
    assert c["state"] == "offered" and c["agent"] == "a1"
    assert c["created"] is True
    r = await api.get(f"/v1/workspaces/{ws}/contacts/c1", headers=SUP)
    body = await r.json()
    offered = [e for e in body["timeline"] if e["type"] == "contact.offered"]
    assert offered and offered[0]["explain"]["winner"] == "a1"
    assert offered[0]["explain"]["candidates"][0]["agent"] == "a1"


async def test_vip_served_first_only_while_offset_covers_gap(api: Any, ws: str) -> None:
    """Rank = enqueued_at - offset: a vip (120 s) beats standards who waited less than 120 s
    longer, never one who waited more."""
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5}, available=False)
    s_old = await create(api, ws, "s-old")
    await asyncio.sleep(0.05)
    s_new = await create(api, ws, "s-new")
    vip = await create(api, ws, "vip", tier="vip")
    assert vip["rank"] < s_old["rank"] < s_new["rank"]
    waited_longer = vip["enqueued_at"] - s_old["enqueued_at"]
    assert abs((s_old["rank"] - vip["rank"]) - (120 - waited_longer)) < 0.01
    await api.post(
        f"/v1/workspaces/{ws}/agents/a1/state", json={"state": "available"}, headers=AG_FOR("a1")
    )
    order = [await serve_next(api, ws, "a1") for _ in range(3)]
    assert order == ["vip", "s-old", "s-new"]


async def test_idempotent_create_under_concurrent_retries(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    results = await asyncio.gather(*(create(api, ws, "same") for _ in range(20)))
    assert sum(1 for r in results if r["created"]) == 1
    assert len({r["enqueued_at"] for r in results}) == 1


async def test_reject_keeps_rank_and_avoids_agent(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    c = await create(api, ws, "c1")
    assert c["agent"] == "a1"
    r = await act(api, ws, "c1", "reject", agent_id="a1")
    after = await r.json()
    assert after["state"] == "queued" and after["rank"] == c["rank"]
    await add_agent(api, ws, "a2", {"cards": 5})
    got = await (await api.get(f"/v1/workspaces/{ws}/contacts/c1", headers=SUP)).json()
    assert got["agent"] == "a2" and got["rank"] == c["rank"]


async def test_chat_capacity_four_at_weight_25(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    states = [(await create(api, ws, f"ch{i}", channel="chat"))["state"] for i in range(5)]
    assert states == ["offered"] * 4 + ["queued"]
    voice = await create(api, ws, "v1")
    assert voice["state"] == "queued"


async def test_offers_list_only_the_offered_contacts_the_agent_holds(api: Any, ws: str) -> None:
    """The desktop's view reads each held contact's state before its record:
    accepted chats stay held (the agent's contacts) but are no offers."""
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    for cid in ("ch1", "ch2", "ch3"):
        assert (await create(api, ws, cid, channel="chat"))["agent"] == "a1"
    assert (await act(api, ws, "ch1", "accept", agent_id="a1")).status == 200
    assert (await act(api, ws, "ch3", "accept", agent_id="a1")).status == 200
    assert await offered_to(api, ws, "a1") == ["ch2"]
    r = await api.get(f"/v1/workspaces/{ws}/agents/a1", headers=SUP)
    assert sorted((await r.json())["contacts"]) == ["ch1", "ch2", "ch3"]
    assert (await act(api, ws, "ch2", "accept", agent_id="a1")).status == 200
    assert await offered_to(api, ws, "a1") == []
