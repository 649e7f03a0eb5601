"""PATCH /contacts/{id} through the API against a real Redis: a changed contact
is re-ranked from its arrival, re-routed by the rules (its age kept for the
stages), its SLA clocks re-planned by the policy the new values select with
the budget used kept, and the change is audited; ended contacts, bad fields and
other gateways' contacts are refused."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from router.api.app import create_app
from router.runtime.settings import Settings, demo_token_spec, token_hash
from router.store.keys import WsKeys
from tests.routing.test_decisions import contact, offers
from tests.support.client import (
    ADM,
    AG_FOR,
    GW,
    JWT_SECRET,
    SUP,
    act,
    add_agent,
    create,
    put_config,
    small_config,
    supervisor_headers,
)

MERGE = {"Content-Type": "application/merge-patch+json"}


def routed_config(**extra: Any) -> dict[str, Any]:
    """Loans by intent or by a wealth segment; complaints under a stricter SLA."""
    cfg = small_config(sla="relaxed")
    cfg["channels"]["voice"]["offer_timeout"] = 600
    cfg["rules"] = [
        {"name": "loans", "when": {"intent": ["loan"]}, "stages": [{"pools": ["loans"]}]},
        {
            "name": "wealth",
            "when": {"attributes": {"segment": ["wealth"]}},
            "stages": [{"pools": ["loans"]}],
        },
        {"name": "complaint", "when": {"intent": ["complaint"]}, "sla": "strict"},
    ]
    cfg["sla_policies"] = {"relaxed": {"answer": 60}, "strict": {"answer": 20}}
    return cfg | extra


async def patch(
    api: TestClient,  # type: ignore[type-arg]
    ws: str,
    cid: str,
    body: Any,
    headers: dict[str, str] = GW,
) -> tuple[int, dict[str, Any]]:
    r = await api.patch(
        f"/v1/workspaces/{ws}/contacts/{cid}", json=body, headers={**headers, **MERGE}
    )
    return r.status, await r.json(content_type=None)


async def events(api: Any, ws: str, kind: str) -> list[dict[str, Any]]:
    r = await api.get(f"/v1/workspaces/{ws}/events?limit=1000&type={kind}", headers=SUP)
    assert r.status == 200, await r.text()
    return (await r.json())["events"]  # type: ignore[no-any-return]


async def wait_for(api: Any, ws: str, cid: str, pred: Any) -> dict[str, Any]:
    for _ in range(200):
        c = await contact(api, ws, cid)
        if pred(c):
            return c
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not reached for {cid}: {c}")


async def timers_of(redis_url: str, ws: str, cid: str, kind: str) -> dict[str, float]:
    """The contact's timers of one kind (stage, sla, ...) by member: their due times."""
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        rows = await client.zrange(WsKeys(ws).timers, 0, -1, withscores=True)
    finally:
        await client.aclose()
    return {m: s for m, s in rows if m.split("|")[:2] == [kind, cid]}


# --- rank -----------------------------------------------------------------------


async def test_a_patch_to_vip_serves_the_newest_contact_first(api: Any, ws: str) -> None:
    await put_config(api, ws, routed_config())
    for cid in ("c1", "c2", "c3"):
        await create(api, ws, cid)
    status, body = await patch(api, ws, "c3", {"tier": "vip"})
    assert status == 200, body
    assert body["tier"] == "vip" and body["state"] == "queued"
    # the vip offset (120 s in the config) counted from its own arrival
    assert body["priority_offset"] == 120
    assert abs(body["rank"] - (body["enqueued_at"] - 120)) < 0.0005
    await add_agent(api, ws, "a1", {"cards": 5})
    assert await offers(api, ws, "a1") == ["c3"]
    # then the oldest of the others
    await add_agent(api, ws, "a2", {"cards": 5})
    assert await offers(api, ws, "a2") == ["c1"]


async def test_a_boost_is_set_not_added_and_clears_with_null(api: Any, ws: str) -> None:
    await put_config(api, ws, routed_config())
    created = await create(api, ws, "c1")
    for _ in range(2):  # sent twice (a retry): one boost
        status, body = await patch(api, ws, "c1", {"boost": 30})
        assert status == 200 and body["priority_offset"] == 30
    assert abs(body["rank"] - (created["enqueued_at"] - 30)) < 0.0005
    assert len(await events(api, ws, "contact.updated")) == 1  # the retry changed nothing
    status, body = await patch(api, ws, "c1", {"boost": None})
    assert status == 200 and body["priority_offset"] == 0
    assert abs(body["rank"] - created["enqueued_at"]) < 0.0005


