"""A supervisor's hands: listing agents, a pool's queue, assigning a waiting
contact to a named agent, moving it to another pool, signing an agent out,
and not-ready reason codes. Each action is refused outside a team-scoped
supervisor's teams (403, the same body whether or not the target exists) and
audited inside them (an event naming the supervisor)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.client import (
    ADM,
    AG_FOR,
    SUP,
    act,
    add_agent,
    create,
    put_config,
    small_config,
    supervisor_headers,
)

OFFSETS = {"standard": 0, "gold": 45, "vip": 120}


supervisor = supervisor_headers


LEAD = supervisor("lead1", ["t1"])  # team t1 only
OUTSIDER = supervisor("lead9", ["t9"])  # a team with no agents here


def config(codes: bool = True) -> dict[str, Any]:
    cfg = small_config()
    cfg["tiers"]["gold"] = {"priority_offset": OFFSETS["gold"]}
    for ch in cfg["channels"].values():
        ch["offer_timeout"] = 600  # no offer times out during a test
    cfg["rules"] = [
        {"name": "loans", "when": {"intent": ["loan"]}, "stages": [{"pools": ["loans"]}]}
    ]
    if codes:
        cfg["agent_states"] = {
            "reasons": {"lunch": {"label": "Lunch"}, "training": {"label": "Training"}}
        }
    return cfg


async def events(api: Any, ws: str, kind: str, **data: Any) -> list[dict[str, Any]]:
    """Events of type `kind` whose data has every given value."""
    r = await api.get(f"/v1/workspaces/{ws}/events?type={kind}&limit=1000", headers=ADM)
    assert r.status == 200, await r.text()
    return [
        e for e in (await r.json())["events"] if all(e["data"].get(k) == v for k, v in data.items())
    ]


async def problem(r: Any, status: int, field: str) -> dict[str, Any]:
    body: dict[str, Any] = await r.json(content_type=None)
    assert r.status == status, body
    assert r.content_type == "application/problem+json"
    assert body["field"] == field, body
    return body


async def refused_alike(api: Any, method: str, path: str, real: str, ghost: str, **kw: Any) -> str:
    """403 for an existing `real` and a made-up `ghost` id, with the same body."""
    bodies = []
    for target in (real, ghost):
        r = await api.request(method, path.format(target), **kw)
        body = await r.json(content_type=None)
        assert r.status == 403, body
        bodies.append(body)
    assert bodies[0] == {**bodies[1], "detail": bodies[1]["detail"].replace(ghost, real)}
    return str(bodies[0]["field"])


async def pages(api: Any, url: str, headers: dict[str, str], limit: int) -> list[dict[str, Any]]:
    """Every item of a paged list (`agents` or `waiting`), page by page."""
    items: list[dict[str, Any]] = []
    cursor = None
    sep = "&" if "?" in url else "?"
    while True:
        q = f"{url}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        r = await api.get(q, headers=headers)
        assert r.status == 200, await r.text()
        page = await r.json()
        got = page.get("agents", page.get("waiting"))
        assert len(got) <= limit
        assert got or (not items and page["next"] is None)  # no empty page at the end
        items += got
        cursor = page["next"]
        if cursor is None:
            return items


def rank_ms(contact: dict[str, Any]) -> int:
    """The rank the engine must give: enqueued_at minus the tier's offset."""
    return round(contact["enqueued_at"] * 1000) - OFFSETS[contact["tier"]] * 1000


# --- agents list ------------------------------------------------------------------


