"""The engine on a real Redis Cluster: three primaries with a replica each on
loopback, three workspaces, one on each shard, served by two router replicas.

Every feature runs per workspace on the primary that holds it: config, agents,
offers woken across replicas (sharded pub/sub), the contact lifecycle, SLA
steps fired by the timer workers, webhooks, the event stream and its SSE,
pools, the wallboard, staffing, metrics and the audit chain; rate limits count
in the cluster too. A primary that lost the routing code (flushed) gets it
again, and /readyz answers for every primary.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import uvloop
from aiohttp.test_utils import TestClient
from redis import Redis as SyncRedis

from router.api.app import create_app
from router.runtime.settings import Settings, demo_token_spec, token_hash
from router.store.keys import ACCESS_SHARDS, WsKeys, access_shard, access_stream
from tests.api.test_events import next_event, open_stream
from tests.support.client import ADM, GW, JWT_SECRET, SUP, agent_headers, small_config
from tests.support.cluster import ClusterGroup
from tests.support.failover_runs import check_nothing_acknowledged_lost, failover_under_load
from tests.support.procs import ROOT, _python
from tests.support.receiver import Receiver, new_secret

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

LADDER = [{"at": 0.5}, {"at": 1.0}]  # warning at half the target, breach at it
LIMITED = "gw-limited"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterGroup]:
    group = ClusterGroup(tmp_path_factory.mktemp("cluster"), masters=3, replicas_per_master=1)
    try:
        yield group
    finally:
        group.stop()


def _settings(url: str) -> Settings:
    spec = demo_token_spec() + f",{LIMITED}:gateway:{token_hash('limited-secret')}"
    return Settings.from_env(
        {
            "ROUTER_TOKENS": spec,
            "ROUTER_METRICS_GROUP": uuid.uuid4().hex,
            "ROUTER_JWT_SECRET": JWT_SECRET,
            "ROUTER_RATE_LIMIT_OVERRIDES": f"{LIMITED}=3/day",
            "ROUTER_REDIS_WAIT_REPLICAS": "1",  # each shard's own replica confirms
        },
        redis_url=url,
        timer_poll=0.01,
    )


@pytest.fixture
async def replicas(aiohttp_client: Any, cluster: ClusterGroup) -> AsyncIterator[list[TestClient]]:  # type: ignore[type-arg]
    # two replicas of the service, each with its own clients, subscriptions and workers
    yield [await aiohttp_client(create_app(_settings(cluster.url))) for _ in range(2)]


async def _call(
    api: TestClient, method: str, path: str, headers: dict[str, str], body: Any = None
) -> tuple[int, Any]:  # type: ignore[type-arg]
    r = await api.request(method, path, json=body, headers=headers)
    return r.status, await r.json(content_type=None)


async def _workspace_lifecycle(
    a: TestClient,  # type: ignore[type-arg]
    b: TestClient,  # type: ignore[type-arg]
    ws: str,
    receiver: Receiver,
) -> dict[str, Any]:
    base = f"/v1/workspaces/{ws}"
    cfg = small_config(sla="fast")
    cfg["sla_policies"] = {"fast": {"answer": {"target": 1.0, "ladder": LADDER}}}
    cfg["rules"] = [
        {"name": "loans", "when": {"intent": ["loan"]}, "stages": [{"pools": ["loans"]}]}
    ]
    cfg["webhooks"] = {
        "crm": {
            "url": receiver.url(f"/{ws}"),
            "events": ["contact.*", "sla.*"],
            "secret": new_secret(),
        }
    }
    status, stored = await _call(a, "PUT", base, ADM, cfg)
    assert status == 200, stored
    status, agent = await _call(a, "PUT", f"{base}/agents/a1", SUP, {"skills": {"cards": 5}})
    assert status == 200, agent
    status, _ = await _call(
        b, "POST", f"{base}/agents/a1/state", agent_headers("a1"), {"state": "available"}
    )
    assert status == 200
    sse = await open_stream(b, ws)
    # the desktop long-polls replica b; the contact arrives through replica a, and
    # the offer wakes b through the workspace's sharded channel
    poll = asyncio.create_task(
        _call(b, "GET", f"{base}/agents/a1/offers?wait=10", agent_headers("a1"))
    )
    await asyncio.sleep(0.3)
    contact = {"id": "c1", "channel": "voice", "customer": {"id": "cu-1"}}
    status, created = await _call(a, "POST", f"{base}/contacts", GW, contact)
    assert status == 201 and created["state"] == "offered", created
    status, offers = await asyncio.wait_for(poll, 5)
    assert status == 200 and [o["id"] for o in offers["offers"]] == ["c1"], offers
    first = msgspec.json.decode((await next_event(sse))["data"])
    assert first["type"] == "contact.created" and first["subject"] == "c1"
    sse.close()
    for action in ("accept", "complete"):
        status, got = await _call(
            b, "POST", f"{base}/contacts/c1/{action}", agent_headers("a1"), {"agent_id": "a1"}
        )
        assert status == 200, got
    # a loan nobody serves: its SLA steps come due and are fired by a timer worker
    loan = {"id": "c2", "channel": "chat", "intent": "loan", "customer": {"id": "cu-2"}}
    status, _ = await _call(a, "POST", f"{base}/contacts", GW, loan)
    assert status == 201
    # due 0.5 s and 1 s after it arrived; on a loaded machine the timer worker
    # and each shard's replica (WAIT 1) may take longer to show them
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        await asyncio.sleep(0.2)
        status, view = await _call(a, "GET", f"{base}/contacts/c2", SUP)
        steps = [e["type"] for e in view["timeline"] if e["type"].startswith("sla.")]
        if len(steps) >= 2 or asyncio.get_running_loop().time() > deadline:
            break
    assert steps == ["sla.warning", "sla.breached"], view["timeline"]
    status, page = await _call(b, "GET", f"{base}/events?limit=100", SUP)
    types = [e["type"] for e in page["events"]]
    assert {"config.updated", "contact.created", "contact.completed", "sla.breached"} <= set(types)
    status, pools = await _call(b, "GET", f"{base}/pools", SUP)
    assert status == 200 and {p["id"] for p in pools["pools"]} == {"cards", "loans"}, pools
    status, staffing = await _call(a, "GET", f"{base}/pools/cards/staffing", SUP)
    assert status == 200, staffing
    r = await b.get(f"{base}/wallboard/stream", headers=SUP)
    assert r.status == 200
    frame = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
    assert frame.startswith(b"event: tiles\ndata: ")
    r.close()
    return {"events": types}


async def test_every_feature_on_a_workspace_per_shard(
    cluster: ClusterGroup,
    replicas: list[TestClient],  # type: ignore[type-arg]
) -> None:
    a, b = replicas
    names = cluster.names_on_each_primary("cl" + uuid.uuid4().hex[:6])
    ports = [cluster.primary_for(WsKeys(n).tag) for n in names]
    assert len(set(ports)) == 3, ports  # one workspace per shard
    status, ready = await _call(a, "GET", "/readyz", {})
    assert status == 200 and ready["primaries"] == 3, ready
    receiver = Receiver()
    await receiver.start()
    try:
        await asyncio.gather(*(_workspace_lifecycle(a, b, ws, receiver) for ws in names))
        # webhooks: every workspace's events reach its receiver path, signed
        for _ in range(75):  # up to 15 s
            if all(receiver.ok_ids(f"/{ws}") for ws in names):
                break
            await asyncio.sleep(0.2)
        assert all(receiver.ok_ids(f"/{ws}") for ws in names), [c[0] for c in receiver.calls]
    finally:
        await receiver.stop()
    for ws, port in zip(names, ports, strict=True):
        # the workspace's keys live on its shard's primary, none elsewhere
        with SyncRedis(port=port, decode_responses=True) as node:
            assert node.exists(WsKeys(ws).config) == 1
    # the metrics export reads every workspace on its own shard
    r = await a.get("/metrics")
    text = await r.text()
    for ws in names:
        assert f'router_timers_pending{{workspace="{ws}"}}' in text
    # a denied request goes to the access stream of the client's address; the
    # eight access streams are spread over the shards
    bogus = {"Authorization": "Bearer not-a-token"}
    assert (await _call(a, "GET", f"/v1/workspaces/{names[0]}/pools", bogus))[0] == 401
    assert len({cluster.primary_for(access_stream(i)) for i in range(ACCESS_SHARDS)}) >= 2
    # the audit chain of each workspace, and of the denials, verifies from the cluster
    env = {"REDIS_URL": cluster.url, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    await asyncio.sleep(2)  # the sealer's round
    for source in [f"ws:{ws}" for ws in names] + [f"access-{access_shard('127.0.0.1')}"]:
        out = await asyncio.to_thread(
            subprocess.run,
            [_python(), "-m", "router", "audit", "verify", "--source", source],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert "OK" in out.stdout, out.stdout


async def test_rate_limits_count_across_replicas_in_the_cluster(
    cluster: ClusterGroup,
    replicas: list[TestClient],  # type: ignore[type-arg]
) -> None:
    a, b = replicas
    ws = "rl" + uuid.uuid4().hex[:6]
    assert (await _call(a, "PUT", f"/v1/workspaces/{ws}", ADM, small_config()))[0] == 200
    limited = {"Authorization": "Bearer limited-secret"}
    statuses = []
    for i, api in enumerate([a, b, a, b, a]):
        body = {"id": f"r{i}", "channel": "voice", "customer": {"id": f"cu-{i}"}}
        statuses.append(
            (await _call(api, "POST", f"/v1/workspaces/{ws}/contacts", limited, body))[0]
        )
    assert statuses == [201, 201, 201, 429, 429], statuses


async def test_a_primary_that_lost_the_code_gets_it_again(
    cluster: ClusterGroup,
    replicas: list[TestClient],  # type: ignore[type-arg]
) -> None:
    a, _ = replicas
    ws = cluster.names_on_each_primary("fl" + uuid.uuid4().hex[:6])[1]
    assert (await _call(a, "PUT", f"/v1/workspaces/{ws}", ADM, small_config()))[0] == 200
    with SyncRedis(port=cluster.primary_for(WsKeys(ws).tag)) as node:
        node.function_flush()
        node.script_flush()
    body = {"id": "f1", "channel": "voice", "customer": {"id": "cu-f1"}}
    status, got = await _call(a, "POST", f"/v1/workspaces/{ws}/contacts", GW, body)
    assert status == 201, got
    # /readyz finds the scripts missing on that primary, loads them, then is ready
    status, ready = await _call(a, "GET", "/readyz", {})
    assert status == 200 or ready["status"] == "loading", ready
    status, ready = await _call(a, "GET", "/readyz", {})
    assert status == 200 and ready["primaries"] == 3, ready


@pytest.mark.timeout(300)
def test_a_shard_primary_killed_under_load_loses_nothing_acknowledged(
    tmp_path: Path, one_at_a_time: None
) -> None:
    """The workspace's primary is killed under load, the cluster promotes one of
    its two replicas, the old one comes back as a replica; two router processes,
    WAIT 1."""
    out = uvloop.run(failover_under_load(tmp_path, wait_replicas=1, cluster=True))
    check_nothing_acknowledged_lost(out)
