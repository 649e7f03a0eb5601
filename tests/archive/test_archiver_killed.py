"""An archiving replica SIGKILLed while it holds a batch it read and has not
acknowledged: another replica takes the batch over, and the archive ends up
with every event exactly once and a row for every finished contact.

Real processes: redis-server, PostgreSQL and two `router serve` replicas."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from psycopg import AsyncConnection
from redis.asyncio import Redis

from router.store.keys import ARCHIVE_GROUP, WsKeys
from tests.support.client import ADM, GW, agent_headers, small_config
from tests.support.postgres import PostgresServer
from tests.support.procs import Replica, start_replicas, stop_replicas, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def _lifecycles(http: aiohttp.ClientSession, base: str, ws: str, n: int, tag: str) -> None:
    """n contacts created, accepted and completed by agent a1, one after another."""
    for i in range(n):
        cid = f"{tag}{i}"
        body = {"id": cid, "channel": "chat", "customer": {"id": "cu-" + cid}}
        async with http.post(f"{base}/contacts", json=body, headers=GW) as r:
            assert r.status == 201, await r.text()
        for action in ("accept", "complete"):
            async with http.post(
                f"{base}/contacts/{cid}/{action}", json={"agent_id": "a1"},
                headers=agent_headers("a1"),
            ) as r:  # fmt: skip
                assert r.status == 200, await r.text()


async def _caught_holding(client: Redis, ws: str, victim: Replica) -> bool:
    """Freezes the replica; True (left frozen) when it holds unacknowledged
    entries of the archive group, else it runs on and False."""
    os.kill(victim.proc.pid, signal.SIGSTOP)
    pending = await client.xpending(WsKeys(ws).events, ARCHIVE_GROUP)
    mine = [c for c in pending.get("consumers") or [] if f":{victim.proc.pid}:" in c["name"]]
    if mine and int(mine[0]["pending"]) > 0:
        return True
    os.kill(victim.proc.pid, signal.SIGCONT)
    return False


async def test_a_replica_killed_mid_batch_loses_and_doubles_nothing(
    redis_url: str, server: PostgresServer, ws: str
) -> None:
    env = {"ROUTER_ARCHIVE_URL": server.url, "ROUTER_ARCHIVE_CLAIM_IDLE": "1",
           "ROUTER_RATE_LIMITS": "off", "ROUTER_LOG_LEVEL": "WARNING"}  # fmt: skip
    replicas = start_replicas(redis_url, Path(tempfile.mkdtemp(prefix="killed-")), 2, env)
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        await wait_ready(replicas)
        victim, survivor = replicas
        base = f"{survivor.url}/v1/workspaces/{ws}"
        async with aiohttp.ClientSession() as http:
            async with http.put(f"{survivor.url}/v1/workspaces/{ws}", json=small_config(),
                                headers=ADM) as r:  # fmt: skip
                assert r.status == 200, await r.text()
            async with http.put(f"{base}/agents/a1", json={"skills": {"cards": 5},
                                "capacity": 100}, headers=ADM) as r:  # fmt: skip
                assert r.status == 200, await r.text()
            async with http.post(f"{base}/agents/a1/state", json={"state": "available"},
                                 headers=agent_headers("a1")) as r:  # fmt: skip
                assert r.status == 200, await r.text()
            for _ in range(200):  # both replicas' archivers are at work on the workspace
                if await client.hget(WsKeys(ws).runtime, "arch"):
                    break
                await asyncio.sleep(0.1)
            caught, done = False, 0
            for attempt in range(3):  # on a loaded machine a round can end before a catch
                load = asyncio.create_task(_lifecycles(http, base, ws, 400, f"c{attempt}-"))
                while not caught and not load.done():
                    caught = await _caught_holding(client, ws, victim)
                    await asyncio.sleep(0.003)
                if caught:
                    break
                await load
                done += 400
            assert caught, "the victim was never caught holding a batch"
            victim.proc.send_signal(signal.SIGKILL)  # mid-batch: read, not acknowledged
            victim.proc.wait(10)
            await load
            done += 400
            await _lifecycles(http, base, ws, 50, "after")
            done += 50
        keys = WsKeys(ws)

        async def settled() -> bool:
            pending = await client.xpending(keys.events, ARCHIVE_GROUP)
            stream = sorted(sid for sid, _ in await client.xrange(keys.events))
            return pending["pending"] == 0 and sorted(await _archived(server.url, ws)) == stream

        for _ in range(300):
            if await settled():
                break
            await asyncio.sleep(0.1)
        stream = sorted(sid for sid, _ in await client.xrange(keys.events))
        archived = await _archived(server.url, ws)
        assert len(archived) == len(set(archived))  # none doubled
        assert sorted(archived) == stream  # none lost
        async with await AsyncConnection.connect(server.url) as conn:
            cur = await conn.execute(
                "SELECT count(*), count(DISTINCT id) FROM contacts WHERE ws = %s"
                " AND outcome = 'completed'",
                (ws,),
            )
            assert await cur.fetchone() == (done, done)
    finally:
        await client.aclose()
        for r in replicas:
            if r.proc.poll() is None:
                os.kill(r.proc.pid, signal.SIGCONT)
        stop_replicas(replicas)


async def _archived(url: str, ws: str) -> list[Any]:
    async with await AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT id FROM events WHERE ws = %s AND type <> 'archive.gap' ORDER BY at, id", (ws,)
        )
        return [r[0] for r in await cur.fetchall()]
