"""Finished contacts reach the archive as rows, then leave Redis after the grace;
their history stays readable through the API in the same shape.

A real PostgreSQL and Redis, the service as an aiohttp app with its archiver."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from router.api.app import create_app
from router.store.keys import WsKeys
from tests.support.archive import archive_settings, rows, until
from tests.support.client import (
    ADM,
    GW,
    act,
    add_agent,
    agent_headers,
    create,
    put_config,
    small_config,
)
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _config(grace: str = "1h") -> dict[str, Any]:
    cfg = small_config(sla="std")
    cfg["sla_policies"] = {"std": {"answer": 600}}
    cfg["retention"] = {"grace": grace}
    return cfg


async def _served(api: Any, ws: str, cid: str, **extra: Any) -> None:
    """The contact created, accepted and completed by agent a1."""
    await create(api, ws, cid, **extra)
    assert (await act(api, ws, cid, "accept", agent_id="a1")).status == 200
    assert (await act(api, ws, cid, "complete", agent_id="a1")).status == 200


async def _archived_service(
    aiohttp_client: Any, redis_url: str, url: str, ws: str, **cfg: Any
) -> Any:
    """The service with its archiver; returns once the workspace is archived
    (its contacts keep no timeline copy in Redis from then on)."""
    api = await aiohttp_client(create_app(archive_settings(redis_url, url)))
    await put_config(api, ws, _config(**cfg))
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        await until(lambda: client.hget(WsKeys(ws).runtime, "arch"))
    finally:
        await client.aclose()
    await add_agent(api, ws, "a1", {"cards": 5}, team="north")
    return api


async def test_finished_contacts_become_rows_with_their_clocks(
    aiohttp_client: Any, redis_url: str, server: PostgresServer, ws: str
) -> None:
    api = await _archived_service(aiohttp_client, redis_url, server.url, ws)
    await _served(api, ws, "done", tier="vip", intent="card_lost")
    await create(api, ws, "left", channel="chat")
    await create(api, ws, "left2")
    # a1 holds "left" now (offered) and has no room for a call: the customer of
    # "left2" hangs up while waiting
    assert (await act(api, ws, "left2", "abandon")).status == 200
    live = await (await api.get(f"/v1/workspaces/{ws}/contacts/done", headers=ADM)).json()

    async def both_ended() -> list[tuple[object, ...]] | None:
        # "done" and "left2" end in different archiver batches: wait for both rows
        got = await rows(
            server.url,
            "SELECT id, outcome, channel, tier, intent, customer_id, agent, team, pools,"
            " wait_ms, handle_ms, offered_at IS NOT NULL, answered_at IS NOT NULL,"
            " sla->'answer'->>'status', sla_policy FROM contacts WHERE ws = %s ORDER BY id",
            ws,
        )
        return got if len(got) >= 2 else None

    archived = await until(both_ended)
    by_id = {r[0]: r for r in archived}
    assert sorted(by_id) == ["done", "left2"]  # "left" is live work: no row
    done = by_id["done"]
    assert done[1:9] == (
        "completed",
        "voice",
        "vip",
        "card_lost",
        "cu-done",
        "a1",
        "north",
        ["cards"],
    )
    assert done[9] >= 0 and done[10] >= 0 and done[11] and done[12]
    assert done[13] == "met" and done[14] == "std"
    assert done[13] == live["sla_clocks"]["answer"]["status"]
    left = by_id["left2"]
    assert left[1] == "abandoned" and left[6] is None and not left[11] and not left[12]
    assert left[13] == "cancelled"
    outcomes = await rows(
        server.url,
        "SELECT contact, clock, policy, outcome, target_ms FROM sla_outcomes WHERE ws = %s"
        " ORDER BY contact",
        ws,
    )
    assert outcomes == [
        ("done", "answer", "std", "met", 600_000),
        ("left2", "answer", "std", "cancelled", 600_000),
    ]


async def test_a_finished_contact_leaves_redis_after_the_grace_and_reads_back_the_same(
    aiohttp_client: Any, redis_url: str, server: PostgresServer, ws: str
) -> None:
    api = await _archived_service(aiohttp_client, redis_url, server.url, ws, grace="2s")
    keys = WsKeys(ws)
    await create(api, ws, "c1", tier="vip")
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        assert not await client.exists(keys.timeline("c1"))  # no timeline copy in Redis
        # the live contact's timeline comes from the archive and the stream's tail
        live = await (await api.get(f"/v1/workspaces/{ws}/contacts/c1", headers=ADM)).json()
        assert [e["type"] for e in live["timeline"]] == ["contact.created", "contact.offered"]
        assert (await act(api, ws, "c1", "accept", agent_id="a1")).status == 200
        assert (await act(api, ws, "c1", "complete", agent_id="a1")).status == 200
        url = f"/v1/workspaces/{ws}/contacts/c1"
        before = await (await api.get(url, headers=ADM)).json()
        # the row is written, then the contact's keys expire after the grace
        await until(lambda: rows(server.url, "SELECT 1 FROM contacts WHERE ws = %s", ws))
        ttl = await client.ttl(keys.contact("c1"))
        assert 0 < ttl <= 2
        await until(lambda: _gone(client, keys), within=10)
        after_r = await api.get(url, headers=ADM)
        assert after_r.status == 200
        after = await after_r.json()
        for field in ("id", "state", "channel", "tier", "customer_id", "agent", "pools",
                      "stages", "stage", "sla", "rules", "gateway", "priority_offset"):  # fmt: skip
            assert after[field] == before[field], field
        assert after["created_at"] == pytest.approx(before["created_at"], abs=0.001)
        assert after["sla_clocks"] == before["sla_clocks"]
        assert [e["type"] for e in after["timeline"]] == [e["type"] for e in before["timeline"]]
        # the scopes still hold: the agent who served it sees it, another gateway's
        # or agent's token does not
        mine = await api.get(url, headers=agent_headers("a1"))
        assert mine.status == 200
        assert (await api.get(url, headers=agent_headers("a2"))).status == 403
        assert (await api.get(f"/v1/workspaces/{ws}/contacts/nope", headers=GW)).status == 403
    finally:
        await client.aclose()


async def _gone(client: Redis, keys: WsKeys) -> bool:
    return not await client.exists(keys.contact("c1"), keys.sla("c1"))


async def test_a_case_with_its_resolve_clock_running_stays_until_resolved(
    aiohttp_client: Any, redis_url: str, server: PostgresServer, ws: str
) -> None:
    api = await aiohttp_client(create_app(archive_settings(redis_url, server.url)))
    cfg = _config(grace="1h")
    cfg["sla_policies"] = {"std": {"answer": 600, "resolve": 86_400}}
    await put_config(api, ws, cfg)
    await add_agent(api, ws, "a1", {"cards": 5})
    keys = WsKeys(ws)
    await _served(api, ws, "case")
    row = "SELECT sla->'resolve'->>'status', resolved_at IS NOT NULL FROM contacts WHERE ws = %s"
    assert await until(lambda: rows(server.url, row, ws)) == [("active", False)]
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await client.ttl(keys.contact("case")) > 3600  # open case: live work
        assert (await act(api, ws, "case", "resolve")).status == 200

        async def resolved() -> list[tuple[Any, ...]]:
            got = await rows(server.url, row, ws)
            return got if got == [("met", True)] else []

        await until(resolved)
        assert 0 < await client.ttl(keys.contact("case")) <= 3600
    finally:
        await client.aclose()


async def test_a_survey_answer_days_later_reaches_the_archived_contact(
    aiohttp_client: Any, redis_url: str, server: PostgresServer, ws: str
) -> None:
    api = await aiohttp_client(create_app(archive_settings(redis_url, server.url)))
    cfg = _config(grace="2s")
    cfg["surveys"] = {"kinds": ["csat", "nps"]}
    callback = {"do": "create_followup", "channel": "voice", "intent": "callback", "sla": "cb"}
    cfg["sla_policies"] = {
        "std": {"answer": 600, "low_rating": {"csat_below": 3, "actions": [callback]}},
        "cb": {"answer": 3600},
    }
    await put_config(api, ws, cfg)
    await add_agent(api, ws, "a1", {"cards": 5})
    keys = WsKeys(ws)
    await _served(api, ws, "late")
    assert (await act(api, ws, "late", "rating", kind="nps", score=9)).status == 200
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        await until(lambda: rows(server.url, "SELECT 1 FROM contacts WHERE ws = %s", ws))

        async def gone() -> bool:
            return not await client.exists(keys.contact("late"))

        await until(gone, within=10)
        # the customer answers the CSAT survey after the contact left Redis
        r = await act(api, ws, "late", "rating", kind="csat", score=2)
        assert r.status == 200, await r.text()
        assert (await r.json())["state"] == "completed"
        assert (await act(api, ws, "late", "rating", kind="csat", score=2)).status == 200  # retry
        assert (await act(api, ws, "late", "rating", kind="csat", score=5)).status == 409
        assert (await act(api, ws, "late", "rating", kind="nps", score=3)).status == 409

        async def rated() -> list[tuple[Any, ...]]:
            got = await rows(server.url, "SELECT csat, nps FROM contacts WHERE ws = %s", ws)
            return got if got == [(2, 9)] else []

        await until(rated)
        # the low score still calls the customer back, as for a contact in Redis
        followup = await until(
            lambda: rows(
                server.url,
                "SELECT contact FROM events WHERE ws = %s AND type = 'contact.created'"
                " AND doc->>'actor' = 'system:followup'",
                ws,
            )
        )
        assert len(followup) == 1
        # reads answer from the archive, never from the record restored for the rating
        got = await (await api.get(f"/v1/workspaces/{ws}/contacts/late", headers=ADM)).json()
        assert got["stages"] and got["timeline"][0]["type"] == "contact.created"
        assert [e["type"] for e in got["timeline"]].count("contact.rated") == 2
    finally:
        await client.aclose()
