"""History reports through the API, from the archive: every figure checked
against what the test computes itself from what it sent and read back from the
contacts' own API answers and events (never from the archive's tables).

A real PostgreSQL and Redis, the service as an aiohttp app with its archiver.
Local days, DST and the Grafana dashboard's queries: test_reports_local_time.py."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from router.api.app import create_app
from router.store.keys import WsKeys
from tests.support.archive import archive_settings, until
from tests.support.client import ADM, GW, SUP, act, add_agent, agent_headers, create, put_config
from tests.support.postgres import PostgresServer
from tests.support.reports import (
    CARDS_SL,
    LOANS_SL,
    get_report,
    report_config,
    sup_of,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


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
    HELD = ("contact.offered", "contact.assigned")
    end = next(
        at[t] for t in ("contact.completed", "contact.abandoned", "contact.expired") if t in at
    )
    ans = at.get("contact.assigned")
    enq = c["enqueued_at"]
    return {
        "enq": enq,
        "outcome": c["state"],
        # the pool it was offered from, else the last it reached
        "pool": next(
            (e["pool"] for e in reversed(c["timeline"]) if e["type"] in HELD and e.get("pool")),
            c["pools"][-1] if c["pools"] else None,
        ),
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
    await asyncio.sleep(0.4)  # mort reaches cards after 0.3 s and is offered to a1

    async def offered() -> bool:
        return bool((await _contact(api, ws, "mort"))["state"] == "offered")

    await until(offered, within=5)
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

    await until(ended)
    return ids


async def test_reports_match_what_the_contacts_went_through(
    aiohttp_client: Any, redis_url: str, server: PostgresServer, ws: str
) -> None:
    api = await aiohttp_client(create_app(archive_settings(redis_url, server.url)))
    tz = "Asia/Tokyo"
    await put_config(api, ws, report_config(tz))
    # archived from the first contact on (no timeline copies kept in Redis)
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        await until(lambda: client.hget(WsKeys(ws).runtime, "arch"))
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
        rep = await get_report(api, ws, "service", **window)
        return bool(sum(r["offered"] for r in rep["rows"]) == len(ids))

    await until(archived)

    # service, by day and by hour, grouped several ways
    for interval, by in (("day", ()), ("hour", ("pool",)), ("day", ("pool", "tier", "team"))):
        q = {**window, "interval": interval}
        if by:
            q["by"] = ",".join(by)
        rep = await get_report(api, ws, "service", **q)
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
    await put_config(api, ws, report_config("UTC"))
    utc = await get_report(api, ws, "service", **window)
    assert utc["timezone"] == "UTC"
    _check_rows(utc["rows"], _expected_service(facts, "UTC", "day"), ())
    assert {r["start"] for r in utc["rows"]}.isdisjoint({r["start"] for r in rep["rows"]})
    await put_config(api, ws, report_config(tz))

    # SLA: outcomes as the contacts' clocks say, steps as their events say (a
    # step due before its clock stopped may still fire late: read both again
    # until the archive has caught up with the stream)
    want: dict[str, int] = defaultdict(int)
    for f in facts:
        want[f["clock"]["status"]] += 1
    kinds = ("sla.warning", "sla.breached", "sla.escalated")
    names = ("met", "missed", "cancelled", "warnings", "breaches", "escalations", "boosts",
             "notifications", "expansions", "reassignments")  # fmt: skip

    seen: list[tuple[dict[str, int], dict[str, int]]] = []

    async def sla_agrees() -> tuple[dict[str, Any], dict[str, int]] | None:
        events = await _events(api, ws)
        steps = [{**e["data"], "type": e["type"]} for e in events if e["type"] in kinds]
        expected = {
            **want,
            "warnings": sum(1 for s in steps if s["type"] == "sla.warning"),
            "breaches": sum(1 for s in steps if s["type"] == "sla.breached"),
            "escalations": sum(1 for s in steps if s["type"] == "sla.escalated"),
            "boosts": sum(1 for s in steps if "boost_ms" in s),
            "notifications": sum(1 for s in steps if "notify" in s),
            "expansions": 0,
            "reassignments": 0,
        }
        sla = await get_report(api, ws, "sla", **window)
        totals = {k: sum(r[k] for r in sla["rows"]) for k in names}
        seen.append((totals, expected))
        return (sla, totals) if totals == {k: expected[k] for k in names} else None

    try:
        sla, totals = await until(sla_agrees, within=10)
    except AssertionError:
        raise AssertionError(f"the SLA report disagrees with the events: {seen[-1]}") from None
    assert all((r["policy"], r["clock"]) == ("std", "answer") for r in sla["rows"])
    assert totals["met"] >= 2 and totals["missed"] >= 1  # fast, loan_ok; slow
    assert totals["warnings"] > 0 and totals["breaches"] > 0 and totals["notifications"] > 0
    if len(sla["rows"]) == 1:
        row = sla["rows"][0]
        assert row["compliance"] == pytest.approx(100 * row["met"] / (row["met"] + row["missed"]))

    # surveys: the customers answer both surveys through the API
    scores = {"fast": (5, 10), "slow": (2, 3), "mort": (4, 8), "loan_ok": (3, 9)}
    for cid, (csat, nps) in scores.items():
        assert (await act(api, ws, cid, "rating", kind="csat", score=csat)).status == 200
        assert (await act(api, ws, cid, "rating", kind="nps", score=nps)).status == 200

    async def all_answered() -> Any:
        got = await get_report(api, ws, "surveys", **window, by="team")
        n = sum(r["csat_responses"] + r["nps_responses"] for r in got["rows"])
        return got if n == 2 * len(scores) else None

    surveys = await until(all_answered, within=20)
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
    south = await get_report(api, ws, "service", headers=sup_of("south"), **window, by="team")
    assert [r["group"]["team"] for r in south["rows"]] == ["south"] * len(south["rows"])
    assert sum(r["offered"] for r in south["rows"]) == 1  # loan_ok
    south_sla = await get_report(api, ws, "sla", headers=sup_of("south"), **window)
    assert sum(r["met"] + r["missed"] + r["cancelled"] for r in south_sla["rows"]) == 1
    nobody = await get_report(api, ws, "surveys", headers=sup_of("west"), **window)
    assert nobody["rows"] == []
    admin = await get_report(api, ws, "service", headers=ADM, **window)
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
    api = await aiohttp_client(create_app(archive_settings(redis_url, server.url)))
    await put_config(api, ws, report_config("Europe/Paris"))
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
    rep = await get_report(api, ws, "sla", **{"from": "2026-03-29", "to": "2026-03-29"})
    assert (rep["from"], rep["to"]) == ("2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00")
    assert rep["rows"] == []
    rep = await get_report(
        api, ws, "service", **{"from": "2026-03-29T10:00Z", "to": "2026-03-29T13:00"}
    )
    assert (rep["from"], rep["to"]) == ("2026-03-29T12:00:00+02:00", "2026-03-29T13:00:00+02:00")


async def test_without_an_archive_reports_say_so(
    aiohttp_client: Any, redis_url: str, ws: str
) -> None:
    api = await aiohttp_client(create_app(archive_settings(redis_url, None)))
    await put_config(api, ws, report_config("UTC"))
    for report in ("service", "sla", "surveys"):
        r = await api.get(f"/v1/workspaces/{ws}/reports/{report}", headers=SUP)
        assert r.status == 404 and r.content_type == "application/problem+json"
        assert "archive" in (await r.json())["detail"]
