"""History reports bucket by the workspace's local time: rows written as the
archiver writes them, at chosen instants, read back in UTC, Tokyo and New York
days (across a DST change), hours, quarter hours and months; the Grafana
history dashboard's queries run on the same rows and agree with the API.

A real PostgreSQL and Redis, the service as an aiohttp app with its archiver."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from psycopg import AsyncConnection

from router.api.app import create_app
from router.archive.contacts import contact_row, upsert_contacts
from tests.support.archive import archive_settings, until
from tests.support.client import put_config
from tests.support.postgres import PostgresServer
from tests.support.reports import get_report, report_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


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
        await upsert_contacts(conn, [row])


async def test_days_are_the_workspace_s_local_days(
    aiohttp_client: Any, redis_url: str, server: PostgresServer
) -> None:
    tag = uuid.uuid4().hex[:6]
    zones = {
        "UTC": f"tz-utc-{tag}",
        "Asia/Tokyo": f"tz-tyo-{tag}",
        "America/New_York": f"tz-ny-{tag}",
    }
    # The rows lie in March 2026: the workspaces keep ten years of contacts,
    # configured before a service with an archive starts, so no retention round
    # of the archive's can drop their days.
    plain = await aiohttp_client(create_app(archive_settings(redis_url, None)))
    for tz, ws in zones.items():
        cfg = report_config(tz)
        cfg["retention"] = {"contacts": "3650d"}
        await put_config(plain, ws, cfg)
    api = await aiohttp_client(create_app(archive_settings(redis_url, server.url)))

    async def migrated() -> bool:  # the service applies the schema at start
        async with await AsyncConnection.connect(server.url) as conn:
            cur = await conn.execute("SELECT to_regclass('archive_schema') IS NOT NULL")
            row = await cur.fetchone()
            if not (row and row[0]):
                return False
            cur = await conn.execute("SELECT count(*) FROM archive_schema")
            row = await cur.fetchone()
            return bool(row and row[0] > 0)

    await until(migrated)
    for ws in zones.values():
        await _write(server.url, ws, "c1", "2026-03-08T14:00:00+00:00", 0.5)  # Tokyo 23:00
        await _write(server.url, ws, "c2", "2026-03-08T16:30:00+00:00", 3.0)  # Tokyo 01:30 (9th)
        await _write(server.url, ws, "c3", "2026-03-09T03:50:00+00:00", 0.2)  # New York 23:50 (8th)
    window = {"from": "2026-03-08", "to": "2026-03-09"}

    def summary(rep: dict[str, Any]) -> list[tuple[str, int, int]]:
        return [(r["start"], r["offered"], r["answered_within"]) for r in rep["rows"]]

    utc = await get_report(api, zones["UTC"], "service", **window)
    assert summary(utc) == [
        ("2026-03-08T00:00:00+00:00", 2, 1),
        ("2026-03-09T00:00:00+00:00", 1, 1),
    ]
    tokyo = await get_report(api, zones["Asia/Tokyo"], "service", **window)
    assert summary(tokyo) == [
        ("2026-03-08T00:00:00+09:00", 1, 1),
        ("2026-03-09T00:00:00+09:00", 2, 1),
    ]
    # New York changes to summer time on 8 March: the day starts at -05:00
    ny = await get_report(api, zones["America/New_York"], "service", **window)
    assert summary(ny) == [("2026-03-08T00:00:00-05:00", 3, 2)]
    hours = await get_report(api, zones["America/New_York"], "service", **window, interval="hour")
    assert [r["start"] for r in hours["rows"]] == [
        "2026-03-08T10:00:00-04:00",
        "2026-03-08T12:00:00-04:00",
        "2026-03-08T23:00:00-04:00",
    ]
    quarter = await get_report(api, zones["Asia/Tokyo"], "service", **window, interval="15m")
    assert [r["start"] for r in quarter["rows"]] == [
        "2026-03-08T23:00:00+09:00",
        "2026-03-09T01:30:00+09:00",
        "2026-03-09T12:45:00+09:00",
    ]
    month = await get_report(api, zones["Asia/Tokyo"], "service", **window, interval="month")
    assert summary(month) == [("2026-03-01T00:00:00+09:00", 3, 2)]
    await _dashboard_queries_run(server.url, zones["Asia/Tokyo"])
    # a datetime window: only what entered the queue in it
    part = await get_report(
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
