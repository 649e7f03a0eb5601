"""Callbacks through the API against a real Redis: a caller who hangs up keeps
its place, a window keeps it out of every queue until it opens, failed dials
are retried after the gap up to the limit, and the number to call is personal
data."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from router.store.keys import WsKeys
from tests.support.client import (
    ADM,
    GW,
    SUP,
    add_agent,
    agent_headers,
    create,
    put_config,
    small_config,
)
from tests.support.invariants import read_events, replay

PHONE = "+44 20 7946 0958"
TIERS = {"vip": 120.0, "standard": 0.0}


def config(**callbacks: Any) -> dict[str, Any]:
    cfg = small_config()
    cfg["channels"]["voice"]["offer_timeout"] = 600
    if callbacks:
        cfg["callbacks"] = callbacks
    return cfg


async def get(api: Any, ws: str, cid: str, headers: dict[str, str] = SUP) -> dict[str, Any]:
    r = await api.get(f"/v1/workspaces/{ws}/contacts/{cid}", headers=headers)
    assert r.status == 200, await r.text()
    return await r.json()  # type: ignore[no-any-return]


async def callback(api: Any, ws: str, cid: str, **body: Any) -> Any:
    body.setdefault("phone", PHONE)
    return await api.post(f"/v1/workspaces/{ws}/contacts/{cid}/callback", json=body, headers=GW)


async def attempt(api: Any, ws: str, cid: str, aid: str, outcome: str) -> Any:
    return await api.post(
        f"/v1/workspaces/{ws}/contacts/{cid}/callback/attempts",
        json={"agent_id": aid, "outcome": outcome},
        headers=agent_headers(aid),
    )


async def next_offer(api: Any, ws: str, aid: str, wait: float = 20) -> dict[str, Any]:
    """The agent's desktop long-polls for its next offer (no fixed sleeps)."""
    r = await api.get(
        f"/v1/workspaces/{ws}/agents/{aid}/offers?wait={wait}", headers=agent_headers(aid)
    )
    assert r.status == 200, await r.text()
    offers = (await r.json())["offers"]
    assert len(offers) == 1, offers
    return offers[0]  # type: ignore[no-any-return]


async def agent_action(api: Any, ws: str, cid: str, aid: str, action: str) -> dict[str, Any]:
    r = await api.post(
        f"/v1/workspaces/{ws}/contacts/{cid}/{action}",
        json={"agent_id": aid},
        headers=agent_headers(aid),
    )
    assert r.status == 200, await r.text()
    return await r.json()  # type: ignore[no-any-return]


async def first_board(api: Any, ws: str) -> dict[str, Any]:
    """The wallboard's first frame (server-sent events)."""
    r = await api.get(f"/v1/workspaces/{ws}/wallboard/stream", headers=SUP)
    assert r.status == 200
    try:
        frame = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
    finally:
        r.close()
    return json.loads(frame.split(b"data: ", 1)[1])  # type: ignore[no-any-return]


def local_iso(at: float, zone: str) -> str:
    """A moment as the workspace's local wall-clock time, without an offset."""
    return (
        dt.datetime.fromtimestamp(at, dt.UTC)
        .astimezone(ZoneInfo(zone))
        .strftime("%Y-%m-%dT%H:%M:%S.%f")
    )


