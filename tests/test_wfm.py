"""Staffing per pool from live traffic, and what-if inputs by query."""

from __future__ import annotations

from typing import Any

import pytest

from router.staffing import ServiceTarget, agents_needed
from tests.conftest import SUP, act, create, put_config, small_config


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
        expected.agents, expected.scheduled)
    assert out["erlang_c"]["agents"] >= 150 * 0.99 / 0.85  # 150 erlangs at <= 85% occupancy


async def test_staffing_bad_input_names_the_field(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    status, out = await staffing(api, ws, "?rate=lots")
    assert status == 422 and out["field"] == "rate"
    status, out = await staffing(api, ws, "?shrinkage=1.5")
    assert status == 422 and out["field"] == "shrinkage"
    r = await api.get(f"/v1/workspaces/{ws}/pools/nope/staffing", headers=SUP)
    assert r.status == 404
