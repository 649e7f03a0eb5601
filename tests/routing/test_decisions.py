"""Routing decisions through the HTTP API against a real Redis: eligibility, capacity,
strategies, continuity, bullseye and overflow stages, offer timeouts, wrap-up,
transfer and abandon."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tests.support.client import AG_FOR, SUP, act, add_agent, create, put_config, small_config

ROUTE_LOANS_LATER = {
    "name": "bullseye",
    "when": {"intent": ["card_issue"]},
    "stages": [{"pools": ["cards"]}, {"pools": ["loans"], "after": 0.5}],
}
ROUTE_LOANS = {"name": "loans", "when": {"intent": ["loan"]}, "stages": [{"pools": ["loans"]}]}


def config(
    *rules: dict[str, Any],
    strategy: str | None = None,
    offer_timeout: float = 20,
    wrap_up: float = 0,
    **defaults: Any,
) -> dict[str, Any]:
    cfg = small_config(**defaults)
    for ch in cfg["channels"].values():
        ch.update(offer_timeout=offer_timeout, wrap_up=wrap_up)
    if strategy:
        cfg["pools"]["cards"]["strategy"] = strategy
    cfg["rules"] = list(rules)
    return cfg


async def contact(api: Any, ws: str, cid: str) -> dict[str, Any]:
    r = await api.get(f"/v1/workspaces/{ws}/contacts/{cid}", headers=SUP)
    assert r.status == 200, await r.text()
    return await r.json()  # type: ignore[no-any-return]


async def agent(api: Any, ws: str, aid: str) -> dict[str, Any]:
    r = await api.get(f"/v1/workspaces/{ws}/agents/{aid}", headers=SUP)
    assert r.status == 200, await r.text()
    return await r.json()  # type: ignore[no-any-return]


async def offers(api: Any, ws: str, aid: str) -> list[str]:
    r = await api.get(f"/v1/workspaces/{ws}/agents/{aid}/offers", headers=AG_FOR(aid))
    assert r.status == 200, await r.text()
    return [o["id"] for o in (await r.json())["offers"]]


async def set_state(api: Any, ws: str, aid: str, state: str) -> None:
    r = await api.post(
        f"/v1/workspaces/{ws}/agents/{aid}/state", json={"state": state}, headers=AG_FOR(aid)
    )
    assert r.status == 200, await r.text()


async def ok(api: Any, ws: str, cid: str, action: str, **body: Any) -> dict[str, Any]:
    r = await act(api, ws, cid, action, **body)
    assert r.status == 200, await r.text()
    return await r.json()  # type: ignore[no-any-return]


Getter = Callable[[], Awaitable[dict[str, Any]]]


async def poll(get: Getter, want: dict[str, Any]) -> dict[str, Any]:
    """Calls `get` until every wanted field has the wanted value (5 s deadline)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:
        got = await get()
        if all(got[k] == v for k, v in want.items()):
            return got
        assert loop.time() < deadline, f"never reached {want}: {got}"
        await asyncio.sleep(0.05)


async def until(api: Any, ws: str, cid: str, **want: Any) -> dict[str, Any]:
    return await poll(lambda: contact(api, ws, cid), want)


async def until_agent(api: Any, ws: str, aid: str, **want: Any) -> dict[str, Any]:
    return await poll(lambda: agent(api, ws, aid), want)


async def agents(api: Any, ws: str, *specs: tuple[str, dict[str, int]]) -> None:
    """Adds available agents one after another, so each has been idle longer than the next."""
    for aid, skills in specs:
        await add_agent(api, ws, aid, skills)
        await asyncio.sleep(0.01)


def events(c: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in c["timeline"] if e["type"] == kind]


# --- eligibility and capacity -------------------------------------------------