async def test_a_boost_or_skills_change_keeps_the_route_a_new_intent_replaces_it(
    api: Any, ws: str
) -> None:
    await put_config(api, ws, routed_config())
    await create(api, ws, "c1")
    r = await act(api, ws, "c1", "transfer", pool="loans", reason="wrong queue")
    assert r.status == 200 and (await r.json())["pools"] == ["loans"]
    status, body = await patch(
        api, ws, "c1", {"boost": 15, "skills": [{"skill": "loans", "min": 2}]}
    )
    assert status == 200 and body["pools"] == ["loans"]  # the transfer stands
    await add_agent(api, ws, "b1", {"loans": 1})  # below the required level now
    assert await offers(api, ws, "b1") == []
    status, body = await patch(api, ws, "c1", {"intent": "card", "skills": None})
    assert status == 200 and body["pools"] == ["cards"]  # the rules' route again
    assert body["priority_offset"] == 15


# --- route ------------------------------------------------------------------------


async def test_a_new_intent_moves_the_contact_to_the_other_pool(api: Any, ws: str) -> None:
    await put_config(api, ws, routed_config())
    await add_agent(api, ws, "b1", {"loans": 5})
    c = await create(api, ws, "c1")
    assert c["pools"] == ["cards"] and c["state"] == "queued"
    assert await offers(api, ws, "b1") == []
    status, body = await patch(api, ws, "c1", {"intent": "loan"})
    assert status == 200, body
    # an agent of the new pool takes it at once
    assert body["state"] == "offered" and body["agent"] == "b1"
    assert body["pools"] == ["loans"] and body["rules"] == ["loans"]
    assert await offers(api, ws, "b1") == ["c1"]
    r = await api.get(f"/v1/workspaces/{ws}/pools/cards", headers=SUP)
    assert (await r.json())["depth"] == 0  # no longer waiting in the old pool


async def test_attributes_merge_and_a_null_removes_one(api: Any, ws: str) -> None:
    await put_config(api, ws, routed_config())
    c = await create(api, ws, "c1", attributes={"segment": "wealth", "branch": 12})
    assert c["pools"] == ["loans"]
    status, body = await patch(api, ws, "c1", {"attributes": {"branch": 13}})
    assert status == 200 and body["pools"] == ["loans"]  # segment kept: merged
    status, body = await patch(api, ws, "c1", {"attributes": {"segment": None}})
    assert status == 200 and body["pools"] == ["cards"] and body["rules"] == []
    await add_agent(api, ws, "a1", {"cards": 5})
    assert await offers(api, ws, "a1") == ["c1"]