async def test_a_callback_keeps_its_place_in_the_served_order(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await add_agent(api, ws, "a1", {"cards": 5}, available=False)
    tiers = ["standard", "vip", "standard", "vip", "standard", "standard"]
    made = [await create(api, ws, f"c{i}", tier=t) for i, t in enumerate(tiers)]
    # some callers hang up at different moments, after later ones arrived
    for cid in ("c0", "c3", "c5"):
        r = await callback(api, ws, cid)
        assert r.status == 200, await r.text()
        out = await r.json()
        before = next(c for c in made if c["id"] == cid)
        assert out["rank"] == before["rank"] and out["enqueued_at"] == before["enqueued_at"]
        assert out["state"] == "queued" and out["callback"]["attempts"] == 0
        again = await callback(api, ws, cid)  # a retried request: the same answer
        assert again.status == 200 and (await again.json())["rank"] == out["rank"]
    expected = sorted(made, key=lambda c: (c["enqueued_at"] - TIERS[c["tier"]], c["id"]))
    served = []
    r = await api.post(
        f"/v1/workspaces/{ws}/agents/a1/state",
        json={"state": "available"},
        headers=agent_headers("a1"),
    )
    assert r.status == 200
    for _ in made:
        offer = await next_offer(api, ws, "a1")
        served.append(offer["id"])
        await agent_action(api, ws, offer["id"], "a1", "accept")
        if offer["callback"] is not None:
            r = await attempt(api, ws, offer["id"], "a1", "answered")
            assert r.status == 200 and (await r.json())["callback"]["reached"] is True
        await agent_action(api, ws, offer["id"], "a1", "complete")
        if len(served) == len(made):
            break
    assert served == [c["id"] for c in expected]
    kinds = [e["type"] for e in await events(api, ws)]
    # a callback is no new arrival: one created event per contact, one request each
    assert kinds.count("contact.created") == len(made)
    assert kinds.count("contact.callback_requested") == 3


async def events(api: Any, ws: str) -> list[dict[str, Any]]:
    r = await api.get(f"/v1/workspaces/{ws}/events?limit=1000", headers=SUP)
    assert r.status == 200, await r.text()
    return (await r.json())["events"]  # type: ignore[no-any-return]


def at_of(contact: dict[str, Any], kind: str, **match: Any) -> list[float]:
    """Redis times (s) of the contact's timeline entries of one type."""
    return [
        e["at"]
        for e in contact["timeline"]
        if e["type"] == kind and all(e.get(k) == v for k, v in match.items())
    ]


async def test_a_scheduled_callback_waits_for_its_window(api: Any, ws: str) -> None:
    zone = "Asia/Tokyo"  # local times without an offset are the workspace's
    cfg = config()
    cfg["timezone"] = zone
    cfg["sla_policies"] = {"std": {"answer": 60}}
    cfg["defaults"]["sla"] = "std"
    now = (await put_config(api, ws, cfg))["updated_at"]  # Redis time of the write
    await add_agent(api, ws, "a1", {"cards": 5})  # free and idle all along
    opens = round(now + 3.0, 3)  # room for a loaded machine to create it first
    closes = opens + 3600
    body = {
        "id": "cb1",
        "channel": "voice",
        "customer": {"id": "cu-1", "tier": "vip"},
        "callback": {
            "phone": PHONE,
            "not_before": local_iso(opens, zone),
            "not_after": local_iso(closes, zone),
        },
    }
    r = await api.post(f"/v1/workspaces/{ws}/contacts", json=body, headers=GW)
    assert r.status == 201, await r.text()
    made = await r.json()
    assert made["state"] == "scheduled" and made["agent"] is None
    assert made["callback"]["window"] == {"not_before": opens, "not_after": closes}
    assert made["callback"]["next_attempt_at"] == opens
    # ranks as if it arrived when the window opens, its tier offset kept
    assert made["enqueued_at"] == opens and made["rank"] == opens - TIERS["vip"]
    r = await api.get(f"/v1/workspaces/{ws}/agents/a1/offers", headers=agent_headers("a1"))
    assert (await r.json())["offers"] == []
    offer = await next_offer(api, ws, "a1")
    assert offer["id"] == "cb1" and offer["callback"]["phone"] == PHONE  # the holder's view
    got = await get(api, ws, "cb1")
    assert min(at_of(got, "contact.offered")) >= opens
    assert at_of(got, "contact.callback_due") and got["state"] == "offered"
    answer = got["sla_clocks"]["answer"]
    assert answer["started_at"] == opens and answer["due_at"] == opens + 60


async def test_failed_dials_are_retried_after_the_gap_then_end_unreached(
    api: Any, ws: str, redis_url: str
) -> None:
    cfg = config(max_attempts=2, retry_gap="1s")
    cfg["channels"]["voice"]["max_wait"] = 0.5  # holding callers give up; a callback does not
    await put_config(api, ws, cfg)
    await add_agent(api, ws, "a1", {"cards": 5}, available=False)
    await create(api, ws, "c1")
    r = await callback(api, ws, "c1")
    assert r.status == 200, await r.text()
    r = await api.post(
        f"/v1/workspaces/{ws}/agents/a1/state",
        json={"state": "available"},
        headers=agent_headers("a1"),
    )
    assert r.status == 200
    for n in (1, 2):
        offer = await next_offer(api, ws, "a1")
        assert offer["id"] == "c1" and offer["callback"]["attempts"] == n - 1
        await agent_action(api, ws, "c1", "a1", "accept")
        r = await attempt(api, ws, "c1", "a1", "no_answer")
        assert r.status == 200, await r.text()
        out = await r.json()
        assert out["callback"]["attempts"] == n and out["agent"] is None
        r = await api.get(f"/v1/workspaces/{ws}/agents/a1", headers=SUP)
        assert (await r.json())["load"] == 0  # free at once, no wrap-up
    assert out["state"] == "abandoned"
    got = await get(api, ws, "c1")
    tried = [e for e in got["timeline"] if e["type"] == "contact.callback_attempted"]
    assert [(e["actor"], e["state"], e["attempt"], e["outcome"]) for e in tried] == [
        ("agent:a1", "scheduled", 1, "no_answer"),
        ("agent:a1", "abandoned", 2, "no_answer"),
    ]
    raw = [e for e in await events(api, ws) if e["type"] == "contact.callback_attempted"]
    assert [(e["data"]["attempt"], e["data"]["outcome"]) for e in raw] == [
        (1, "no_answer"),
        (2, "no_answer"),
    ]
    ended = [e for e in await events(api, ws) if e["type"] == "contact.abandoned"]
    assert [e["data"]["reason"] for e in ended] == ["callback_unreached"]
    offered = at_of(got, "contact.offered")
    assert len(offered) == 2 and offered[1] >= tried[0]["at"] + 1.0
    assert not at_of(got, "contact.expired")
    text = await (await api.get("/metrics")).text()
    counted = {
        (s.labels["event"], s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "router_contact_events_total"
        and s.labels.get("workspace") == ws
        and s.labels["event"].startswith("callback_")
    }
    assert counted == {
        ("callback_requested", 1),
        ("callback_no_answer", 2),
        ("callback_unreached", 1),
    }
    # the stream replays to the same loads: every hold released once, nothing left held
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        replayed = replay(await read_events(client, WsKeys(ws).events))
    finally:
        await client.aclose()
    assert replayed["problems"] == [] and replayed["holder"] == {}
    assert replayed["load"]["a1"] == 0 and replayed["ended"] == {"c1": 1}
    tile = next(t for t in (await first_board(api, ws))["tiles"] if t["pool"] == "cards")
    assert tile["callbacks_today"] == 1 and tile["callbacks_reached_today"] == 0


async def test_the_number_is_masked_but_for_the_holding_agent(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await add_agent(api, ws, "a1", {"cards": 5}, available=False)
    await create(api, ws, "c1")
    r = await callback(api, ws, "c1")
    assert (await r.json())["callback"]["phone"] == "***58"  # the gateway's answer
    for who in (SUP, GW):
        seen = (await get(api, ws, "c1", who))["callback"]
        assert seen["phone"] == "***58" and seen["masked"] is True
    await api.post(
        f"/v1/workspaces/{ws}/agents/a1/state",
        json={"state": "available"},
        headers=agent_headers("a1"),
    )
    offer = await next_offer(api, ws, "a1")
    assert offer["callback"]["phone"] == PHONE and offer["callback"]["masked"] is False
    held = await get(api, ws, "c1", agent_headers("a1"))
    assert held["callback"]["phone"] == PHONE
    assert (await get(api, ws, "c1", SUP))["callback"]["phone"] == "***58"
    r = await attempt(api, ws, "c1", "a2", "answered")  # never in a2's hands
    assert r.status == 403 and (await r.json())["field"] == "contact_id"
    r = await attempt(api, ws, "c1", "a1", "answered")  # offered, not accepted yet
    assert r.status == 409 and (await r.json())["state"] == "offered"
    dump = json.dumps(await events(api, ws))
    assert "7946" not in dump and "0958" not in dump


async def test_bad_callback_requests_name_the_problem(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await create(api, ws, "c1")
    r = await callback(api, ws, "c1", phone="call me maybe")
    assert r.status == 422 and (await r.json())["field"] == "phone"
    r = await callback(api, ws, "c1", not_before="2030-01-02T10:00", not_after="2030-01-02T09:00")
    assert r.status == 422 and (await r.json())["field"] == "not_after"
    assert (await get(api, ws, "c1"))["callback"] is None  # nothing changed
    await add_agent(api, ws, "a1", {"cards": 5})  # takes c1: no longer waiting
    r = await callback(api, ws, "c1")
    problem = await r.json()
    assert r.status == 409 and problem["state"] == "offered"
    r = await callback(api, ws, "nobody")
    assert r.status in (403, 404)
    await create(api, ws, "c2")
    assert (await callback(api, ws, "c2")).status == 200
    r = await callback(api, ws, "c2", phone="+44 1632 960000")  # another number: no retry
    assert r.status == 409 and (await r.json())["state"] == "queued"
    assert (await get(api, ws, "c2"))["callback"]["phone"] == "***58"  # the first number


async def poll(api: Any, ws: str, cid: str, kind: str, tries: int = 200) -> dict[str, Any]:
    """The contact once its timeline has an entry of `kind` (timers fire on their own)."""
    for _ in range(tries):
        got = await get(api, ws, cid)
        if at_of(got, kind):
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {kind} on {cid}: {got['timeline']}")


async def test_a_missed_window_escalates_by_the_answer_clock(api: Any, ws: str) -> None:
    cfg = config()
    cfg["sla_policies"] = {"std": {"answer": 600}}
    cfg["defaults"]["sla"] = "std"
    now = (await put_config(api, ws, cfg))["updated_at"]
    closes = round(now + 2.0, 3)
    body = {
        "id": "cb1",
        "channel": "voice",
        "customer": {"id": "cu-1"},
        # an offset of its own: not read in the workspace's timezone
        "callback": {
            "phone": PHONE,
            "not_after": dt.datetime.fromtimestamp(closes, dt.UTC).isoformat(),
        },
    }
    r = await api.post(f"/v1/workspaces/{ws}/contacts", json=body, headers=GW)
    assert r.status == 201, await r.text()
    assert (await r.json())["state"] == "queued"  # no window start: waits at once
    got = await poll(api, ws, "cb1", "sla.breached")
    missed = at_of(got, "contact.callback_window_missed")
    assert missed and missed[0] >= closes
    assert min(at_of(got, "sla.breached")) >= closes  # not at the 600 s target
    assert got["sla_clocks"]["answer"]["status"] == "breached"
    assert got["state"] == "queued"  # still to be called back


async def test_a_queued_callback_with_a_later_window_restarts_its_clocks(api: Any, ws: str) -> None:
    cfg = config()
    cfg["sla_policies"] = {"std": {"answer": 60}}
    cfg["defaults"]["sla"] = "std"
    await put_config(api, ws, cfg)
    made = await create(api, ws, "c1")
    opens = round(made["enqueued_at"] + 3600, 3)
    r = await callback(api, ws, "c1", not_before=local_iso(opens, "UTC"))
    assert r.status == 200, await r.text()
    out = await r.json()
    assert out["state"] == "scheduled" and out["rank"] == opens
    answer = (await get(api, ws, "c1"))["sla_clocks"]["answer"]
    assert answer["started_at"] == opens and answer["due_at"] == opens + 60
    await add_agent(api, ws, "a1", {"cards": 5})
    assert (await get(api, ws, "c1"))["agent"] is None  # out of every queue until then
    r = await api.get(f"/v1/workspaces/{ws}/pools/cards", headers=SUP)
    assert (await r.json())["depth"] == 0


async def test_callback_config_and_creation_problems(api: Any, ws: str) -> None:
    cfg = config(channel="video")
    r = await api.put(f"/v1/workspaces/{ws}", json=cfg, headers=ADM)
    problem = await r.json()
    assert r.status == 422 and "callbacks.channel" in [e["field"] for e in problem["errors"]]
    r = await api.put(f"/v1/workspaces/{ws}", json=config(retry_gap="soon"), headers=ADM)
    assert r.status == 422 and (await r.json())["field"].startswith("callbacks.retry_gap")
    await put_config(api, ws, config())
    body = {
        "id": "cb1",
        "channel": "chat",
        "customer": {"id": "cu-1"},
        "callback": {"phone": PHONE},
    }
    r = await api.post(f"/v1/workspaces/{ws}/contacts", json=body, headers=GW)
    assert r.status == 422 and (await r.json())["field"] == "channel"
    body["channel"] = "voice"
    body["callback"] = {"phone": PHONE, "not_after": "2001-01-01T00:00"}
    r = await api.post(f"/v1/workspaces/{ws}/contacts", json=body, headers=GW)
    assert r.status == 422 and (await r.json())["field"] == "callback.not_after"
    r = await api.get(f"/v1/workspaces/{ws}/contacts/cb1", headers=SUP)
    assert r.status in (403, 404)  # nothing was created


async def test_a_chat_asking_for_a_call_comes_back_as_voice(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await add_agent(api, ws, "a1", {"cards": 5}, available=False)
    made = await create(api, ws, "c1", channel="chat")
    r = await callback(api, ws, "c1")
    out = await r.json()
    assert out["channel"] == "voice" and out["rank"] == made["rank"]
    asked = [e for e in await events(api, ws) if e["type"] == "contact.callback_requested"]
    assert [e["data"].get("previous_channel") for e in asked] == ["chat"]
    await api.post(
        f"/v1/workspaces/{ws}/agents/a1/state",
        json={"state": "available"},
        headers=agent_headers("a1"),
    )
    assert (await next_offer(api, ws, "a1"))["id"] == "c1"
    r = await api.get(f"/v1/workspaces/{ws}/agents/a1", headers=SUP)
    assert (await r.json())["load"] == 100  # a voice task's weight, not a chat's 25