async def test_pool_minimum_proficiency(api: Any, ws: str) -> None:
    cfg = config()
    cfg["pools"]["cards"]["skills"][0]["min"] = 5
    await put_config(api, ws, cfg)
    await agents(api, ws, ("a4", {"cards": 4}), ("a6", {"cards": 6}))
    assert (await agent(api, ws, "a4"))["pools"] == []
    assert (await create(api, ws, "c1"))["agent"] == "a6"
    assert (await create(api, ws, "c2"))["state"] == "queued"
    assert await offers(api, ws, "a4") == []


async def test_contact_skills_exclude_agent_lacking_them(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await agents(api, ws, ("a1", {"cards": 5}), ("a2", {"cards": 5, "loans": 3}))
    need_loans = {"skills": [{"skill": "loans", "min": 2}]}
    c1 = await create(api, ws, "c1", **need_loans)
    assert c1["agent"] == "a2"
    (offered,) = events(await contact(api, ws, "c1"), "contact.offered")
    skipped = {c["agent"]: c.get("skipped") for c in offered["explain"]["candidates"]}
    assert skipped == {"a1": "lacks a required skill", "a2": None}
    assert (await create(api, ws, "c2", **need_loans))["state"] == "queued"
    assert await offers(api, ws, "a1") == []
    assert (await create(api, ws, "c3"))["agent"] == "a1"


async def test_voice_and_chat_share_capacity(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await add_agent(api, ws, "a1", {"cards": 5})
    assert (await create(api, ws, "v1"))["agent"] == "a1"
    assert (await create(api, ws, "ch1", channel="chat"))["state"] == "queued"
    assert (await agent(api, ws, "a1"))["load"] == 100
    await ok(api, ws, "v1", "accept", agent_id="a1")
    await ok(api, ws, "v1", "complete", agent_id="a1")
    assert (await contact(api, ws, "ch1"))["agent"] == "a1"
    # one chat (25) leaves no room for a call (100), but room for more chats
    assert (await create(api, ws, "v2"))["state"] == "queued"
    assert (await create(api, ws, "ch2", channel="chat"))["agent"] == "a1"
    assert (await agent(api, ws, "a1"))["load"] == 50


# --- strategies -----------------------------------------------------------------


async def test_longest_idle_counts_from_end_of_last_contact(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await agents(api, ws, ("b", {"cards": 5}), ("a", {"cards": 5}))
    assert (await create(api, ws, "c1"))["agent"] == "b"
    await agents(api, ws, ("z", {"cards": 5}))
    await ok(api, ws, "c1", "accept", agent_id="b")
    await ok(api, ws, "c1", "complete", agent_id="b")
    # a has waited since before c1; z since during c1; b just finished
    assert [(await create(api, ws, f"n{i}"))["agent"] for i in range(3)] == ["a", "z", "b"]


async def test_most_skilled_beats_longer_idle(api: Any, ws: str) -> None:
    await put_config(api, ws, config(strategy="most_skilled"))
    await agents(api, ws, ("low", {"cards": 3}), ("high", {"cards": 8}))
    assert (await create(api, ws, "c1"))["agent"] == "high"
    (offered,) = events(await contact(api, ws, "c1"), "contact.offered")
    assert offered["explain"]["strategy"] == "most_skilled"
    assert (await create(api, ws, "c2"))["agent"] == "low"


async def test_most_skilled_tie_goes_to_longest_idle(api: Any, ws: str) -> None:
    await put_config(api, ws, config(strategy="most_skilled"))
    await agents(api, ws, ("b", {"cards": 6}), ("a", {"cards": 6}), ("c", {"cards": 2}))
    assert [(await create(api, ws, f"c{i}"))["agent"] for i in range(3)] == ["b", "a", "c"]


async def test_least_occupied_gets_next_chat(api: Any, ws: str) -> None:
    await put_config(api, ws, config(strategy="least_occupied"))
    await add_agent(api, ws, "busy", {"cards": 5})
    for i in range(2):
        assert (await create(api, ws, f"c{i}", channel="chat"))["agent"] == "busy"
    await add_agent(api, ws, "fresh", {"cards": 5})
    got = [(await create(api, ws, f"n{i}", channel="chat"))["agent"] for i in range(3)]
    # 2 vs 0 chats, then 2 vs 1, then a tie at 2 vs 2: longest idle (busy) wins
    assert got == ["fresh", "fresh", "busy"]


# --- continuity -------------------------------------------------------------------


async def served_by_a1(api: Any, ws: str, prefer: float, complete: bool) -> None:
    """cust-1 was served by a1 (c1 accepted); a2 is free."""
    await put_config(api, ws, config(continuity_prefer=prefer))
    await add_agent(api, ws, "a1", {"cards": 5})
    assert (await create(api, ws, "c1", customer={"id": "cust-1"}))["agent"] == "a1"
    await ok(api, ws, "c1", "accept", agent_id="a1")
    if complete:
        await ok(api, ws, "c1", "complete", agent_id="a1")
    await add_agent(api, ws, "a2", {"cards": 5})


async def test_returning_customer_waits_for_busy_previous_agent(api: Any, ws: str) -> None:
    await served_by_a1(api, ws, prefer=5, complete=False)
    c2 = await create(api, ws, "c2", customer={"id": "cust-1"})
    assert c2["state"] == "queued"
    assert await offers(api, ws, "a2") == []
    (created,) = events(await contact(api, ws, "c2"), "contact.created")
    assert created["explain"]["preferred_agent"] == "a1"
    await ok(api, ws, "c1", "complete", agent_id="a1")
    assert (await contact(api, ws, "c2"))["agent"] == "a1"


async def test_preference_runs_out_then_anyone_eligible(api: Any, ws: str) -> None:
    await served_by_a1(api, ws, prefer=0.5, complete=False)
    assert (await create(api, ws, "c2", customer={"id": "cust-1"}))["state"] == "queued"
    await until(api, ws, "c2", state="offered", agent="a2")


async def test_previous_agent_offline_means_no_wait(api: Any, ws: str) -> None:
    await served_by_a1(api, ws, prefer=5, complete=True)
    await set_state(api, ws, "a1", "offline")
    assert (await create(api, ws, "c2", customer={"id": "cust-1"}))["agent"] == "a2"


async def test_preferred_agent_rejecting_lets_others_take_it(api: Any, ws: str) -> None:
    await served_by_a1(api, ws, prefer=5, complete=True)
    assert (await create(api, ws, "c2", customer={"id": "cust-1"}))["agent"] == "a1"
    after = await ok(api, ws, "c2", "reject", agent_id="a1")
    assert after["agent"] == "a2"


async def test_preferred_agent_transferring_to_other_pool(api: Any, ws: str) -> None:
    await put_config(api, ws, config(continuity_prefer=5))
    await add_agent(api, ws, "a1", {"cards": 5})
    await add_agent(api, ws, "l1", {"loans": 5})
    for cid in ("c1", "c2"):
        assert (await create(api, ws, cid, customer={"id": "cust-1"}))["agent"] == "a1"
        await ok(api, ws, cid, "accept", agent_id="a1")
        if cid == "c1":
            await ok(api, ws, cid, "complete", agent_id="a1")
    moved = await ok(api, ws, "c2", "transfer", pool="loans")
    assert moved["state"] == "offered" and moved["agent"] == "l1"


# --- stages ------------------------------------------------------------------------


async def test_bullseye_reaches_second_stage_after_its_time(api: Any, ws: str) -> None:
    await put_config(api, ws, config(ROUTE_LOANS_LATER))
    await add_agent(api, ws, "l1", {"loans": 5})
    c = await create(api, ws, "c1", intent="card_issue")
    assert (c["state"], c["stage"], c["pools"]) == ("queued", 1, ["cards"])
    done = await until(api, ws, "c1", state="offered")
    assert (done["agent"], done["stage"], done["pools"]) == ("l1", 2, ["cards", "loans"])
    (reached,) = events(done, "contact.stage_reached")
    assert reached["explain"]["stage_reasons"] == [{"stage": 2, "why": "time"}]


def overflow_rule(wait: float) -> dict[str, Any]:
    return {
        "name": "ovf",
        "overflow_wait": wait,
        "stages": [{"pools": ["cards"]}, {"pools": ["loans"], "after": 600}],
    }


async def busy_cards_and_free_loans(api: Any, ws: str, wait: float) -> None:
    await put_config(api, ws, config(overflow_rule(wait)))
    await add_agent(api, ws, "a1", {"cards": 5})
    assert (await create(api, ws, "c0"))["agent"] == "a1"
    await add_agent(api, ws, "l1", {"loans": 5})


async def test_overflow_reaches_next_stage_at_once(api: Any, ws: str) -> None:
    await busy_cards_and_free_loans(api, ws, wait=1)
    c = await create(api, ws, "c1")
    assert (c["stage"], c["state"], c["agent"]) == (2, "offered", "l1")
    (created,) = events(await contact(api, ws, "c1"), "contact.created")
    assert created["explain"]["stage_reasons"][0]["why"] == "overflow"


async def test_no_overflow_while_expected_wait_is_short(api: Any, ws: str) -> None:
    await busy_cards_and_free_loans(api, ws, wait=100_000)
    c = await create(api, ws, "c1")
    assert (c["stage"], c["state"]) == (1, "queued")
    assert await offers(api, ws, "l1") == []


# --- offers: timeout, missed ---------------------------------------------------------


async def test_offer_timeout_keeps_rank_and_avoids_agent(api: Any, ws: str) -> None:
    await put_config(api, ws, config(offer_timeout=0.3))
    await add_agent(api, ws, "a1", {"cards": 5})
    c = await create(api, ws, "c1")
    back = await until(api, ws, "c1", state="queued")
    assert back["rank"] == c["rank"] and back["agent"] is None
    assert events(back, "contact.offer_timeout")[0]["agent"] == "a1"
    a1 = await agent(api, ws, "a1")
    assert (a1["state"], a1["load"], a1["missed_offers"]) == ("available", 0, 1)
    await add_agent(api, ws, "a2", {"cards": 5})
    got = await contact(api, ws, "c1")
    assert got["agent"] == "a2" and got["rank"] == c["rank"]


async def test_consecutive_timeouts_put_agent_in_missed(api: Any, ws: str) -> None:
    await put_config(api, ws, config(offer_timeout=0.3, missed_after=2))
    await add_agent(api, ws, "a1", {"cards": 5})
    await create(api, ws, "c1")
    await create(api, ws, "c2")
    await until_agent(api, ws, "a1", state="missed")
    assert (await contact(api, ws, "c2"))["state"] == "queued"
    assert (await create(api, ws, "c3"))["state"] == "queued"
    assert await offers(api, ws, "a1") == []
    await set_state(api, ws, "a1", "available")
    assert await offers(api, ws, "a1") == ["c3"]  # c1 and c2 stay away from a1 a while
    assert (await agent(api, ws, "a1"))["missed_offers"] == 0


async def test_accepting_resets_missed_count(api: Any, ws: str) -> None:
    await put_config(api, ws, config(offer_timeout=0.3, missed_after=2))
    await add_agent(api, ws, "a1", {"cards": 5})
    await create(api, ws, "c1")
    await until(api, ws, "c1", state="queued")
    assert (await create(api, ws, "c2"))["agent"] == "a1"
    await ok(api, ws, "c2", "accept", agent_id="a1")
    await ok(api, ws, "c2", "complete", agent_id="a1")
    assert (await create(api, ws, "c3"))["agent"] == "a1"
    await until(api, ws, "c3", state="queued")
    a1 = await agent(api, ws, "a1")
    assert (a1["state"], a1["missed_offers"]) == ("available", 1)


# --- wrap-up ---------------------------------------------------------------------------


async def test_wrap_up_holds_agent_then_next_contact(api: Any, ws: str) -> None:
    await put_config(api, ws, config(wrap_up=0.3))
    await add_agent(api, ws, "a1", {"cards": 5})
    await create(api, ws, "c1")
    await ok(api, ws, "c1", "accept", agent_id="a1")
    assert (await create(api, ws, "c2"))["state"] == "queued"
    assert (await ok(api, ws, "c1", "complete", agent_id="a1"))["state"] == "wrap_up"
    a1 = await agent(api, ws, "a1")
    assert (a1["load"], a1["contacts"]) == (100, ["c1"])
    assert (await contact(api, ws, "c2"))["state"] == "queued"
    await until(api, ws, "c1", state="completed")
    assert (await contact(api, ws, "c2"))["agent"] == "a1"


async def test_complete_during_wrap_up_ends_it_early(api: Any, ws: str) -> None:
    await put_config(api, ws, config(wrap_up=600))
    await add_agent(api, ws, "a1", {"cards": 5})
    await create(api, ws, "c1")
    await ok(api, ws, "c1", "accept", agent_id="a1")
    await create(api, ws, "c2")
    await ok(api, ws, "c1", "complete", agent_id="a1")
    assert (await ok(api, ws, "c1", "complete", agent_id="a1"))["state"] == "completed"
    assert (await contact(api, ws, "c2"))["agent"] == "a1"


# --- transfer and abandon ----------------------------------------------------------------


async def test_transfer_to_pool_keeps_rank(api: Any, ws: str) -> None:
    await put_config(api, ws, config(ROUTE_LOANS))
    await add_agent(api, ws, "a1", {"cards": 5})
    c1 = await create(api, ws, "c1")
    await ok(api, ws, "c1", "accept", agent_id="a1")
    assert (await create(api, ws, "l1", intent="loan"))["state"] == "queued"
    moved = await ok(api, ws, "c1", "transfer", pool="loans")
    assert (moved["state"], moved["pools"], moved["rank"]) == ("queued", ["loans"], c1["rank"])
    assert (await agent(api, ws, "a1"))["load"] == 0
    await add_agent(api, ws, "b1", {"loans": 5})
    assert await offers(api, ws, "b1") == ["c1"]  # ahead of l1, which arrived later


async def test_transfer_to_named_agent_waits_for_that_agent(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await agents(api, ws, ("a1", {"cards": 5}), ("a3", {"cards": 5}))
    for cid, aid in (("c1", "a1"), ("c2", "a3")):
        assert (await create(api, ws, cid))["agent"] == aid
        await ok(api, ws, cid, "accept", agent_id=aid)
    await add_agent(api, ws, "a2", {"cards": 5})
    moved = await ok(api, ws, "c1", "transfer", agent_id="a3")
    assert moved["state"] == "queued"
    assert await offers(api, ws, "a2") == [] and await offers(api, ws, "a1") == []
    await ok(api, ws, "c2", "complete", agent_id="a3")
    assert (await contact(api, ws, "c1"))["agent"] == "a3"


async def test_abandon_offered_frees_agent_for_next(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await add_agent(api, ws, "a1", {"cards": 5})
    await create(api, ws, "c1")
    await create(api, ws, "c2")
    gone = await ok(api, ws, "c1", "abandon")
    assert (gone["state"], gone["agent"]) == ("abandoned", "a1")
    a1 = await agent(api, ws, "a1")
    assert (a1["contacts"], a1["load"]) == (["c2"], 100)


async def test_abandon_queued_leaves_queue(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await add_agent(api, ws, "a1", {"cards": 5})
    await create(api, ws, "c1")
    await create(api, ws, "c2")
    assert (await ok(api, ws, "c2", "abandon"))["state"] == "abandoned"
    pool = await (await api.get(f"/v1/workspaces/{ws}/pools/cards", headers=SUP)).json()
    assert pool["depth"] == 0
    await ok(api, ws, "c1", "accept", agent_id="a1")
    await ok(api, ws, "c1", "complete", agent_id="a1")
    a1 = await agent(api, ws, "a1")
    assert (a1["contacts"], a1["load"]) == ([], 0)