async def test_agents_list_pages_every_agent_once_within_the_teams(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    ids = [f"a{i:02d}" for i in range(9)]
    for i, aid in enumerate(ids):
        skills = {"cards": 5} if i % 2 == 0 else {"loans": 5}
        team = "t1" if i < 5 else "t2"
        await add_agent(api, ws, aid, skills, available=i % 3 == 0, team=team)
    held = await create(api, ws, "c1")  # offered to an available cards agent
    base = f"/v1/workspaces/{ws}/agents"

    everyone = await pages(api, base, SUP, 2)
    assert [a["id"] for a in everyone] == ids
    mine = await pages(api, base, LEAD, 2)
    assert [a["id"] for a in mine] == ids[:5]  # its team only, no error
    assert await pages(api, base + "?team=t2", LEAD, 3) == []
    assert [a["id"] for a in await pages(api, base + "?state=available", ADM, 1)] == [
        aid for i, aid in enumerate(ids) if i % 3 == 0
    ]
    assert [a["id"] for a in await pages(api, base + "?pool=loans", LEAD, 1)] == ["a01", "a03"]
    holder = next(a for a in everyone if a["id"] == held["agent"])
    assert holder["contacts"] == [{"id": "c1", "state": "offered"}]
    assert holder["load"] == 100 and holder["capacity"] == 100
    r = await api.get(base + "?state=asleep", headers=SUP)
    await problem(r, 422, "state")
    await problem(await api.get(base + "?limit=0", headers=SUP), 422, "limit")
    r = await api.get(base, headers=AG_FOR("a00"))
    assert r.status == 403  # an agent lists nobody


async def test_time_in_state_counts_from_the_state_change(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await add_agent(api, ws, "a1", {"cards": 5}, team="t1")
    r = await api.post(
        f"/v1/workspaces/{ws}/agents/a1/state",
        json={"state": "break", "reason": "lunch"},
        headers=LEAD,
    )
    assert r.status == 200, await r.text()
    change = (await events(api, ws, "agent.state_changed", agent="a1", state="break"))[-1]
    assert change["actor"] == "supervisor:lead1"
    assert change["data"]["previous"] == "available" and change["data"]["reason"] == "lunch"
    changed_at = dt.datetime.fromisoformat(change["time"]).timestamp()

    first = (await pages(api, f"/v1/workspaces/{ws}/agents", LEAD, 10))[0]
    second = (await pages(api, f"/v1/workspaces/{ws}/agents", LEAD, 10))[0]
    assert (first["state"], first["reason"]) == ("break", "lunch")
    assert abs(first["since"] - changed_at) < 0.002
    assert second["since"] == first["since"]
    assert 0 <= first["time_in_state"] <= second["time_in_state"]


# --- a pool's queue ---------------------------------------------------------------


async def test_waiting_list_is_in_rank_order_and_masked(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await add_agent(api, ws, "a1", {"cards": 5}, available=False, team="t1")
    specs = [
        ("w1", "voice", "standard"),
        ("w2", "chat", "vip"),
        ("w3", "voice", "gold"),
        ("w4", "chat", "standard"),
        ("w5", "voice", "vip"),
        ("w6", "chat", "gold"),
        ("w7", "voice", "standard"),
    ]
    made = {}
    for cid, channel, tier in specs:
        extra = {"customer": {"id": "cu-" + cid, "tier": tier, "name": "Ada Lovelace"}}
        made[cid] = await create(api, ws, cid, channel, tier, **(extra if cid == "w4" else {}))
    # tiers with offsets: the order by virtual arrival time, ties by id
    expected = sorted(made, key=lambda c: (rank_ms(made[c]), c))
    assert expected != [cid for cid, _, _ in specs]  # the offsets do reorder them

    url = f"/v1/workspaces/{ws}/pools/cards/waiting"
    listed = await pages(api, url, LEAD, 3)
    assert [w["id"] for w in listed] == expected
    assert [w["position"] for w in listed] == list(range(1, 8))
    for w in listed:
        assert round(w["rank"] * 1000) == rank_ms(made[w["id"]])
        assert (w["channel"], w["tier"]) == (made[w["id"]]["channel"], made[w["id"]]["tier"])
        assert w["waited"] >= 0
    assert next(w for w in listed if w["id"] == "w4")["personal"] == {
        "masked": True,
        "name": "A. L.",
    }
    assert await pages(api, f"/v1/workspaces/{ws}/pools/loans/waiting", ADM, 5) == []


async def test_waiting_list_only_of_pools_the_teams_serve(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await add_agent(api, ws, "a1", {"cards": 5}, available=False, team="t1")
    await add_agent(api, ws, "b1", {"loans": 5}, available=False, team="t2")
    base = f"/v1/workspaces/{ws}/pools"
    assert (await api.get(base + "/cards/waiting", headers=LEAD)).status == 200
    # loans has no agent of t1; a pool that does not exist is refused alike
    field = await refused_alike(api, "GET", base + "/{}/waiting", "loans", "nopool", headers=LEAD)
    assert field == "pool_id"
    await problem(await api.get(base + "/nopool/waiting", headers=ADM), 404, "pool_id")
    await problem(await api.get(base + "/cards/waiting?cursor=x", headers=ADM), 422, "cursor")


# --- assign -----------------------------------------------------------------------


async def test_assign_offers_a_waiting_contact_to_the_named_agent(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await add_agent(api, ws, "a1", {"cards": 5}, team="t1")
    assert (await create(api, ws, "c1"))["agent"] == "a1"
    # rejected: it waits, and is not offered to a1 again for a while
    r = await act(api, ws, "c1", "reject", agent_id="a1")
    assert (await r.json())["state"] == "queued"

    url = f"/v1/workspaces/{ws}/contacts/c1/assign"
    r = await api.post(url, json={"agent_id": "a1"}, headers=LEAD)
    assert r.status == 200, await r.text()
    got = await r.json()
    assert (got["state"], got["agent"]) == ("offered", "a1")
    offers = await api.get(f"/v1/workspaces/{ws}/agents/a1/offers?wait=0", headers=AG_FOR("a1"))
    assert [o["id"] for o in (await offers.json())["offers"]] == ["c1"]
    offered = (await events(api, ws, "contact.offered", contact="c1"))[-1]
    assert offered["actor"] == "supervisor:lead1"
    assert offered["data"]["explain"]["by"] == "supervisor:lead1"
    # no longer waiting
    body = await problem(
        await api.post(url, json={"agent_id": "a1"}, headers=LEAD), 409, "contact_id"
    )
    assert body["state"] == "offered"


async def test_assign_refuses_an_agent_that_cannot_take_the_contact(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await add_agent(api, ws, "a1", {"cards": 5}, team="t1")
    await add_agent(api, ws, "a2", {"cards": 5}, available=False, team="t1")
    await add_agent(api, ws, "a3", {"loans": 5}, team="t1")
    await add_agent(api, ws, "a4", {"cards": 5}, available=False, team="t2")
    assert (await create(api, ws, "c0"))["agent"] == "a1"  # a1 is now full (voice: 100)
    waiting = await create(api, ws, "c1")
    assert waiting["state"] == "queued"
    url = f"/v1/workspaces/{ws}/contacts/c1/assign"

    async def refused(aid: str, field: str, state: str) -> None:
        r = await api.post(url, json={"agent_id": aid}, headers=LEAD)
        assert (await problem(r, 409, field))["state"] == state

    await refused("a2", "agent_id", "offline")  # not signed in
    await refused("a3", "skills", "ineligible")  # not a member of any pool c1 reached
    await refused("a1", "capacity", "full")  # load 100 + weight 100 > 100
    r = await api.get(f"/v1/workspaces/{ws}/contacts/c1", headers=ADM)
    after = await r.json()
    assert (after["state"], after["rank"]) == ("queued", waiting["rank"])
    # out of scope: an agent of another team, a contact waiting where t9 serves nothing
    other, ghost = [
        await problem(await api.post(url, json={"agent_id": aid}, headers=LEAD), 403, "agent_id")
        for aid in ("a4", "ghost")
    ]
    assert other == {**ghost, "detail": ghost["detail"].replace("ghost", "a4")}
    field = await refused_alike(
        api,
        "POST",
        f"/v1/workspaces/{ws}/contacts/{{}}/assign",
        "c1",
        "nope",
        json={"agent_id": "a1"},
        headers=OUTSIDER,
    )
    assert field == "contact_id"
    r = await api.post(url, json={"agent_id": "ghost"}, headers=ADM)
    await problem(r, 404, "agent_id")
    r = await api.post(url, json={"agent": "a1"}, headers=ADM)
    await problem(r, 422, "agent")


# --- move to another pool -----------------------------------------------------------


async def test_moving_a_contact_keeps_its_age_in_the_new_pool(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await add_agent(api, ws, "a1", {"cards": 5}, available=False, team="t1")
    await add_agent(api, ws, "b1", {"loans": 5}, available=False, team="t2")
    order = [
        ("L1", "standard", "loan"),
        ("C1", "vip", None),
        ("L2", "gold", "loan"),
        ("C2", "standard", None),
        ("L3", "standard", "loan"),
    ]
    made = {}
    for cid, tier, intent in order:
        made[cid] = await create(
            api, ws, cid, "voice", tier, **({"intent": intent} if intent else {})
        )
    for cid in ("C1", "C2"):
        r = await api.post(
            f"/v1/workspaces/{ws}/contacts/{cid}/transfer", json={"pool": "loans"}, headers=LEAD
        )
        assert r.status == 200, await r.text()
        moved = await r.json()
        assert (moved["state"], moved["pools"]) == ("queued", ["loans"])
        assert moved["rank"] == made[cid]["rank"]  # it keeps its age
    audit = (await events(api, ws, "contact.transferred", contact="C1"))[-1]
    assert audit["actor"] == "supervisor:lead1"
    assert (audit["data"]["from_pools"], audit["data"]["to_pool"]) == (["cards"], "loans")
    r = await api.post(
        f"/v1/workspaces/{ws}/contacts/L1/transfer", json={"pool": "cards"}, headers=OUTSIDER
    )
    await problem(r, 403, "contact_id")

    expected = sorted(made, key=lambda c: (rank_ms(made[c]), c))
    waiting = await pages(api, f"/v1/workspaces/{ws}/pools/loans/waiting", ADM, 2)
    assert [w["id"] for w in waiting] == expected
    # served one at a time in that order
    r = await api.post(
        f"/v1/workspaces/{ws}/agents/b1/state", json={"state": "available"}, headers=AG_FOR("b1")
    )
    assert r.status == 200
    served = []
    for _ in expected:
        r = await api.get(f"/v1/workspaces/{ws}/agents/b1/offers?wait=0", headers=AG_FOR("b1"))
        offers = (await r.json())["offers"]
        assert len(offers) == 1
        served.append(offers[0]["id"])
        assert (await act(api, ws, served[-1], "accept", agent_id="b1")).status == 200
        assert (await act(api, ws, served[-1], "complete", agent_id="b1")).status == 200
    assert served == expected


# --- sign out -----------------------------------------------------------------------


async def test_signing_out_returns_pending_offers_with_their_rank(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await add_agent(api, ws, "a1", {"cards": 5}, team="t1")
    c1 = await create(api, ws, "c1", "chat")
    c2 = await create(api, ws, "c2", "chat", "vip")
    assert c1["agent"] == c2["agent"] == "a1"  # two chats at once
    state = f"/v1/workspaces/{ws}/agents/a1/state"
    r = await api.post(state, json={"state": "offline", "reason": "end of shift"}, headers=LEAD)
    assert r.status == 200, await r.text()
    assert ((await r.json())["state"], (await r.json())["load"]) == ("offline", 0)
    for before in (c1, c2):
        r = await api.get(f"/v1/workspaces/{ws}/contacts/{before['id']}", headers=ADM)
        now = await r.json()
        assert (now["state"], now["agent"], now["rank"]) == ("queued", None, before["rank"])
    listed = await pages(api, f"/v1/workspaces/{ws}/pools/cards/waiting", LEAD, 5)
    assert [w["id"] for w in listed] == ["c2", "c1"]  # the vip ranks first
    returned = await events(api, ws, "contact.offer_returned", agent="a1")
    assert sorted(e["subject"] for e in returned) == ["c1", "c2"]
    change = (await events(api, ws, "agent.state_changed", agent="a1", state="offline"))[-1]
    assert change["actor"] == "supervisor:lead1"
    assert (change["data"]["previous"], change["data"]["reason"]) == ("available", "end of shift")

    # back, it takes both again; one answered: signing out is refused, naming it
    r = await api.post(state, json={"state": "available"}, headers=AG_FOR("a1"))
    assert sorted((await r.json())["contacts"]) == ["c1", "c2"]
    assert (await act(api, ws, "c1", "accept", agent_id="a1")).status == 200
    body = await problem(
        await api.post(state, json={"state": "offline"}, headers=LEAD), 409, "state"
    )
    assert (body["state"], body["contacts"]) == ("available", ["c1"])
    r = await api.get(f"/v1/workspaces/{ws}/contacts/c2", headers=ADM)
    assert (await r.json())["state"] == "offered"  # nothing changed
    # the agent's own desktop: refused while it holds anything (as before)
    r = await api.post(state, json={"state": "offline"}, headers=AG_FOR("a1"))
    await problem(r, 409, "state")
    # another team's supervisor: refused alike for a1 and an agent that does not exist
    field = await refused_alike(
        api,
        "POST",
        f"/v1/workspaces/{ws}/agents/{{}}/state",
        "a1",
        "ghost",
        json={"state": "offline"},
        headers=OUTSIDER,
    )
    assert field == "agent_id"


# --- not-ready reason codes ---------------------------------------------------------


def agent_series(text: str, ws: str) -> dict[tuple[str, str], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "router_agents_state" and s.labels["workspace"] == ws:
                out[(s.labels["state"], s.labels["reason"])] = s.value
    return out


async def test_a_break_needs_a_configured_reason_code(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await add_agent(api, ws, "a1", {"cards": 5}, team="t1")
    await add_agent(api, ws, "a2", {"cards": 5}, team="t1")
    state = f"/v1/workspaces/{ws}/agents/a1/state"
    for body in ({"state": "break", "reason": "nap"}, {"state": "break"}):
        await problem(await api.post(state, json=body, headers=LEAD), 422, "reason")
    r = await api.post(state, json={"state": "break", "reason": "lunch"}, headers=LEAD)
    assert (await r.json())["reason"] == "lunch"
    series = agent_series(await (await api.get("/metrics")).text(), ws)
    assert series[("break", "lunch")] == 1
    assert series[("break", "training")] == 0  # every code, from zero on
    assert series[("available", "none")] == 1
    assert all(reason in ("lunch", "training", "other", "none") for _, reason in series)


async def test_without_codes_a_break_takes_free_text_counted_as_other(api: Any, ws: str) -> None:
    await put_config(api, ws, config(codes=False))
    await add_agent(api, ws, "a1", {"cards": 5}, team="t1")
    r = await api.post(
        f"/v1/workspaces/{ws}/agents/a1/state",
        json={"state": "break", "reason": "dentist at 3"},
        headers=AG_FOR("a1"),
    )
    assert (await r.json())["reason"] == "dentist at 3"
    series = agent_series(await (await api.get("/metrics")).text(), ws)
    assert series == {
        ("available", "none"): 0,
        ("missed", "none"): 0,
        ("offline", "none"): 0,
        ("break", "other"): 1,
    }


async def test_reason_codes_are_checked_with_the_config(api: Any, ws: str) -> None:
    cfg = config()
    cfg["agent_states"] = {"reasons": {"lunch break!": {"label": "Lunch"}}}
    r = await api.put(f"/v1/workspaces/{ws}", json=cfg, headers=ADM)
    body = await r.json()
    assert r.status == 422, body
    assert body["field"].startswith("agent_states.reasons"), body
    cfg["agent_states"] = {"reasons": {"lunch": {"label": "Lunch", "paid": True}}}
    r = await api.put(f"/v1/workspaces/{ws}", json=cfg, headers=ADM)
    assert r.status == 422 and (await r.json())["field"] == "agent_states.reasons.lunch.paid"
    # a config without them stays valid, and GET shows none configured
    await put_config(api, ws, config(codes=False))
    r = await api.get(f"/v1/workspaces/{ws}", headers=ADM)
    assert (await r.json())["config"]["agent_states"] == {"reasons": {}}


async def test_a_team_supervisor_transfers_only_to_its_teams_agents(api: Any, ws: str) -> None:
    """Parking a contact with a named agent is the assign scope's: an agent of
    another team is refused as any out-of-scope agent is, and nothing moves."""
    await put_config(api, ws, config())
    await add_agent(api, ws, "a1", {"cards": 5}, available=False, team="t1")
    await add_agent(api, ws, "b1", {"cards": 5}, available=False, team="t2")
    made = await create(api, ws, "X1", "voice")
    url = f"/v1/workspaces/{ws}/contacts/X1/transfer"
    await problem(await api.post(url, json={"agent_id": "b1"}, headers=LEAD), 403, "agent_id")
    r = await api.get(f"/v1/workspaces/{ws}/pools/cards/waiting", headers=ADM)
    assert [w["id"] for w in (await r.json())["waiting"]] == ["X1"]  # still in its pool
    r = await api.post(url, json={"agent_id": "a1"}, headers=LEAD)
    assert r.status == 200, await r.text()
    moved = await r.json()
    assert (moved["state"], moved["rank"]) == ("queued", made["rank"])
    r = await api.post(url, json={"agent_id": "b1"}, headers=SUP)  # every team: allowed
    assert r.status == 200, await r.text()
