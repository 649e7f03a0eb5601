"""Agents' time in each state reaches the archive: one row per state left, its
reason, start, end and duration, from the state-change events alone; states
that lasted under a millisecond included (they once cost the next interval)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest
from psycopg import AsyncConnection

from router.api.app import create_app
from router.archive.agent_states import interval_rows, write_intervals
from router.archive.rows import INSERT, Row, event_rows
from router.archive.schema import VERSION_TABLE, migrate, migrations
from router.store.groups import id_tuple
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
    # each interval with the event that closed it (two changes in one millisecond,
    # as a warm process makes them, give a zero interval and the next one its start)
    expected = [
        (
            "a1", "t1", states[i], "lunch" if states[i] == "break" else None,
            times[i], times[i + 1], evs[i + 1]["id"],
        )
        for i in range(len(evs) - 1)
    ]  # fmt: skip
    assert states == ["offline", "available", "break", "available", "offline"]

    try:  # the archiver copies the events in the background (every 0.5-5 s)
        got = await until(lambda: _when(server.url, ws, len(expected)), within=60)
    except AssertionError:
        raise AssertionError(f"no intervals in time; {await _diagnosis(server.url, ws)}") from None
    assert [(a, t, s, r, _ms(b), _ms(e), ev) for a, t, s, r, b, e, _, ev in got] == expected
    for *_, started, ended, seconds, _ in got:
        assert seconds == pytest.approx((ended - started).total_seconds(), abs=1e-6)
        assert seconds >= 0


async def _when(url: str, ws: str, n: int) -> list[tuple[Any, ...]] | None:
    """The workspace's intervals in the order of the events that closed them."""
    got = await rows(
        url,
        "SELECT agent, team, state, reason, started, ended, seconds, event"
        " FROM agent_state_intervals WHERE ws = %s",
        ws,
    )
    return sorted(got, key=lambda r: id_tuple(r[-1])) if len(got) >= n else None


async def _diagnosis(url: str, ws: str) -> str:
    """What the archive holds when the intervals did not come: the schema, the
    workspace's events and intervals (a failure names where it stopped)."""
    schema = await rows(url, "SELECT max(version) FROM archive_schema")
    events = await rows(url, "SELECT type, count(*) FROM events WHERE ws = %s GROUP BY type", ws)
    spans = await rows(url, "SELECT count(*) FROM agent_state_intervals WHERE ws = %s", ws)
    return f"schema {schema}, events {events}, intervals {spans}"


T0 = 1733270400000  # 2024-12-04T00:00:00Z, Redis TIME ms
# how intervals were written before migration 0006: keyed by (ws, agent, started)
OLD_INSERT = (
    "INSERT INTO agent_state_intervals (ws, agent, team, state, reason, started, ended, seconds) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::timestamptz[], %s::timestamptz[], %s::float8[]) ON CONFLICT DO NOTHING"
)


def _changes(ws: str, at: list[int]) -> list[Row]:
    """Stream rows of agent a1's state changes at `at` (ms), created at T0:
    offline, available, break, available, offline, ... (a break's reason: lunch)."""
    cycle = ["available", "break", "available", "offline"]
    entries, state, since = [], "offline", T0
    for n, t in enumerate(at):
        new = cycle[n % len(cycle)]
        ev = {
            "type": "agent.state_changed", "agent": "a1", "team": "t1", "state": new,
            "previous": state, "previous_since": since, "at": t, "actor": "a1",
        }  # fmt: skip
        if state == "break":
            ev["previous_reason"] = "lunch"
        entries.append((f"{t}-{n}", {"e": msgspec.json.encode(ev).decode()}))
        state, since = new, t
    return event_rows(ws, entries)


async def _write_events(conn: AsyncConnection, batch: list[Row]) -> None:
    await conn.execute("SELECT archive_day_partition('events', %s)", (batch[0][2].date(),))
    await conn.execute(INSERT, [list(c) for c in zip(*batch, strict=True)])


async def test_states_that_lasted_under_a_millisecond_cost_no_interval(
    server: PostgresServer,
) -> None:
    # available, break and available again in the millisecond T0 + 7: three
    # intervals start there, two of them of no length; a batch written again
    # (a crash before the acknowledgement) adds nothing
    t = T0 + 7
    batch = _changes("w1", [t, t, t, t + 1500])
    async with await AsyncConnection.connect(server.url, autocommit=True) as conn:
        await migrate(conn)
        for _ in range(2):
            assert await write_intervals(conn, batch) == 4
        cur = await conn.execute(
            "SELECT state, reason, started, ended, seconds, event FROM agent_state_intervals"
        )
        got = sorted(await cur.fetchall(), key=lambda r: id_tuple(r[-1]))
    assert [(s, r, _ms(b), _ms(e), sec, ev) for s, r, b, e, sec, ev in got] == [
        ("offline", None, T0, t, 0.007, f"{t}-0"),
        ("available", None, t, t, 0.0, f"{t}-1"),
        ("break", "lunch", t, t, 0.0, f"{t}-2"),
        ("available", None, t, t + 1500, 1.5, f"{t + 1500}-3"),
    ]


async def test_intervals_archived_before_the_event_key_get_their_events(
    server: PostgresServer,
) -> None:
    """Migration 0006 on an archive written under the old key, (ws, agent,
    started): each row gets the id of the archived event that closed it, so the
    batch written again after the upgrade (read, written, not acknowledged
    before it) adds nothing; and the new key takes what the old one refused."""
    new = next(m for m in migrations() if m.name == "agent_state_interval_events")
    batch = _changes("w1", [T0 + 10, T0 + 20, T0 + 30])
    async with await AsyncConnection.connect(server.url, autocommit=True) as conn:
        async with conn.transaction():  # the schema as it was before
            await conn.execute(VERSION_TABLE)
            for m in migrations()[: new.version - 1]:
                await conn.execute(m.sql.encode())
                await conn.execute(
                    "INSERT INTO archive_schema (version, name, sha256) VALUES (%s, %s, %s)",
                    (m.version, m.name, m.digest),
                )
        await _write_events(conn, batch)
        legacy = [r[:-1] for r in interval_rows(batch)]  # without the event
        await conn.execute(OLD_INSERT, [list(c) for c in zip(*legacy, strict=True)])
        # and one interval whose event the archive no longer holds (retention)
        gone = ("w1", "a9", None, "available", None, *legacy[0][5:])
        await conn.execute(OLD_INSERT, [[v] for v in gone])

        assert await migrate(conn) == [new.version]
        assert await write_intervals(conn, batch) == 3
        cur = await conn.execute(
            "SELECT agent, event FROM agent_state_intervals ORDER BY agent, started"
        )
        assert await cur.fetchall() == [
            ("a1", f"{T0 + 10}-0"), ("a1", f"{T0 + 20}-1"), ("a1", f"{T0 + 30}-2"), ("a9", ""),
        ]  # fmt: skip
        # an interval of no length, and the next one from the same millisecond
        t = T0 + 40
        later = _changes("w2", [t, t, t + 5])
        assert await write_intervals(conn, later) == 3
        cur = await conn.execute("SELECT count(*) FROM agent_state_intervals WHERE ws = 'w2'")
        assert await cur.fetchone() == (3,)
