"""GET /contacts/{id}/position through the API against a real Redis: places
across a pool's channels in rank order (tiers first), moving as contacts
leave, and the expected wait by the documented formula."""

from __future__ import annotations

from typing import Any

from tests.support.client import (
    GW,
    SUP,
    act,
    add_agent,
    agent_headers,
    create,
    put_config,
    small_config,
)

# id -> (channel, tier, intent): the intent picks the pools (config() below)
QUEUE = {
    "c1": ("voice", "standard", None),  # cards
    "c2": ("chat", "standard", "both"),  # cards and loans
    "c3": ("voice", "vip", "loans"),  # loans
    "c4": ("chat", "vip", None),  # cards
    "c5": ("voice", "standard", "both"),
    "c6": ("chat", "standard", "loans"),
}


def config() -> dict[str, Any]:
    cfg = small_config()
    cfg["rules"] = [
        {"name": "both", "when": {"intent": ["both"]}, "stages": [{"pools": ["cards", "loans"]}]},
        {"name": "loans", "when": {"intent": ["loans"]}, "stages": [{"pools": ["loans"]}]},
    ]
    return cfg


async def position(api: Any, ws: str, cid: str, headers: dict[str, str] = GW) -> Any:
    return await api.get(f"/v1/workspaces/{ws}/contacts/{cid}/position", headers=headers)


