"""History reports through the API, from the archive: every figure checked
against what the test computes itself from what it sent and read back from the
contacts' own API answers and events (never from the archive's tables).

A real PostgreSQL and Redis, the service as an aiohttp app with its archiver."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from psycopg import AsyncConnection
from redis.asyncio import Redis

from router.api.app import create_app
from router.archive.contacts import UPSERT_CONTACT, contact_row
from router.runtime.settings import Settings, demo_token_spec
from router.security.auth import mint
from router.store.keys import WsKeys
from tests.support.client import (
    ADM,
    GW,
    JWT_SECRET,
    SUP,
    act,
    add_agent,
    agent_headers,
    create,
    put_config,
    small_config,
)
from tests.support.postgres import PostgresServer, private_postgres

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

CARDS_SL, LOANS_SL = 1.0, 20.0  # service-level thresholds (seconds)


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    with private_postgres("pg-reports-") as pg:
        yield pg


def _settings(redis_url: str, archive_url: str | None) -> Settings:
    env = {
        "ROUTER_TOKENS": demo_token_spec(),
        "ROUTER_METRICS_GROUP": uuid.uuid4().hex,
        "ROUTER_JWT_SECRET": JWT_SECRET,
    }
    if archive_url:
        env["ROUTER_ARCHIVE_URL"] = archive_url
    return Settings.from_env(env, redis_url=redis_url, timer_poll=0.01)


def _config(tz: str) -> dict[str, Any]:
    cfg = small_config(sla="std")
    cfg["timezone"] = tz
    cfg["skills"] = ["cards", "loans", "fx"]
    cfg["channels"]["chat"]["max_wait"] = 1.0  # an unanswered chat expires after 1 s
    cfg["pools"]["cards"]["service_level"] = {"percent": 80, "seconds": CARDS_SL}
    cfg["pools"]["loans"]["service_level"] = {"percent": 80, "seconds": LOANS_SL}
    # nobody has the fx skill: contacts wait there until they move on or expire
    cfg["pools"]["fx"] = {"skills": [{"skill": "fx", "min": 1}], "channels": ["voice", "chat"]}
    cfg["rules"] = [
        {"name": "loan", "when": {"intent": ["loan"]}, "stages": [{"pools": ["loans"]}]},
        {"name": "fx", "when": {"intent": ["fx"]}, "stages": [{"pools": ["fx"]}]},
        {
            "name": "mortgage",
            "when": {"intent": ["mortgage"]},
            "stages": [{"pools": ["fx"]}, {"pools": ["cards"], "after": 0.3}],
        },
    ]
    notify = {"do": "notify", "to": ["role:supervisor"]}
    cfg["sla_policies"] = {
        "std": {
            "answer": {
                "target": 1.0,
                "ladder": [
                    {"at": 0.5, "actions": [notify]},
                    {"at": 1, "actions": [{"do": "boost", "seconds": 10}]},
                    {"after": 0.2, "actions": [notify]},
                ],
            }
        }
    }
    return cfg


def _sup(*teams: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint(JWT_SECRET, "sup1", "supervisor", teams=teams)}


async def _get(api: Any, ws: str, report: str, headers: Any = SUP, **q: str) -> Any:
    r = await api.get(f"/v1/workspaces/{ws}/reports/{report}", params=q, headers=headers)
    assert r.status == 200, await r.text()
    return await r.json()


async def _until(check: Any, within: float = 30.0) -> Any:
    for _ in range(int(within / 0.1)):
        got = await check()
        if got:
            return got
        await asyncio.sleep(0.1)
    raise AssertionError("not reached in time")


# --- what the test sent, read back through the API -------------------------------


async def _contact(api: Any, ws: str, cid: str) -> dict[str, Any]:
    r = await api.get(f"/v1/workspaces/{ws}/contacts/{cid}", headers=ADM)
    assert r.status == 200, await r.text()
    return await r.json()  # type: ignore[no-any-return]


async def _events(api: Any, ws: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = "0"
    while True:
        r = await api.get(
            f"/v1/workspaces/{ws}/events", params={"after": after, "limit": "1000"}, headers=ADM
        )
        page = await r.json()
        out += page["events"]
        if not page["events"]:
            return out
        after = page["next"]


def _facts(c: dict[str, Any], teams: dict[str, str]) -> dict[str, Any]:
    """A finished contact's figures from its API answer: times in seconds."""
    at = {e["type"]: e["at"] for e in c["timeline"]}
    end = next(
        at[t] for t in ("contact.completed", "contact.abandoned", "contact.expired") if t in at
    )
    ans = at.get("contact.assigned")
    enq = c["enqueued_at"]
    return {
        "enq": enq,
        "outcome": c["state"],
        "pool": c["pools"][-1] if c["pools"] else None,
        "tier": c["tier"],
        "channel": c["channel"],
        "team": teams.get(c["agent"]) if c["agent"] else None,
        "wait": (ans if ans is not None else end) - enq,
        "answered": ans is not None,
        "handle": end - ans if ans is not None else None,
        "end": end,
        "clock": c["sla_clocks"]["answer"],
    }


