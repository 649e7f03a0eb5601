"""Timers cost nothing while nothing is due, and still fire on time: a worker
sleeps until its workspace's next due time, and a script adding an earlier
timer wakes every replica's worker through Redis pub/sub."""

from __future__ import annotations

import asyncio
from typing import Any

from router.api.appkeys import TIMERS
from tests.sla.test_clocks import contact, sla_config, types, wait_for
from tests.support.client import create, put_config


def warn_config() -> dict[str, Any]:
    ladder = [{"at": 0.5}]
    return sla_config(std={"answer": {"target": 1.2, "ladder": ladder}}) | {
        "defaults": {"tier": "standard", "stages": [{"pools": ["cards"]}], "sla": "std"}
    }


async def test_an_idle_workspace_is_claimed_rarely(api: Any, ws: str) -> None:
    await put_config(api, ws, warn_config())
    worker = api.server.app[TIMERS]
    await asyncio.sleep(0.5)  # the worker has looked at the new workspace once
    before = worker.claims_by_ws[ws]
    await asyncio.sleep(2.0)
    # at the default poll of 10 ms it would have claimed about 200 times; other
    # tests' workspaces on the same worker claim as their own timers come due
    claimed = worker.claims_by_ws[ws] - before
    assert claimed <= 2, claimed


async def test_a_timer_added_while_the_worker_sleeps_fires_on_time(api: Any, ws: str) -> None:
    await put_config(api, ws, warn_config())
    await asyncio.sleep(0.5)  # the worker sleeps: nothing is due in this workspace
    await create(api, ws, "c1")  # its SLA warning is due 0.6 s later, breach 1.2 s
    got = await wait_for(api, ws, "c1", lambda c: "sla.breached" in types(c), within=4.0)
    steps = [e for e in got["timeline"] if e["type"] in ("sla.warning", "sla.breached")]
    assert [e["type"] for e in steps] == ["sla.warning", "sla.breached"]
    assert all(e["late_ms"] < 250 for e in steps), steps
    assert (await contact(api, ws, "c1"))["state"] == "queued"
