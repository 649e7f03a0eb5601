"""Agents' time in each state reaches the archive: one row per state left, its
reason, start, end and duration, from the state-change events alone."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from router.api.app import create_app
from tests.support.archive import archive_settings, rows, until
from tests.support.client import ADM, AG_FOR, add_agent, put_config, small_config
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _ms(t: dt.datetime) -> int:
    return round(t.timestamp() * 1000)


async def test_state_intervals_and_their_durations(
    aiohttp_client: Any, redis_url: str, server: PostgresServer, ws: str
) -> None:
    api = await aiohttp_client(create_app(archive_settings(redis_url, server.url)))
    cfg = small_config()
    cfg["agent_states"] = {"reasons": {"lunch": {"label": "Lunch"}}}
    await put_config(api, ws, cfg)
    await add_agent(api, ws, "a1", {"cards": 5}, team="t1")  # offline, then available
    state = f"/v1/workspaces/{ws}/agents/a1/state"
    for body in ({"state": "break", "reason": "lunch"}, {"state": "available"}):
        r = await api.post(state, json=body, headers=AG_FOR("a1"))
        assert r.status == 200, await r.text()
    r = await api.post(state, json={"state": "offline"}, headers=ADM)
    assert r.status == 200, await r.text()

    # the intervals as the live events tell them: from creation, change to change
    r = await api.get(f"/v1/workspaces/{ws}/events?type=agent.&limit=1000", headers=ADM)
    evs = [e for e in (await r.json())["events"] if e["subject"] == "a1"]
    times = [_ms(dt.datetime.fromisoformat(e["time"])) for e in evs]
    assert evs[0]["type"] == "agent.created"
    states = ["offline", *(e["data"]["state"] for e in evs[1:])]
    expected = [
        ("a1", "t1", states[i], "lunch" if states[i] == "break" else None, times[i], times[i + 1])
        for i in range(len(evs) - 1)
    ]
    assert states == ["offline", "available", "break", "available", "offline"]

    try:  # the archiver copies the events in the background (every 0.5-5 s)
        got = await until(lambda: _when(server.url, ws, len(expected)), within=60)
    except AssertionError:
        raise AssertionError(f"no intervals in time; {await _diagnosis(server.url, ws)}") from None
    assert [(a, t, s, r, _ms(b), _ms(e)) for a, t, s, r, b, e, _ in got] == expected
    for *_, started, ended, seconds in got:
        assert seconds == pytest.approx((ended - started).total_seconds(), abs=1e-6)
        assert seconds >= 0


async def _when(url: str, ws: str, n: int) -> list[tuple[Any, ...]] | None:
    got = await rows(
        url,
        "SELECT agent, team, state, reason, started, ended, seconds"
        " FROM agent_state_intervals WHERE ws = %s ORDER BY started",
        ws,
    )
    return got if len(got) >= n else None


async def _diagnosis(url: str, ws: str) -> str:
    """What the archive holds when the intervals did not come: the schema, the
    workspace's events and intervals (a failure names where it stopped)."""
    schema = await rows(url, "SELECT max(version) FROM archive_schema")
    events = await rows(url, "SELECT type, count(*) FROM events WHERE ws = %s GROUP BY type", ws)
    spans = await rows(url, "SELECT count(*) FROM agent_state_intervals WHERE ws = %s", ws)
    return f"schema {schema}, events {events}, intervals {spans}"