async def places(api: Any, ws: str, ids: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for cid in ids:
        r = await position(api, ws, cid)
        assert r.status == 200, await r.text()
        out[cid] = {p["pool"]: p["place"] for p in (await r.json())["pools"]}
    return out


def expected(order: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for pool, ids in order.items():
        for i, cid in enumerate(ids):
            out.setdefault(cid, {})[pool] = i + 1
    return out


async def build(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    for cid, (channel, tier, intent) in QUEUE.items():
        extra = {"intent": intent} if intent else {}
        await create(api, ws, cid, channel=channel, tier=tier, **extra)


async def test_places_span_channels_in_rank_order_and_move_up(api: Any, ws: str) -> None:
    await build(api, ws)
    order = {"cards": ["c4", "c1", "c2", "c5"], "loans": ["c3", "c2", "c5", "c6"]}
    assert await places(api, ws, list(QUEUE)) == expected(order)
    # the supervisor's waiting list agrees
    r = await api.get(f"/v1/workspaces/{ws}/pools/cards/waiting", headers=SUP)
    assert [w["id"] for w in (await r.json())["waiting"]] == order["cards"]

    assert (await act(api, ws, "c1", "abandon")).status == 200
    r = await position(api, ws, "c1")
    assert r.status == 409  # not waiting any more
    assert (await r.json())["state"] == "abandoned"
    order["cards"].remove("c1")
    left = ["c2", "c3", "c4", "c5", "c6"]
    assert await places(api, ws, left) == expected(order)

    # an agent of both pools takes one contact: everyone behind it moves up
    await add_agent(api, ws, "a1", {"cards": 5, "loans": 5})
    r = await api.get(f"/v1/workspaces/{ws}/agents/a1/offers", headers=agent_headers("a1"))
    taken = (await r.json())["offers"][0]["id"]
    for ids in order.values():
        if taken in ids:
            ids.remove(taken)
    left.remove(taken)
    assert (await position(api, ws, taken)).status == 409
    assert await places(api, ws, left) == expected(order)


async def test_unknown_contact_is_404_and_agents_may_not_ask(api: Any, ws: str) -> None:
    await build(api, ws)
    r = await position(api, ws, "nobody", SUP)
    assert r.status == 404
    assert (await r.json())["field"] == "contact_id"
    assert (await position(api, ws, "c1", SUP)).status == 200
    assert (await position(api, ws, "c1", agent_headers("a9"))).status == 403
    # a gateway learns nothing of ids it did not create (as GET /contacts/{id})
    assert (await position(api, ws, "nobody")).status == 403


def wait_with_overtakers(place: int, per_answer: float, rate: float, window: float) -> float:
    """The expected wait in closed form for one class of overtakers: `rate`
    arrivals a second rank ahead of the contact while they come within `window`
    seconds. Below the window W = place * p / (1 - rate * p) when that is
    shorter than the window, else every overtaker of the window counts."""
    if rate * per_answer < 1:
        below = place * per_answer / (1 - rate * per_answer)
        if below <= window:
            return below
    return (place + rate * window) * per_answer


def check_wait(body: dict[str, Any], pool: dict[str, Any], per_answer: float) -> None:
    """One vip (offset 120 s) arrived in the pool so far: it and its like will go
    before a standard contact that has waited less than 120 s."""
    rate = 1 / pool["arrivals_observed"]
    assert 60 <= pool["arrivals_observed"] <= 120
    window = 120 - body["waited"]
    want = wait_with_overtakers(pool["place"], per_answer, rate, window)
    assert abs(pool["expected_wait"] - want) < 0.01, (pool, want)
    assert abs(pool["overtakers"] - rate * min(want, window)) < 0.01


async def test_expected_wait_follows_the_pools_service(api: Any, ws: str) -> None:
    await build(api, ws)
    r = await position(api, ws, "c5")  # 4th in cards, 3rd in loans; nobody signed in
    body = await r.json()
    by_pool = {p["pool"]: p for p in body["pools"]}
    # no answers yet: handle time (180 s by default) / max(1, agents signed in)
    # per place, and the vips to come (c4 in cards, c3 in loans so far) go first
    assert by_pool["cards"]["basis"] == "handle_time"
    check_wait(body, by_pool["cards"], 180.0)
    check_wait(body, by_pool["loans"], 180.0)
    assert body["expected_wait"] == by_pool["loans"]["expected_wait"]  # the sooner pool
    assert by_pool["loans"]["expected_wait"] < by_pool["cards"]["expected_wait"]
    # a vip asking: nobody who arrives later ranks ahead of it
    vip = (await (await position(api, ws, "c3")).json())["pools"][0]
    assert (vip["overtakers"], vip["expected_wait"]) == (0.0, 1 * 180.0)

    # two loans agents on a break: signed in, serving nobody
    for aid in ("l1", "l2"):
        await add_agent(api, ws, aid, {"loans": 5}, available=False)
        r = await api.post(
            f"/v1/workspaces/{ws}/agents/{aid}/state",
            json={"state": "break"},
            headers=agent_headers(aid),
        )
        assert r.status == 200, await r.text()
    body = await (await position(api, ws, "c5")).json()
    loans = {p["pool"]: p for p in body["pools"]}["loans"]
    assert loans["agents_signed_in"] == 2
    check_wait(body, loans, 180.0 / 2)

    # a cards agent answers one contact: the pool's recent service takes over,
    # seconds observed / answers per place (observed: from the start of the
    # answer's minute, at least 60 s)
    await add_agent(api, ws, "a1", {"cards": 5}, capacity=25)  # one chat at most
    r = await api.get(f"/v1/workspaces/{ws}/agents/a1/offers", headers=agent_headers("a1"))
    taken = (await r.json())["offers"][0]["id"]
    assert taken == "c4"  # the vip one, first in cards
    r = await act(api, ws, taken, "accept", agent_id="a1")
    assert r.status == 200, await r.text()
    body = await (await position(api, ws, "c5")).json()
    after = {p["pool"]: p for p in body["pools"]}
    assert after["cards"]["basis"] == "recent_service"
    assert after["cards"]["answered_recently"] == 1
    observed = after["cards"]["observed"]
    assert 60 <= observed <= 120
    assert after["cards"]["place"] == 3
    check_wait(body, after["cards"], observed / 1)
    # the loans pool answered nothing: still by handle time
    assert after["loans"]["basis"] == "handle_time" and after["loans"]["observed"] is None