def _local_start(secs: float, tz: str, interval: str) -> str:
    t = dt.datetime.fromtimestamp(secs, ZoneInfo(tz))
    if interval == "day":
        t = t.replace(hour=0, minute=0, second=0, microsecond=0)
    elif interval == "hour":
        t = t.replace(minute=0, second=0, microsecond=0)
    # the local wall time, with the offset it has then
    return t.replace(tzinfo=None).replace(tzinfo=ZoneInfo(tz)).isoformat()


def _expected_service(
    facts: list[dict[str, Any]], tz: str, interval: str, by: tuple[str, ...] = ()
) -> dict[tuple[Any, ...], dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for f in facts:
        key = (_local_start(f["enq"], tz, interval), *(f[d] for d in by))
        groups[key].append(f)
    out = {}
    for key, fs in groups.items():
        sl = {"cards": CARDS_SL, "loans": LOANS_SL}
        thr = [sl.get(f["pool"], 20.0) for f in fs]
        answered = [f for f in fs if f["answered"]]
        within = sum(1 for f, t in zip(fs, thr, strict=True) if f["answered"] and f["wait"] <= t)
        abandoned = [f for f in fs if not f["answered"] and f["outcome"] == "abandoned"]
        short = sum(
            1
            for f, t in zip(fs, thr, strict=True)
            if not f["answered"] and f["outcome"] == "abandoned" and f["wait"] <= t
        )
        completed = [f for f in answered if f["outcome"] == "completed"]
        n = len(fs)
        out[key] = {
            "offered": n,
            "answered": len(answered),
            "answered_within": within,
            "abandoned": len(abandoned),
            "short_abandoned": short,
            "expired": sum(1 for f in fs if not f["answered"] and f["outcome"] == "expired"),
            "service_level": 100 * within / n,
            "service_level_answered": 100 * within / len(answered) if answered else None,
            "service_level_short_excluded": 100 * within / (n - short) if n > short else None,
            "asa_seconds": sum(f["wait"] for f in answered) / len(answered) if answered else None,
            "aht_seconds": (
                sum(f["handle"] for f in completed) / len(completed) if completed else None
            ),
            "longest_wait_seconds": max(f["wait"] for f in fs),
        }
    return out


def _check_rows(rows: list[dict[str, Any]], expected: dict[tuple[Any, ...], Any], by: Any) -> None:
    got = {(r["start"], *(r["group"][d] for d in by)): r for r in rows}
    assert sorted(got, key=str) == sorted(expected, key=str)
    for key, want in expected.items():
        row = got[key]
        for name, value in want.items():
            if value is None or isinstance(value, int):
                assert row[name] == value, (key, name, row[name], value)
            else:
                assert row[name] == pytest.approx(value, abs=0.01), (key, name, row[name], value)


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _as_csv(rows: list[dict[str, Any]], by: list[str]) -> list[dict[str, str]]:
    out = []
    for r in rows:
        flat = {k: v for k, v in r.items() if k != "group"}
        flat.update({d: r["group"][d] for d in by} if "group" in r else {})
        out.append({k: "" if v is None else str(v) for k, v in flat.items()})
    return out


# --- the scenario ------------------------------------------------------------------


async def _drive(api: Any, ws: str) -> list[str]:
    """Contacts answered fast and slow against the cards threshold (1 s), abandoned
    short and long, expired, one that reached two pools, one in loans by another
    team; returns their ids once each has ended."""
    await add_agent(api, ws, "a1", {"cards": 5}, capacity=1000, available=False, team="north")
    await add_agent(api, ws, "a2", {"loans": 5}, capacity=1000, available=False, team="south")
    await create(api, ws, "fast", tier="vip")
    await create(api, ws, "slow")
    await create(api, ws, "gone_short")
    await create(api, ws, "gone_long", channel="chat")
    await create(api, ws, "mort", intent="mortgage")
    await create(api, ws, "exp", channel="chat", intent="fx")
    await create(api, ws, "loan_ok", intent="loan")
    for aid in ("a1", "a2"):
        r = await api.post(
            f"/v1/workspaces/{ws}/agents/{aid}/state",
            json={"state": "available"},
            headers=agent_headers(aid),
        )
        assert r.status == 200, await r.text()
    assert (await act(api, ws, "fast", "accept", agent_id="a1")).status == 200
    assert (await act(api, ws, "loan_ok", "accept", agent_id="a2")).status == 200
    await asyncio.sleep(0.1)
    assert (await act(api, ws, "gone_short", "abandon")).status == 200
    await asyncio.sleep(0.4)  # mort has reached cards (0.3 s) and is offered to a1
    assert (await act(api, ws, "mort", "accept", agent_id="a1")).status == 200
    assert (await act(api, ws, "fast", "complete", agent_id="a1")).status == 200
    await asyncio.sleep(1.0)  # past the 1 s threshold and the SLA target
    assert (await act(api, ws, "slow", "accept", agent_id="a1")).status == 200
    assert (await act(api, ws, "gone_long", "abandon")).status == 200
    await asyncio.sleep(0.3)
    for cid, aid in (("mort", "a1"), ("loan_ok", "a2"), ("slow", "a1")):
        assert (await act(api, ws, cid, "complete", agent_id=aid)).status == 200
    ids = ["fast", "slow", "gone_short", "gone_long", "mort", "exp", "loan_ok"]

    async def ended() -> bool:
        states = [(await _contact(api, ws, cid))["state"] for cid in ids]
        return all(s in ("completed", "abandoned", "expired") for s in states)

    await _until(ended)
    return ids


async def test_reports_match_what_the_contacts_went_through(
    aiohttp_client: Any, redis_url: str, server: PostgresServer, ws: str
) -> None:
    api = await aiohttp_client(create_app(_settings(redis_url, server.url)))
    tz = "Asia/Tokyo"
    await put_config(api, ws, _config(tz))
    # archived from the first contact on (no timeline copies kept in Redis)
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        await _until(lambda: client.hget(WsKeys(ws).runtime, "arch"))
    finally:
        await client.aclose()
    ids = await _drive(api, ws)
    teams = {"a1": "north", "a2": "south"}
    contacts = {cid: await _contact(api, ws, cid) for cid in ids}
    facts = [_facts(contacts[cid], teams) for cid in ids]
    assert contacts["mort"]["pools"] == ["fx", "cards"]  # counted under cards, its last
    assert contacts["exp"]["state"] == "expired"
    # a window holding every contact in Tokyo days and in UTC days alike
    first = dt.datetime.fromtimestamp(min(f["enq"] for f in facts) - 86_400, dt.UTC)
    frm = first.date().isoformat()
    to = dt.datetime.fromtimestamp(max(f["end"] for f in facts), ZoneInfo(tz)).date().isoformat()
    window = {"from": frm, "to": to}

    async def archived() -> bool:
        rep = await _get(api, ws, "service", **window)
        return bool(sum(r["offered"] for r in rep["rows"]) == len(ids))

    await _until(archived)

    # service, by day and by hour, grouped several ways
    for interval, by in (("day", ()), ("hour", ("pool",)), ("day", ("pool", "tier", "team"))):
        q = {**window, "interval": interval}
        if by:
            q["by"] = ",".join(by)
        rep = await _get(api, ws, "service", **q)
        assert rep["timezone"] == tz and rep["by"] == list(by) and rep["interval"] == interval
        _check_rows(rep["rows"], _expected_service(facts, tz, interval, by), by)
        # CSV: the same rows, a header and one line each
        r = await api.get(
            f"/v1/workspaces/{ws}/reports/service",
            params=q,
            headers={**SUP, "Accept": "text/csv"},
        )
        assert r.status == 200 and r.content_type == "text/csv"
        text = await r.text()
        assert text.count("\r\n") == len(rep["rows"]) + 1
        assert _csv(text) == _as_csv(rep["rows"], list(by))

    # the same contacts in UTC days: other day boundaries
    await put_config(api, ws, _config("UTC"))
    utc = await _get(api, ws, "service", **window)
    assert utc["timezone"] == "UTC"
    _check_rows(utc["rows"], _expected_service(facts, "UTC", "day"), ())
    assert {r["start"] for r in utc["rows"]}.isdisjoint({r["start"] for r in rep["rows"]})
    await put_config(api, ws, _config(tz))

    # SLA: outcomes as the contacts' clocks say, steps as their events say
    events = [e for e in await _events(api, ws) if e["type"].startswith("sla.")]
    sla = await _get(api, ws, "sla", **window)
    want: dict[str, int] = defaultdict(int)
    for f in facts:
        want[f["clock"]["status"]] += 1
    kinds = ("sla.warning", "sla.breached", "sla.escalated")
    steps = [{**e["data"], "type": e["type"]} for e in events if e["type"] in kinds]
    totals: dict[str, int] = defaultdict(int)
    for row in sla["rows"]:
        assert (row["policy"], row["clock"]) == ("std", "answer")
        for k in ("met", "missed", "cancelled", "warnings", "breaches", "escalations", "boosts",
                  "notifications", "expansions", "reassignments"):  # fmt: skip
            totals[k] += row[k]
    assert (totals["met"], totals["missed"], totals["cancelled"]) == (
        want["met"],
        want["missed"],
        want["cancelled"],
    )
    assert totals["met"] >= 2 and totals["missed"] >= 1  # fast, loan_ok; slow
    assert totals["warnings"] == sum(1 for s in steps if s["type"] == "sla.warning") > 0
    assert totals["breaches"] == sum(1 for s in steps if s["type"] == "sla.breached") > 0
    assert totals["escalations"] == sum(1 for s in steps if s["type"] == "sla.escalated")
    assert totals["boosts"] == sum(1 for s in steps if "boost_ms" in s)
    assert totals["notifications"] == sum(1 for s in steps if "notify" in s)
    assert totals["expansions"] == totals["reassignments"] == 0
    if len(sla["rows"]) == 1:
        row = sla["rows"][0]
        assert row["compliance"] == pytest.approx(100 * row["met"] / (row["met"] + row["missed"]))

    # surveys: ratings with kinds are not in this base yet, so the scores are
    # written straight onto the archived rows (to become ratings through the API)
    scores = {"fast": (5, 10), "slow": (2, 3), "mort": (4, 8), "loan_ok": (3, 9)}
    async with await AsyncConnection.connect(server.url, autocommit=True) as conn:
        for cid, (csat, nps) in scores.items():
            await conn.execute(
                "UPDATE contacts SET csat = %s, nps = %s WHERE ws = %s AND id = %s",
                (csat, nps, ws, cid),
            )
    surveys = await _get(api, ws, "surveys", **window, by="team")
    by_team: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for cid, s in scores.items():
        by_team[teams[contacts[cid]["agent"]]].append(s)
    days = {_local_start(_facts(contacts[c], teams)["end"], tz, "day") for c in scores}
    if len(days) == 1:  # (a run across local midnight splits them; figures below per team)
        got = {r["group"]["team"]: r for r in surveys["rows"]}
        assert sorted(got) == sorted(by_team)
        for team, ss in by_team.items():
            row = got[team]
            csats, npss = [c for c, _ in ss], [n for _, n in ss]
            assert row["csat_responses"] == len(csats)
            assert row["csat_mean"] == pytest.approx(sum(csats) / len(csats), abs=0.001)
            sat = 100 * sum(1 for c in csats if c >= 4) / len(csats)
            assert row["csat_satisfied"] == pytest.approx(sat, abs=0.01)
            prom = sum(1 for n in npss if n >= 9)
            det = sum(1 for n in npss if n <= 6)
            assert (row["nps_responses"], row["promoters"], row["detractors"]) == (
                len(npss),
                prom,
                det,
            )
            assert row["nps"] == pytest.approx(100 * (prom - det) / len(npss), abs=0.01)

    # a supervisor of team south sees only what its team handled
    south = await _get(api, ws, "service", headers=_sup("south"), **window, by="team")
    assert [r["group"]["team"] for r in south["rows"]] == ["south"] * len(south["rows"])
    assert sum(r["offered"] for r in south["rows"]) == 1  # loan_ok
    south_sla = await _get(api, ws, "sla", headers=_sup("south"), **window)
    assert sum(r["met"] + r["missed"] + r["cancelled"] for r in south_sla["rows"]) == 1
    nobody = await _get(api, ws, "surveys", headers=_sup("west"), **window)
    assert nobody["rows"] == []
    admin = await _get(api, ws, "service", headers=ADM, **window)
    assert sum(r["offered"] for r in admin["rows"]) == len(ids)
    for headers in (GW, agent_headers("a1")):
        r = await api.get(f"/v1/workspaces/{ws}/reports/service", headers=headers)
        assert r.status == 403

    # the archive down: 503 with Retry-After, never a 500
    server.stop()
    r = await api.get(f"/v1/workspaces/{ws}/reports/service", params=window, headers=SUP)
    assert r.status == 503 and r.content_type == "application/problem+json"
    assert int(r.headers["Retry-After"]) > 0


async def test_bad_parameters_are_refused_naming_them(
    aiohttp_client: Any, redis_url: str, server: PostgresServer, ws: str
) -> None:
    api = await aiohttp_client(create_app(_settings(redis_url, server.url)))
    await put_config(api, ws, _config("Europe/Paris"))
    url = f"/v1/workspaces/{ws}/reports/"
    cases = [
        ("service", {"from": "yesterday"}, "from"),
        ("service", {"from": "2026-02-30"}, "from"),
        ("service", {"from": "0001-01-01"}, "from"),
        ("surveys", {"to": "9999-12-31"}, "to"),
        ("service", {"to": "2026-13-01T00:00"}, "to"),
        ("service", {"from": "2026-03-02", "to": "2026-03-01"}, "to"),
        ("service", {"from": "2026-03-02T10:00", "to": "2026-03-02T10:00"}, "to"),
        ("sla", {"from": "2024-01-01", "to": "2026-01-01"}, "to"),
        ("service", {"interval": "week"}, "interval"),
        ("surveys", {"from": "2026-01-01", "to": "2026-06-30", "interval": "15m"}, "interval"),
        ("service", {"by": "agent"}, "by"),
        ("service", {"by": "pool,"}, "by"),
        ("sla", {"by": "pool"}, "by"),
    ]
    for report, params, field in cases:
        r = await api.get(url + report, params=params, headers=SUP)
        assert r.status == 422, (report, params, r.status)
        problem = await r.json()
        assert r.content_type == "application/problem+json" and problem["field"] == field
    r = await api.get(f"/v1/workspaces/nope{ws}/reports/service", headers=SUP)
    assert r.status == 404
    # well-formed: an empty report, its window in the workspace's time
    rep = await _get(api, ws, "sla", **{"from": "2026-03-29", "to": "2026-03-29"})
    assert (rep["from"], rep["to"]) == ("2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00")
    assert rep["rows"] == []
    rep = await _get(api, ws, "service", **{"from": "2026-03-29T10:00Z", "to": "2026-03-29T13:00"})
    assert (rep["from"], rep["to"]) == ("2026-03-29T12:00:00+02:00", "2026-03-29T13:00:00+02:00")


async def test_without_an_archive_reports_say_so(
    aiohttp_client: Any, redis_url: str, ws: str
) -> None:
    api = await aiohttp_client(create_app(_settings(redis_url, None)))
    await put_config(api, ws, _config("UTC"))
    for report in ("service", "sla", "surveys"):
        r = await api.get(f"/v1/workspaces/{ws}/reports/{report}", headers=SUP)
        assert r.status == 404 and r.content_type == "application/problem+json"
        assert "archive" in (await r.json())["detail"]


# --- rows with controlled times: local days, DST --------------------------------------


def _ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp() * 1000)


