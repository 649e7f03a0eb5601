"""Staffing per pool from live traffic, and what-if inputs by query."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from redis.asyncio import Redis

from router.store.keys import WsKeys
from router.wfm.queueing import ServiceTarget
from router.wfm.staffing import agents_needed
from tests.support.client import SUP, act, create, put_config, small_config


async def staffing(api: Any, ws: str, query: str = "") -> Any:
    r = await api.get(f"/v1/workspaces/{ws}/pools/cards/staffing{query}", headers=SUP)
    return r.status, await r.json()


async def test_staffing_from_live_arrivals_and_what_if(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    for i in range(30):  # no agents: all wait, 10 leave
        await create(api, ws, f"c{i}")
    for i in range(10):
        assert (await act(api, ws, f"c{i}", "abandon")).status == 200
    status, out = await staffing(api, ws)
    assert status == 200, out
    inputs = out["inputs"]
    assert inputs["rate"] == pytest.approx(30 / 900)  # 30 arrivals in the 15-minute window
    assert inputs["aht"] == 180 and inputs["source"]["aht"] == "pool handle_time"
    assert inputs["source"]["patience"] == "live 1h" and 0 < inputs["patience"] < 60
    target = ServiceTarget(percent=80, seconds=20)
    expected_c = agents_needed(inputs["rate"], 180, target, max_occupancy=0.85, shrinkage=0.3)
    assert out["erlang_c"]["agents"] == expected_c.agents
    assert out["erlang_c"]["scheduled"] == expected_c.scheduled
    assert out["erlang_a"]["model"] == "erlang_a"

    # what-if: a bill-day peak of 0.5 contacts/s with 5-minute calls
    status, out = await staffing(api, ws, "?rate=0.5&aht=300&shrinkage=0.25")
    assert status == 200 and out["inputs"]["source"]["rate"] == "query"
    expected = agents_needed(0.5, 300, target, max_occupancy=0.85, shrinkage=0.25)
    assert (out["erlang_c"]["agents"], out["erlang_c"]["scheduled"]) == (
        expected.agents,
        expected.scheduled,
    )
    assert out["erlang_c"]["agents"] >= 150 * 0.99 / 0.85  # 150 erlangs at <= 85% occupancy


async def test_staffing_bad_input_names_the_field(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    status, out = await staffing(api, ws, "?rate=lots")
    assert status == 422 and out["field"] == "rate"
    status, out = await staffing(api, ws, "?shrinkage=1.5")
    assert status == 422 and out["field"] == "shrinkage"
    r = await api.get(f"/v1/workspaces/{ws}/pools/nope/staffing", headers=SUP)
    assert r.status == 404


def daily_pattern(weekday: int) -> list[int]:
    """Open 08:00-20:00, busier mornings, Fridays half."""
    out = [0] * 96
    for i in range(32, 80):
        out[i] = (12 if i < 48 else 6) // (2 if weekday == 4 else 1)
    return out


async def seed_arrivals(redis_url: str, ws: str, days: int, tomorrow: dt.date) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = WsKeys(ws)
        for back in range(1, days + 1):
            d = tomorrow - dt.timedelta(days=back)
            row = daily_pattern(d.weekday())
            mapping = {f"voice|{i}": n for i, n in enumerate(row) if n}
            await client.hset(
                keys.arrivals("cards", (d - dt.date(1970, 1, 1)).days), mapping=mapping
            )  # type: ignore[arg-type]
    finally:
        await client.aclose()


async def test_forecast_from_recorded_arrivals_gives_an_agents_curve(
    api: Any, ws: str, redis_url: str
) -> None:
    await put_config(api, ws, small_config())
    await create(api, ws, "c1")  # the engine records it: today's key exists
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    await seed_arrivals(redis_url, ws, 28, tomorrow)
    r = await api.get(f"/v1/workspaces/{ws}/pools/cards/forecast?channel=voice", headers=SUP)
    assert r.status == 200, await r.text()
    out = await r.json()
    assert out["day"] == str(tomorrow) and out["method"] == "smoothed"
    want = daily_pattern(tomorrow.weekday())
    assert sum(out["expected"]) == pytest.approx(sum(want), rel=0.15)
    assert all(out["expected"][i] == 0 and out["agents"][i] == 0 for i in range(32))  # night
    peak = max(range(96), key=lambda i: out["expected"][i])
    assert 32 <= peak < 48  # the busy morning
    target = ServiceTarget(percent=80, seconds=20)
    assert (
        out["agents"][peak]
        == agents_needed(out["expected"][peak] / 900, 180, target, max_occupancy=0.85).agents
    )
    assert out["scheduled_peak"] >= out["agents"][peak] / 0.7 - 1


async def test_forecast_with_little_or_no_history(api: Any, ws: str, redis_url: str) -> None:
    await put_config(api, ws, small_config())
    far = dt.date(2030, 1, 10)
    r = await api.get(f"/v1/workspaces/{ws}/pools/cards/forecast?day={far}", headers=SUP)
    assert r.status == 422 and (await r.json())["field"] == "day"
    await seed_arrivals(redis_url, ws, 8, far)
    r = await api.get(f"/v1/workspaces/{ws}/pools/cards/forecast?day={far}", headers=SUP)
    out = await r.json()
    assert r.status == 200 and out["method"] == "seasonal_naive"  # a week: too little to smooth
    assert out["expected"] == [float(x) for x in daily_pattern(far.weekday())]
    r = await api.get(f"/v1/workspaces/{ws}/pools/cards/forecast?channel=fax", headers=SUP)
    assert r.status == 422 and (await r.json())["field"] == "channel"
