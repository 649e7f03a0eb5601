"""/metrics: real output passes `promtool check metrics`, the numbers match what
happened, and with several replicas the shared state is exported by exactly one."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop
from prometheus_client.parser import text_string_to_metric_families

from tests.support.client import ADM, GW, SUP, act, add_agent, create, put_config, small_config
from tests.support.procs import start_replicas, stop_replicas, wait_ready

PROMTOOL = shutil.which("promtool")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(m: dict[Any, float], name: str, **labels: str) -> float:
    return m[(name, frozenset(labels.items()))]


def sla_cfg() -> dict[str, Any]:
    cfg = small_config()
    cfg["channels"]["voice"]["offer_timeout"] = 600
    cfg["sla_policies"] = {"std": {"answer": 600}}
    cfg["defaults"]["sla"] = "std"
    return cfg


async def test_metrics_reflect_the_day_and_pass_promtool(api: Any, ws: str) -> None:
    await put_config(api, ws, sla_cfg())
    await add_agent(api, ws, "a1", {"cards": 5})
    for cid in ("c1", "c2", "c3"):
        await create(api, ws, cid)
    assert (await act(api, ws, "c1", "accept", agent_id="a1")).status == 200
    assert (await act(api, ws, "c3", "abandon")).status == 200
    assert (await act(api, ws, "c1", "complete", agent_id="a1")).status == 200  # c2 offered
    r = await api.get("/metrics")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
    text = await r.text()
    assert PROMTOOL, "promtool is missing: scripts/bootstrap installs it (Debian prometheus)"
    proc = await asyncio.create_subprocess_exec(
        PROMTOOL,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate(text.encode())
    assert proc.returncode == 0, out.decode()
    m = samples(text)
    ev = "router_contact_events_total"
    base = {"workspace": ws, "channel": "voice", "tier": "standard"}
    assert value(m, ev, event="created", pool="cards", **base) == 3
    assert value(m, ev, event="assigned", pool="cards", **base) == 1
    assert value(m, ev, event="abandoned", pool="cards", **base) == 1
    assert value(m, ev, event="completed", pool="cards", **base) == 1
    assert value(m, ev, event="offered", pool="cards", **base) == 2
    w = {"workspace": ws, "pool": "cards", "window": "15m"}
    assert value(m, "router_service_level_ratio", **w) == 1.0  # the answer was at once
    assert value(m, "router_service_level_with_abandons_ratio", **w) == 0.5
    assert value(m, "router_abandon_rate_ratio", **w) == 0.5
    assert value(m, "router_arrival_rate_per_second", **w) == pytest.approx(3 / 900)
    p = {"workspace": ws, "pool": "cards"}
    assert value(m, "router_agents", state="busy", **p) == 1
    assert value(m, "router_queue_depth", channel="voice", **p) == 0
    assert value(m, "router_service_level_target_ratio", **p) == 0.8
    sla = {"workspace": ws, "policy": "std", "clock": "answer"}
    assert value(m, "router_sla_events_total", event="met", **sla) == 1  # c1 answered
    assert value(m, "router_sla_events_total", event="cancelled", **sla) == 1  # c3 left
    assert value(m, "router_metrics_exporter") == 1
    # never a contact or agent id in a label
    assert not any(v in ("c1", "c2", "c3", "a1") for (_, labels) in m for _, v in labels)


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[Any, float]:
    async with http.get(url + "/metrics") as r:
        assert r.status == 200
        return samples(await r.text())


async def two_replicas(redis_url: str, ws: str, log_dir: Path) -> list[dict[Any, float]]:
    replicas = start_replicas(redis_url, log_dir, 2, {"ROUTER_METRICS_GROUP": ws})
    try:
        await wait_ready(replicas)
        async with aiohttp.ClientSession() as http:
            base = f"/v1/workspaces/{ws}"
            async with http.put(replicas[0].url + base, json=small_config(), headers=ADM) as r:
                assert r.status == 200
            for i in range(4):  # no agents: all four wait
                body = {"id": f"c{i}", "channel": "voice", "customer": {"id": f"x{i}"}}
                async with http.post(
                    replicas[i % 2].url + base + "/contacts", json=body, headers=GW
                ) as r:
                    assert r.status == 201
            async with http.get(replicas[1].url + base + "/pools/cards", headers=SUP) as r:
                assert (await r.json())["depth"] == 4
            # the exporter learns of a new workspace from its cached list (renewed
            # every few seconds, or on the config change's notification): under a
            # loaded machine that can come after the first scrape
            key = (
                "router_queue_depth",
                frozenset({"workspace": ws, "pool": "cards", "channel": "voice"}.items()),
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while True:
                first = [await scrape(http, r.url) for r in replicas]
                if sum(m.get(key, 0) for m in first) or loop.time() > deadline:
                    break
                await asyncio.sleep(0.2)
            # the exporter stops: the other takes the lease at its next scrape
            holder = next(
                i for i, m in enumerate(first) if value(m, "router_metrics_exporter") == 1
            )
            code = replicas[holder].stop()
            assert code == 0, f"unclean shutdown ({code}):\n{replicas[holder].log_tail()}"
            after = await scrape(http, replicas[1 - holder].url)
        return [*first, after]
    finally:
        stop_replicas(replicas)


@pytest.mark.slow
def test_shared_state_is_exported_once_across_replicas(
    redis_url: str, ws: str, tmp_path: Path
) -> None:
    a, b, after = uvloop.run(two_replicas(redis_url, ws, tmp_path))
    depth = "router_queue_depth"
    key = (depth, frozenset({"workspace": ws, "pool": "cards", "channel": "voice"}.items()))
    # summed over replicas (what PromQL's sum() does): counted once, not twice
    assert sum(m.get(key, 0) for m in (a, b)) == 4
    assert value(a, "router_metrics_exporter") + value(b, "router_metrics_exporter") == 1
    created = [
        k
        for m in (a, b)
        for k in m
        if k[0] == "router_contact_events_total" and ("workspace", ws) in k[1]
    ]
    assert len(created) == 1  # one series, from the exporter only
    # per-replica counters are on both: each served some of the four creates
    route = "/v1/workspaces/{ws}/contacts"
    counts = [
        m[
            (
                "router_http_request_duration_seconds_count",
                frozenset({"method": "POST", "route": route, "status": "201"}.items()),
            )
        ]
        for m in (a, b)
    ]
    assert counts == [2, 2]
    assert value(after, "router_metrics_exporter") == 1 and after[key] == 4
