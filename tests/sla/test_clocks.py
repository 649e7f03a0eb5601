"""SLA clocks end to end: ladders fire in order and once, boosts reorder the
queue, answers and abandons stop clocks, pause/resume keeps the budget, and a
low rating creates a follow-up contact with its own 24-hour SLA."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from redis.asyncio import Redis

from router.routing.library import Scripts
from router.store.keys import WsKeys
from tests.support.client import GW, SUP, act, add_agent, create, put_config, small_config


def sla_config(**policies: Any) -> dict[str, Any]:
    cfg = small_config()
    cfg["channels"]["voice"]["offer_timeout"] = 600
    cfg["sla_policies"] = policies
    return cfg


async def contact(api: Any, ws: str, cid: str) -> dict[str, Any]:
    r = await api.get(f"/v1/workspaces/{ws}/contacts/{cid}", headers=SUP)
    assert r.status == 200, await r.text()
    return await r.json()  # type: ignore[no-any-return]


async def wait_for(api: Any, ws: str, cid: str, pred: Any, within: float = 5.0) -> dict[str, Any]:
    for _ in range(int(within / 0.05)):
        c = await contact(api, ws, cid)
        if pred(c):
            return c
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not reached for {cid}: {c}")


def types(c: dict[str, Any], prefix: str = "sla.") -> list[str]:
    return [e["type"] for e in c["timeline"] if e["type"].startswith(prefix)]


async def test_ladder_fires_in_order_each_step_once(api: Any, ws: str) -> None:
    ladder = [
        {"after": 0.3, "actions": [{"do": "notify", "to": ["role:duty_manager"]}]},
        {"at": 0.5, "actions": [{"do": "notify", "to": ["team_supervisor"]}]},
    ]
    await put_config(
        api,
        ws,
        sla_config(std={"answer": {"target": 0.4, "ladder": ladder}})
        | {"defaults": {"tier": "standard", "stages": [{"pools": ["cards"]}], "sla": "std"}},
    )
    c = await create(api, ws, "c1")
    assert c["state"] == "queued" and c["sla"] == "std"
    got = await wait_for(api, ws, "c1", lambda c: "sla.escalated" in types(c))
    await asyncio.sleep(0.3)  # nothing fires twice, nothing after the last step
    got = await contact(api, ws, "c1")
    assert types(got) == ["sla.warning", "sla.breached", "sla.escalated"]
    clock = got["sla_clocks"]["answer"]
    assert clock["status"] == "breached" and clock["policy"] == "std"
    assert abs(clock["due_at"] - clock["started_at"] - 0.4) < 0.05
    steps = {e["type"]: e for e in got["timeline"] if e["type"].startswith("sla.")}
    assert [(e["clock"], e["step"]) for e in steps.values()] == [
        ("answer", 1),
        ("answer", 2),
        ("answer", 0),
    ]  # ladder indexes: config order
    warned = steps["sla.warning"]["at"] - clock["started_at"]
    escalated = steps["sla.escalated"]["at"] - clock["started_at"]
    # never early: at 0.5 x 0.4 s, and 0.3 s after the breach (how late is a benchmark)
    assert warned >= 0.2 - 0.002 and escalated >= 0.7 - 0.002
    assert all(e["late_ms"] >= 0 for e in steps.values())


async def test_boost_at_breach_changes_who_is_served_next(api: Any, ws: str) -> None:
    cfg = sla_config(
        fast={
            "answer": {
                "target": 0.2,
                "ladder": [{"at": 1.0, "actions": [{"do": "boost", "seconds": 300}]}],
            }
        }
    )
    cfg["rules"] = [
        {
            "name": "complaints",
            "when": {"intent": ["complaint"]},
            "stages": [{"pools": ["cards"]}],
            "sla": "fast",
        }
    ]
    await put_config(api, ws, cfg)
    await create(api, ws, "older")  # no SLA: would be served first by age
    await asyncio.sleep(0.05)
    newer = await create(api, ws, "newer", intent="complaint")
    boosted = await wait_for(api, ws, "newer", lambda c: "sla.breached" in types(c))
    assert boosted["rank"] == newer["rank"] - 300 and boosted["priority_offset"] == 300
    await add_agent(api, ws, "a1", {"cards": 5})
    assert (await contact(api, ws, "newer"))["agent"] == "a1"
    assert (await contact(api, ws, "older"))["state"] == "queued"


async def test_answer_before_target_is_met_and_nothing_fires(api: Any, ws: str) -> None:
    await put_config(
        api,
        ws,
        sla_config(std={"answer": 0.3})
        | {"defaults": {"tier": "standard", "stages": [{"pools": ["cards"]}], "sla": "std"}},
    )
    await add_agent(api, ws, "a1", {"cards": 5})
    await create(api, ws, "c1")
    r = await act(api, ws, "c1", "accept", agent_id="a1")
    assert r.status == 200
    await asyncio.sleep(0.5)
    got = await contact(api, ws, "c1")
    assert types(got) == ["sla.met"]
    assert got["sla_clocks"]["answer"]["status"] == "met"


async def test_a_contact_stays_indexed_for_replans_until_its_last_clock_stops(
    api: Any, ws: str, redis_url: str
) -> None:
    """A config change re-plans the running clocks of the contacts in the
    running-clock index: one clock stopping must not drop a contact whose
    other clock still runs, and the last one stopping must."""
    await put_config(
        api,
        ws,
        sla_config(std={"answer": 600, "resolve": 600})
        | {"defaults": {"tier": "standard", "stages": [{"pools": ["cards"]}], "sla": "std"}},
    )
    await add_agent(api, ws, "a1", {"cards": 5})
    await create(api, ws, "c1")
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        running = WsKeys(ws).sla_running
        assert await client.sismember(running, "c1")
        assert (await act(api, ws, "c1", "accept", agent_id="a1")).status == 200
        clocks = (await contact(api, ws, "c1"))["sla_clocks"]
        assert (clocks["answer"]["status"], clocks["resolve"]["status"]) == ("met", "active")
        assert await client.sismember(running, "c1")  # resolve still runs
        assert (await act(api, ws, "c1", "resolve")).status == 200
        clocks = (await contact(api, ws, "c1"))["sla_clocks"]
        assert clocks["resolve"]["status"] == "met"
        assert not await client.sismember(running, "c1")
    finally:
        await client.aclose()


async def test_abandon_cancels_every_clock(api: Any, ws: str, redis_url: str) -> None:
    await put_config(
        api,
        ws,
        sla_config(std={"answer": 0.3, "resolve": 600})
        | {"defaults": {"tier": "standard", "stages": [{"pools": ["cards"]}], "sla": "std"}},
    )
    await create(api, ws, "c1")
    assert (await act(api, ws, "c1", "abandon")).status == 200
    await asyncio.sleep(0.5)
    got = await contact(api, ws, "c1")
    assert types(got) == ["sla.cancelled", "sla.cancelled"]
    assert {k: v["status"] for k, v in got["sla_clocks"].items()} == {
        "answer": "cancelled",
        "resolve": "cancelled",
    }
    client = Redis.from_url(redis_url, decode_responses=True)
    try:  # no SLA timer of this contact is left behind
        timers = await client.zrange(WsKeys(ws).timers, 0, -1)
        assert not [t for t in timers if t.startswith("sla|c1|")]
    finally:
        await client.aclose()


async def test_pause_and_resume_keep_the_remaining_budget(api: Any, ws: str) -> None:
    await put_config(
        api,
        ws,
        sla_config(case={"resolve": 1.0})
        | {"defaults": {"tier": "standard", "stages": [{"pools": ["cards"]}], "sla": "case"}},
    )
    await create(api, ws, "c1")
    base = f"/v1/workspaces/{ws}/contacts/c1"
    await asyncio.sleep(0.3)
    r = await api.post(
        base + "/pause", json={"clock": "resolve", "reason": "waiting on customer"}, headers=GW
    )
    assert r.status == 200, await r.text()
    r = await api.post(base + "/pause", json={"clock": "resolve"}, headers=GW)
    assert r.status == 409 and (await r.json())["state"] == "paused"
    await asyncio.sleep(1.2)  # longer than the whole target: paused time does not count
    assert "sla.breached" not in types(await contact(api, ws, "c1"))
    r = await api.post(base + "/resume", json={"clock": "resolve"}, headers=GW)
    assert r.status == 200, await r.text()
    clock = (await contact(api, ws, "c1"))["sla_clocks"]["resolve"]
    assert clock["status"] == "active" and clock["paused_ms"] >= 1200
    # due = start + target + time paused (budget kept, to within clock noise)
    assert abs(clock["due_at"] - clock["started_at"] - 1.0 - clock["paused_ms"] / 1000) < 0.05
    got = await wait_for(api, ws, "c1", lambda c: "sla.breached" in types(c))
    assert types(got) == ["sla.paused", "sla.resumed", "sla.breached"]


async def test_low_rating_creates_a_follow_up_with_its_own_24h_sla(
    api: Any, ws: str, redis_url: str
) -> None:
    policies = {
        "std": {
            "answer": 60,
            "low_rating": {
                "csat_below": 3,
                "actions": [
                    {
                        "do": "create_followup",
                        "channel": "voice",
                        "intent": "callback",
                        "sla": "callback_24h",
                    },
                    {"do": "notify", "to": ["team_supervisor"]},
                ],
            },
        },
        "callback_24h": {"resolve": 86_400},
    }
    await put_config(
        api,
        ws,
        sla_config(**policies)
        | {"defaults": {"tier": "standard", "stages": [{"pools": ["cards"]}], "sla": "std"}},
    )
    r = await api.put(
        f"/v1/workspaces/{ws}/agents/a1",
        json={"skills": {"cards": 5}, "supervisor": "sup-7"},
        headers=SUP,
    )
    assert r.status == 200
    await api.post(f"/v1/workspaces/{ws}/agents/a1/state", json={"state": "available"}, headers=SUP)
    # a body without kind is the workspace's default survey: CSAT 1..5
    for cid, score in (("happy", 5), ("unhappy", 2)):
        await create(api, ws, cid)
        assert (await act(api, ws, cid, "accept", agent_id="a1")).status == 200
        assert (await act(api, ws, cid, "complete", agent_id="a1")).status == 200
        r = await api.post(
            f"/v1/workspaces/{ws}/contacts/{cid}/rating", json={"score": score}, headers=GW
        )
        assert r.status == 200, await r.text()
    # a retried rating changes nothing; a different score is refused
    r = await api.post(
        f"/v1/workspaces/{ws}/contacts/unhappy/rating", json={"score": 2}, headers=GW
    )
    assert r.status == 200
    r = await api.post(
        f"/v1/workspaces/{ws}/contacts/unhappy/rating", json={"score": 5}, headers=GW
    )
    assert r.status == 409
    r = await api.post(
        f"/v1/workspaces/{ws}/contacts/unhappy/rating",
        json={"kind": "csat", "score": 2},
        headers=GW,
    )
    assert r.status == 200  # the same answer, now naming its kind
    rated = [
        e for e in (await contact(api, ws, "unhappy"))["timeline"] if e["type"] == "contact.rated"
    ]
    assert len(rated) == 1
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        followups: list[dict[str, Any]] = []
        for _ in range(100):
            events = [
                msgspec.json.decode(e["e"])
                for _, e in await client.xrange(WsKeys(ws).events, "-", "+")
            ]
            followups = [
                e
                for e in events
                if e["type"] == "contact.created" and e["actor"] == "system:followup"
            ]
            if followups:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # and only one, though timers poll on
        events = [
            msgspec.json.decode(e["e"]) for _, e in await client.xrange(WsKeys(ws).events, "-", "+")
        ]
    finally:
        await client.aclose()
    assert (
        len(
            [
                e
                for e in events
                if e.get("actor") == "system:followup" and e["type"] == "contact.created"
            ]
        )
        == 1
    )
    low = next(e for e in events if e["type"] == "contact.rated" and e["contact"] == "unhappy")
    assert low["low"] is True and low["notify"] == ["person:sup-7"]
    assert low["kind"] == "csat" and low["score"] == 2
    fu = await contact(api, ws, followups[0]["contact"])
    assert fu["intent"] == "callback" and fu["sla"] == "callback_24h"
    assert fu["customer_id"] == "cu-unhappy" and fu["channel"] == "voice"
    resolve = fu["sla_clocks"]["resolve"]
    assert resolve["status"] == "active"
    assert abs(resolve["due_at"] - resolve["started_at"] - 86_400) < 0.01


async def test_sla_config_problems_are_listed_by_path(api: Any, ws: str) -> None:
    cfg = sla_config(
        bad={
            "calendar": "nowhere",
            "answer": {
                "target": 60,
                "ladder": [
                    {"at": 0.5, "after": 10},
                    {
                        "after": 30,
                        "actions": [
                            {"do": "expand", "pools": ["ghost"]},
                            {"do": "create_followup", "channel": "fax"},
                        ],
                    },
                ],
            },
        }
    )
    cfg["calendars"] = {"cn": {"timezone": "Asia/Shanghai", "hours": {"mon": ["18:00-09:00"]}}}
    r = await api.put(
        f"/v1/workspaces/{ws}", json=cfg, headers={"Authorization": "Bearer demo-admin"}
    )
    assert r.status == 422
    fields = {p["field"] for p in (await r.json())["errors"]}
    assert {
        "sla_policies.bad.calendar",
        "sla_policies.bad.answer.ladder[0]",
        "sla_policies.bad.answer.ladder[1].actions[0].pools[0]",
        "sla_policies.bad.answer.ladder[1].actions[1].channel",
    } <= fields
    assert any(f.startswith("calendars.cn.hours") for f in fields)


async def test_breach_reaches_a_webhook_signed_and_secrets_stay_hidden(api: Any, ws: str) -> None:
    import standardwebhooks

    from tests.support.receiver import Receiver, new_secret

    receiver = Receiver()
    await receiver.start()
    try:
        secret = new_secret()
        cfg = sla_config(std={"answer": 0.2}) | {
            "defaults": {"tier": "standard", "stages": [{"pools": ["cards"]}], "sla": "std"},
            "webhooks": {"crm": {"url": receiver.url(), "events": ["sla.*"], "secret": secret}},
        }
        await put_config(api, ws, cfg)
        await create(api, ws, "c1")
        for _ in range(100):
            if receiver.ok_ids():
                break
            await asyncio.sleep(0.05)
        _, msg_id, status, headers, body = receiver.calls[0]
        event = standardwebhooks.Webhook(secret).verify(body, headers)
        assert status == 200 and event["type"] == "sla.breached" and event["subject"] == "c1"
        assert event["source"] == f"/v1/workspaces/{ws}" and msg_id.endswith(".crm")
        r = await api.get(f"/v1/workspaces/{ws}", headers=SUP)
        text = await r.text()
        assert secret not in text and secret[6:] not in text
        assert (await r.json())["config"]["webhooks"]["crm"]["secret"] == "whsec_<redacted>"
        cfg["webhooks"]["crm"]["secret"] = "not-a-secret"
        r = await api.put(
            f"/v1/workspaces/{ws}", json=cfg, headers={"Authorization": "Bearer demo-admin"}
        )
        assert r.status == 422 and "not-a-secret" not in await r.text()
        assert (await r.json())["field"] == "webhooks.crm.secret"
    finally:
        await receiver.stop()


async def test_a_refired_sla_step_changes_nothing(api: Any, ws: str, redis_url: str) -> None:
    """A step fired again (a lost lease, a retried call) finds its marker and does nothing."""
    await put_config(
        api,
        ws,
        sla_config(
            std={
                "answer": {
                    "target": 3600,
                    "ladder": [{"at": 0.5, "actions": [{"do": "boost", "seconds": 60}]}],
                }
            }
        )
        | {"defaults": {"tier": "standard", "stages": [{"pools": ["cards"]}], "sla": "std"}},
    )
    c = await create(api, ws, "c1")
    client = Redis.from_url(redis_url, decode_responses=True)
    keys = WsKeys(ws)
    try:
        step = next(t for t in await client.zrange(keys.timers, 0, -1) if t.startswith("sla|c1|"))
        await client.zrem(keys.timers, step)  # take it out of the service's hands
        scripts = Scripts()
        args = [step, 0, step, 0]  # the same timer twice in one call, then again
        assert await scripts["fire"](
            keys=[keys.runtime, keys.timer_leases, keys.timer_lease_info], args=args, client=client
        ) == [1, 0]
        assert await scripts["fire"](
            keys=[keys.runtime, keys.timer_leases, keys.timer_lease_info],
            args=args[:2],
            client=client,
        ) == [0]
    finally:
        await client.aclose()
    got = await contact(api, ws, "c1")
    assert types(got, "sla.warning") == ["sla.warning"]
    assert got["rank"] == c["rank"] - 60  # boosted once, not three times


async def test_overdue_timers_fire_at_once_and_count_as_late(
    api: Any, ws: str, redis_url: str
) -> None:
    """After an outage (no replica running), what came due meanwhile fires at
    once and is counted late, with how late it was in the event."""
    from router.api.appkeys import TIMERS

    await put_config(
        api,
        ws,
        sla_config(std={"answer": {"target": 3600, "ladder": [{"at": 0.5}]}})
        | {"defaults": {"tier": "standard", "stages": [{"pools": ["cards"]}], "sla": "std"}},
    )
    await create(api, ws, "c1")
    late_before = api.server.app[TIMERS].late
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = WsKeys(ws)
        step = next(t for t in await client.zrange(keys.timers, 0, -1) if t.startswith("sla|c1|"))
        now_s, now_us = await client.time()
        await client.zadd(keys.timers, {step: now_s * 1000 + now_us // 1000 - 5000}, xx=True)
    finally:
        await client.aclose()
    # A replica coming back claims at once; this one was idle, sleeping until the
    # step's old due time (the score moved under it without the scripts' wake-up).
    api.server.app[TIMERS].wake(ws)
    got = await wait_for(api, ws, "c1", lambda c: "sla.warning" in types(c))
    warning = next(e for e in got["timeline"] if e["type"] == "sla.warning")
    assert warning["at"] - got["sla_clocks"]["answer"]["started_at"] < 60  # not at 1800 s
    assert warning["late_ms"] >= 5000
    # the event is visible as soon as the script ran; the worker counts the fire
    # when its reply comes back, which a busy event loop may deliver a bit later
    timers = api.server.app[TIMERS]
    for _ in range(100):
        if timers.late > late_before:
            break
        await asyncio.sleep(0.05)
    assert timers.late == late_before + 1


async def test_config_change_replans_running_clocks_keeping_the_budget(api: Any, ws: str) -> None:
    cfg = sla_config(std={"answer": 3600}, other={"answer": 3600})
    cfg["rules"] = [
        {
            "name": "loans",
            "when": {"intent": ["loan"]},
            "stages": [{"pools": ["loans"]}],
            "sla": "other",
        }
    ]
    cfg["defaults"]["sla"] = "std"
    await put_config(api, ws, cfg)
    await create(api, ws, "c1")
    await create(api, ws, "c2", intent="loan")
    before = {c: (await contact(api, ws, c))["sla_clocks"]["answer"] for c in ("c1", "c2")}
    await asyncio.sleep(0.3)
    cfg["sla_policies"]["std"] = {"answer": 1.0}  # the target drops from an hour to a second
    await put_config(api, ws, cfg)
    c1 = await contact(api, ws, "c1")
    clock = c1["sla_clocks"]["answer"]
    assert types(c1) == ["sla.replanned"] and clock["status"] == "active"
    # due counts from the arrival: the 0.3 s already waited are spent, not forgotten
    assert abs(clock["due_at"] - clock["started_at"] - 1.0) < 0.05
    assert (await contact(api, ws, "c2"))["sla_clocks"]["answer"] == before["c2"]
    await put_config(api, ws, cfg)  # same definitions again: nothing to re-plan
    got = await wait_for(api, ws, "c1", lambda c: "sla.breached" in types(c))
    assert types(got) == ["sla.replanned", "sla.breached"]
    assert types(await contact(api, ws, "c2")) == []