async def _write(url: str, ws: str, cid: str, enq: str, wait_s: float, pool: str = "cards") -> None:
    """A completed contact as the archiver writes it (its row from a record)."""
    e = _ms(enq)
    ans = e + int(wait_s * 1000)
    raw = {
        "id": cid, "st": "completed", "ch": "voice", "tier": "standard", "created": str(e),
        "enq": str(e), "ans": str(ans), "done": str(ans + 60_000), "stages": f"0:{pool}",
        "stage": "1", "agent": "a1",
    }  # fmt: skip
    row = contact_row(ws, raw, {}, "north", None)
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT archive_day_partition('contacts', %s)", (row[2].date(),))
        await conn.execute(UPSERT_CONTACT, row)


async def test_days_are_the_workspace_s_local_days(
    aiohttp_client: Any, redis_url: str, server: PostgresServer
) -> None:
    api = await aiohttp_client(create_app(_settings(redis_url, server.url)))
    tag = uuid.uuid4().hex[:6]
    zones = {
        "UTC": f"tz-utc-{tag}",
        "Asia/Tokyo": f"tz-tyo-{tag}",
        "America/New_York": f"tz-ny-{tag}",
    }

    async def migrated() -> bool:  # the service applies the schema at start
        async with await AsyncConnection.connect(server.url) as conn:
            cur = await conn.execute("SELECT to_regclass('archive_schema') IS NOT NULL")
            row = await cur.fetchone()
            if not (row and row[0]):
                return False
            cur = await conn.execute("SELECT count(*) FROM archive_schema")
            row = await cur.fetchone()
            return bool(row and row[0] > 0)

    await _until(migrated)
    for tz, ws in zones.items():
        await put_config(api, ws, _config(tz))
        await _write(server.url, ws, "c1", "2026-03-08T14:00:00+00:00", 0.5)  # Tokyo 23:00
        await _write(server.url, ws, "c2", "2026-03-08T16:30:00+00:00", 3.0)  # Tokyo 01:30 (9th)
        await _write(server.url, ws, "c3", "2026-03-09T03:50:00+00:00", 0.2)  # New York 23:50 (8th)
    window = {"from": "2026-03-08", "to": "2026-03-09"}

    def summary(rep: dict[str, Any]) -> list[tuple[str, int, int]]:
        return [(r["start"], r["offered"], r["answered_within"]) for r in rep["rows"]]

    utc = await _get(api, zones["UTC"], "service", **window)
    assert summary(utc) == [
        ("2026-03-08T00:00:00+00:00", 2, 1),
        ("2026-03-09T00:00:00+00:00", 1, 1),
    ]
    tokyo = await _get(api, zones["Asia/Tokyo"], "service", **window)
    assert summary(tokyo) == [
        ("2026-03-08T00:00:00+09:00", 1, 1),
        ("2026-03-09T00:00:00+09:00", 2, 1),
    ]
    # New York changes to summer time on 8 March: the day starts at -05:00
    ny = await _get(api, zones["America/New_York"], "service", **window)
    assert summary(ny) == [("2026-03-08T00:00:00-05:00", 3, 2)]
    hours = await _get(api, zones["America/New_York"], "service", **window, interval="hour")
    assert [r["start"] for r in hours["rows"]] == [
        "2026-03-08T10:00:00-04:00",
        "2026-03-08T12:00:00-04:00",
        "2026-03-08T23:00:00-04:00",
    ]
    quarter = await _get(api, zones["Asia/Tokyo"], "service", **window, interval="15m")
    assert [r["start"] for r in quarter["rows"]] == [
        "2026-03-08T23:00:00+09:00",
        "2026-03-09T01:30:00+09:00",
        "2026-03-09T12:45:00+09:00",
    ]
    month = await _get(api, zones["Asia/Tokyo"], "service", **window, interval="month")
    assert summary(month) == [("2026-03-01T00:00:00+09:00", 3, 2)]
    await _dashboard_queries_run(server.url, zones["Asia/Tokyo"])
    # a datetime window: only what entered the queue in it
    part = await _get(
        api, zones["UTC"], "service", **{"from": "2026-03-08T15:00", "to": "2026-03-08T17:00"}
    )
    assert summary(part) == [("2026-03-08T00:00:00+00:00", 1, 0)]