async def test_an_offered_contact_keeps_its_agent_and_requeues_by_the_new_route(
    api: Any, ws: str
) -> None:
    await put_config(api, ws, routed_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    await create(api, ws, "c1")
    status, body = await patch(api, ws, "c1", {"intent": "loan", "tier": "vip"})
    assert status == 200 and body["state"] == "offered" and body["agent"] == "a1"
    assert body["pools"] == ["loans"]
    await add_agent(api, ws, "b1", {"loans": 5})
    assert await offers(api, ws, "b1") == []  # not taken from the agent it was offered to
    r = await act(api, ws, "c1", "reject", agent_id="a1")
    assert r.status == 200
    after = await contact(api, ws, "c1")
    assert after["state"] == "offered" and after["agent"] == "b1"  # the new pool's agent
    assert abs(after["rank"] - (after["enqueued_at"] - 120)) < 0.0005


async def test_stages_follow_the_new_route_by_the_contacts_age(
    api: Any, ws: str, redis_url: str
) -> None:
    cfg = routed_config()
    cfg["defaults"]["stages"] = [{"pools": ["cards"]}, {"pools": ["loans"], "after": 600}]
    cfg["rules"][0]["stages"] = [{"pools": ["loans"]}, {"pools": ["cards"], "after": 1.5}]
    await put_config(api, ws, cfg)
    c1 = await create(api, ws, "c1")
    assert await timers_of(redis_url, ws, "c1", "stage") == {
        "stage|c1|2": round(c1["enqueued_at"] * 1000) + 600_000
    }
    status, body = await patch(api, ws, "c1", {"intent": "loan"})
    assert status == 200 and body["pools"] == ["loans"] and body["stage"] == 1
    # the old stage's timer is gone; the new one counts from the contact's arrival
    timers = await timers_of(redis_url, ws, "c1", "stage")
    assert timers == {"stage|c1|2": round(c1["enqueued_at"] * 1000) + 1500}
    got = await wait_for(api, ws, "c1", lambda c: c["stage"] == 2)
    assert got["pools"] == ["loans", "cards"]
    # a contact already older than the second stage reaches it on the update
    await create(api, ws, "c2")
    await asyncio.sleep(1.6)
    status, body = await patch(api, ws, "c2", {"intent": "loan"})
    assert status == 200 and body["stage"] == 2 and body["pools"] == ["loans", "cards"]
    assert await timers_of(redis_url, ws, "c2", "stage") == {}


# --- SLA ------------------------------------------------------------------------


async def test_a_stricter_policy_replans_the_clock_keeping_the_budget_used(
    api: Any, ws: str, redis_url: str
) -> None:
    await put_config(api, ws, routed_config())
    await create(api, ws, "c1")
    before = (await contact(api, ws, "c1"))["sla_clocks"]["answer"]
    assert before["policy"] == "relaxed"
    assert abs(before["due_at"] - (before["started_at"] + 60)) < 0.0005
    await asyncio.sleep(0.3)  # some budget used under the relaxed policy
    status, body = await patch(api, ws, "c1", {"intent": "complaint"})
    assert status == 200 and body["sla"] == "strict"
    assert body["sla_clocks"]["answer"]["policy"] == "strict"
    clock = (await contact(api, ws, "c1"))["sla_clocks"]["answer"]
    # the budget used is kept: due 20 s (strict) after the clock started, not after the patch
    assert clock["policy"] == "strict" and clock["status"] == "active"
    assert clock["started_at"] == before["started_at"]
    assert abs(clock["due_at"] - (before["started_at"] + 20)) < 0.0005
    # its breach timer is the only SLA timer left, at that due time
    sla_timers = await timers_of(redis_url, ws, "c1", "sla")
    assert list(sla_timers.values()) == [round(clock["due_at"] * 1000)]


async def test_clocks_the_new_policy_lacks_are_cancelled_and_those_it_adds_start_at_arrival(
    api: Any, ws: str
) -> None:
    cfg = routed_config()
    cfg["sla_policies"] = {
        "relaxed": {"answer": 60, "first_response": 120},
        "strict": {"answer": 20, "resolve": 3600},
    }
    await put_config(api, ws, cfg)
    created = await create(api, ws, "c1")
    status, body = await patch(api, ws, "c1", {"intent": "complaint"})
    assert status == 200
    clocks = body["sla_clocks"]
    assert clocks["first_response"]["status"] == "cancelled"
    resolve = clocks["resolve"]
    assert resolve["status"] == "active" and resolve["policy"] == "strict"
    # as if it had run since the contact arrived
    assert resolve["started_at"] == created["created_at"]
    assert abs(resolve["due_at"] - (created["created_at"] + 3600)) < 0.0005
    assert abs(clocks["answer"]["due_at"] - (created["created_at"] + 20)) < 0.0005
    kinds = [e["type"] for e in (await contact(api, ws, "c1"))["timeline"]]
    assert kinds[-4:] == ["contact.updated", "sla.cancelled", "sla.replanned", "sla.replanned"]


async def test_an_escalation_boost_stays_and_a_breached_clock_is_not_breached_again(
    api: Any, ws: str
) -> None:
    cfg = routed_config()
    breach_boost = {"at": 1, "actions": [{"do": "boost", "seconds": 50}]}
    cfg["sla_policies"]["relaxed"] = {"answer": {"target": 0.2, "ladder": [breach_boost]}}
    cfg["sla_policies"]["strict"] = {"answer": 0.1}  # used up already when it applies
    await put_config(api, ws, cfg)
    created = await create(api, ws, "c1")
    await wait_for(api, ws, "c1", lambda c: c["priority_offset"] == 50)
    status, body = await patch(api, ws, "c1", {"tier": "vip", "intent": "complaint"})
    assert status == 200 and body["sla"] == "strict"
    assert body["priority_offset"] == 120 + 50  # the vip offset and the escalation's boost
    assert abs(body["rank"] - (created["enqueued_at"] - 170)) < 0.0005
    answer = body["sla_clocks"]["answer"]
    assert answer["status"] == "breached"
    assert abs(answer["due_at"] - (answer["started_at"] + 0.1)) < 0.0005
    await asyncio.sleep(0.3)  # the new ladder's breach, were it scheduled, would fire at once
    timeline = (await contact(api, ws, "c1"))["timeline"]
    assert [e["type"] for e in timeline].count("sla.breached") == 1


async def test_the_new_policys_breach_fires(api: Any, ws: str) -> None:
    cfg = routed_config()
    cfg["sla_policies"]["strict"] = {"answer": 0.5}
    await put_config(api, ws, cfg)
    await create(api, ws, "c1")
    status, _ = await patch(api, ws, "c1", {"intent": "complaint"})
    assert status == 200
    got = await wait_for(api, ws, "c1", lambda c: c["sla_clocks"]["answer"]["status"] == "breached")
    breached = [e for e in got["timeline"] if e["type"] == "sla.breached"]
    assert len(breached) == 1 and got["sla_clocks"]["answer"]["policy"] == "strict"


# --- refusals and audit -----------------------------------------------------------


async def test_an_ended_contact_cannot_be_changed(api: Any, ws: str) -> None:
    await put_config(api, ws, routed_config())
    await create(api, ws, "c1")
    r = await act(api, ws, "c1", "abandon")
    assert r.status == 200
    status, body = await patch(api, ws, "c1", {"tier": "vip"})
    assert status == 409 and body["state"] == "abandoned"
    assert (await contact(api, ws, "c1"))["tier"] == "standard"


async def test_bad_fields_are_422_naming_them(api: Any, ws: str) -> None:
    await put_config(api, ws, routed_config())
    await create(api, ws, "c1")
    cases = [
        ({"tier": "platinum"}, "tier"),
        ({"colour": "red"}, "colour"),
        ({"boost": -5}, "boost"),
        ({"skills": [{"skill": "mortgages", "min": 3}]}, "skills[0].skill"),
        ({"attributes": {f"a{i}": i for i in range(33)}}, "attributes"),
        ({"intent": "no spaces allowed"}, "intent"),
    ]
    for patch_body, field in cases:
        status, body = await patch(api, ws, "c1", patch_body)
        assert status == 422, (patch_body, body)
        assert body["field"] == field, (patch_body, body)
    assert await events(api, ws, "contact.updated") == []
    status, body = await patch(api, ws, "nope", {"tier": "vip"}, headers=ADM)
    assert status == 404 and body["field"] == "contact_id"


async def test_only_the_creating_gateway_or_a_supervisor_in_scope_may_patch(
    aiohttp_client: Any, redis_url: str, ws: str
) -> None:
    tokens = demo_token_spec() + f",ivr:gateway:{token_hash('tok-ivr')}"
    settings = Settings.from_env(
        {
            "ROUTER_TOKENS": tokens,
            "ROUTER_JWT_SECRET": JWT_SECRET,
            "ROUTER_METRICS_GROUP": uuid.uuid4().hex,
        },
        redis_url=redis_url,
        timer_poll=0.01,
    )
    api = await aiohttp_client(create_app(settings))
    await put_config(api, ws, routed_config())
    await create(api, ws, "c1")
    other = {"Authorization": "Bearer tok-ivr"}
    status, body = await patch(api, ws, "c1", {"tier": "vip"}, headers=other)
    assert status == 403 and body["field"] == "contact_id"
    # a supervisor of a team none of whose agents has handled it
    team_sup = supervisor_headers("s1", ["t9"])
    status, _ = await patch(api, ws, "c1", {"tier": "vip"}, headers=team_sup)
    assert status == 403
    status, _ = await patch(api, ws, "c1", {"tier": "vip"}, headers=AG_FOR("a1"))
    assert status == 403
    assert (await contact(api, ws, "c1"))["tier"] == "standard"
    # once an agent of its team holds it, it is in that supervisor's scope
    await add_agent(api, ws, "a1", {"cards": 5}, team="t9")
    status, body = await patch(api, ws, "c1", {"tier": "vip"}, headers=team_sup)
    assert status == 200 and body["tier"] == "vip" and body["agent"] == "a1"
    for who in (GW, SUP, ADM):
        status, body = await patch(
            api, ws, "c1", {"boost": 10.0 + len(who["Authorization"])}, headers=who
        )
        assert status == 200, body


async def test_the_update_event_has_actor_before_and_after_but_no_attribute_values(
    api: Any, ws: str
) -> None:
    await put_config(api, ws, routed_config())
    created = await create(api, ws, "c1", attributes={"account": "AC-99817"})
    status, _ = await patch(
        api, ws, "c1", {"tier": "vip", "attributes": {"account": "AC-55555"}}, headers=SUP
    )
    assert status == 200
    [ev] = await events(api, ws, "contact.updated")
    data = ev["data"]
    assert ev["actor"] == "supervisor:supervisor" == data["actor"]
    enq_ms = round(created["enqueued_at"] * 1000)
    assert data["before"] == {"tier": "standard", "priority_offset_ms": 0, "rank": enq_ms}
    assert data["after"] == {"tier": "vip", "priority_offset_ms": 120_000, "rank": enq_ms - 120_000}
    assert data["attributes_changed"] == ["account"]
    timeline = (await contact(api, ws, "c1"))["timeline"]
    assert [e["type"] for e in timeline][-1] == "contact.updated"
    raw = await (await api.get(f"/v1/workspaces/{ws}/events?limit=1000", headers=SUP)).text()
    assert "AC-99817" not in raw and "AC-55555" not in raw
