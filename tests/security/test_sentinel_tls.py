"""Redis Sentinel with TLS and ACL users, as README.md documents it, with real processes:
a `rediss+sentinel://` URL carrying the data nodes' ACL user in its userinfo, the
sentinels' own user in `sentinel_username` / `sentinel_password`, and the CA in
`ssl_ca_certs` (for both). The group (tests/support/tls_sentinel.py) has no
plaintext port and no default user on any node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis import Redis as SyncRedis

from tests.support.client import GW, agent_headers, ready_agent
from tests.support.procs import start_replicas, stop_replicas, wait_ready
from tests.support.tls_sentinel import SENTINEL_PASSWORD, TlsSentinelGroup
from tests.support.tlscerts import ROUTER_PASSWORD


@pytest.fixture
def group(tmp_path: Path) -> Iterator[TlsSentinelGroup]:
    g = TlsSentinelGroup(tmp_path / "redis")
    try:
        yield g
    finally:
        g.stop()


def _acl_log(client: SyncRedis) -> list[dict[str, Any]]:
    with client:
        entries: list[dict[str, Any]] = client.acl_log()
        return entries


async def _create(http: aiohttp.ClientSession, ws: str, cid: str, within: float = 20.0) -> Any:
    """POST a contact; 503 (Redis unreachable, or a demoted primary met) is retried,
    as a channel gateway would, for up to `within` seconds."""
    deadline = time.monotonic() + within
    body = {"id": cid, "channel": "voice", "customer": {"id": "cu-" + cid}}
    while True:
        async with http.post(f"/v1/workspaces/{ws}/contacts", headers=GW, json=body) as r:
            text = await r.text()
            if r.status != 503 or time.monotonic() > deadline:
                assert r.status == 201, text
                return await r.json()
        await asyncio.sleep(0.2)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.usefixtures("one_at_a_time")
async def test_rediss_sentinel_with_acl_users(
    group: TlsSentinelGroup, tmp_path: Path, ws: str
) -> None:
    """A router on the README's URL routes a contact, nothing it does is denied by
    either ACL, it follows a failover, and neither password is in its log."""
    assert group.sentinels is not None
    sentinel_ports = group.sentinels.ports
    url = group.url()
    [replica] = start_replicas(url, tmp_path, 1, {"ROUTER_LOG_LEVEL": "DEBUG"})
    try:
        await wait_ready([replica])
        async with aiohttp.ClientSession(base_url=replica.url) as http:
            base = f"/v1/workspaces/{ws}"
            await ready_agent(http, ws)
            assert (await _create(http, ws, "c1", within=0))["agent"] == "a1"
            async with http.post(
                f"{base}/contacts/c1/accept", json={"agent_id": "a1"}, headers=agent_headers("a1")
            ) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["state"] == "assigned"
            await asyncio.sleep(1.5)  # background loops (timers, exporter, webhooks) run too

            # The writes went to the primary the sentinels name, as the router user,
            # and nothing the router did was denied by the data nodes' ACL ...
            assert group.sentinels.primary_port() == group.primary.port
            with group.primary.client() as ops:
                assert ops.exists(f"{{ws:{ws}}}:config") == 1
                mine = str(ops.client_id())  # this check's own connection is ops's
                users = {c["user"] for c in ops.client_list() if c["id"] != mine}
            assert "router" in users, users
            denied = _acl_log(group.primary.client())
            assert denied == [], denied
            # ... nor by the sentinels' (their default user is off: the router got
            # the primary's address as sentinel-client, or not at all).
            for port in sentinel_ports:
                denied = _acl_log(group.sentinels.client(port))
                assert denied == [], (port, denied)

            # The primary dies; the sentinels promote the replica (over TLS, as ops)
            # and the same router, asking them again, writes there.
            old = group.primary.port
            group.primary.kill()
            new = group.wait_failover(old)
            assert new == group.replica.port
            assert (await _create(http, ws, "c2"))["id"] == "c2"
        with group.replica.client() as ops:  # the promoted replica has both contacts
            assert ops.exists(f"{{ws:{ws}}}:c:c1", f"{{ws:{ws}}}:c:c2") == 2
        denied = _acl_log(group.replica.client())
        assert denied == [], denied
    finally:
        stop_replicas([replica])
    # Neither password reaches the router's log, at DEBUG.
    log = replica.log_path.read_text(errors="replace")
    assert "DEBUG" in log
    assert ROUTER_PASSWORD not in log
    assert SENTINEL_PASSWORD not in log