DASHBOARD = Path(__file__).resolve().parents[2] / "deploy/grafana/dashboards/history.json"


def _grafana(sql_text: str, ws: str, tz: str) -> str:
    """A panel's SQL with Grafana's macros and variables as Grafana expands them
    (values here are fixed and quoted by the test, as `:sqlstring` would)."""
    frm, to = "'2026-03-01T00:00:00Z'::timestamptz", "'2026-04-01T00:00:00Z'::timestamptz"
    sql_text = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN {frm} AND {to}", sql_text)
    for name, value in {
        "$__timeFrom()": frm,
        "${workspace:sqlstring}": f"'{ws}'",
        "${timezone:sqlstring}": f"'{tz}'",
        "${sl_seconds}": "1",
    }.items():
        sql_text = sql_text.replace(name, value)
    assert "$" not in sql_text, sql_text
    return sql_text


async def _dashboard_queries_run(url: str, ws: str) -> None:
    """Every panel of the history dashboard runs on the archive's schema; the
    daily service level by pool agrees with the API's."""
    dash = json.loads(DASHBOARD.read_text())
    assert dash["panels"] and all(p["datasource"]["uid"] == "archive" for p in dash["panels"])
    async with await AsyncConnection.connect(url) as conn:
        variable = _grafana(dash["templating"]["list"][0]["query"], ws, "UTC")
        assert (ws,) in await (await conn.execute(variable)).fetchall()
        results = {}
        for panel in dash["panels"]:
            (target,) = panel["targets"]
            cur = await conn.execute(_grafana(target["rawSql"], ws, "Asia/Tokyo"))
            assert cur.description and cur.description[0].name == "time", panel["title"]
            results[panel["title"].split(",")[0]] = await cur.fetchall()
    tokyo = ZoneInfo("Asia/Tokyo")
    assert [
        (t.astimezone(tokyo).isoformat(), pool, float(v))
        for t, pool, v in results["Service level by pool"]
    ] == [
        ("2026-03-08T00:00:00+09:00", "cards", 100.0),
        ("2026-03-09T00:00:00+09:00", "cards", 50.0),
    ]
