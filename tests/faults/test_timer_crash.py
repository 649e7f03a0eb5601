"""Crash safety of SLA timers and webhooks: three router processes fire 100,000
timers while one of them is killed with SIGKILL; afterwards every timer fired
exactly once (counted in the event stream) and every SLA event reached a
webhook receiver (counted by webhook-id there).

25,000 contacts queue with no agent; each has an answer clock with warnings at
1/4, 1/2 and 3/4 of a 20 s target and the breach: 4 timers each. Replica 0 is
killed when half the SLA events have reached the receiver: its leased timers
are fired again by the others when their leases run out (the fire script's
per-step marker keeps that from doubling an effect), and the stream entries it
read but had not delivered are taken over by another replica's dispatcher.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import uvloop
from redis.asyncio import Redis

from tests.support.client import ADM, GW, small_config
from tests.support.procs import Replica, start_replicas, stop_replicas, wait_ready
from tests.support.receiver import Receiver, new_secret

N_CONTACTS = int(os.environ.get("ROUTER_CRASH_CONTACTS", "25000"))
STEPS = 4  # warnings at 0.25, 0.5, 0.75 and the breach
N_TIMERS = N_CONTACTS * STEPS
TARGET = 20.0
CONCURRENCY = 64  # creates in flight; also each dispatcher's delivery concurrency
TIMEOUT = 420


def crash_config(hook_url: str) -> dict[str, Any]:
    cfg = small_config()
    ladder = [
        {"at": f, "actions": [{"do": "notify", "to": ["role:duty_manager"]}]}
        for f in (0.25, 0.5, 0.75)
    ]
    cfg["sla_policies"] = {"crash": {"answer": {"target": TARGET, "ladder": ladder}}}
    cfg["defaults"]["sla"] = "crash"
    cfg["webhooks"] = {"crm": {"url": hook_url, "events": ["sla.*"], "secret": new_secret()}}
    return cfg


async def create_all(http: aiohttp.ClientSession, replicas: list[Replica], ws: str) -> int:
    """Creates every contact, retrying on another replica when one is gone."""
    sem = asyncio.Semaphore(CONCURRENCY)
    retries = 0

    async def one(i: int) -> None:
        nonlocal retries
        body = {"id": f"k{i}", "channel": "voice", "customer": {"id": f"cu{i}"}}
        async with sem:
            for attempt in range(20):
                r = replicas[(i + attempt) % len(replicas)]
                try:
                    async with http.post(
                        f"{r.url}/v1/workspaces/{ws}/contacts", json=body, headers=GW
                    ) as resp:
                        if resp.status in (200, 201):
                            return
                        assert resp.status == 503, await resp.text()
                except (aiohttp.ClientError, TimeoutError):
                    pass
                retries += 1
                await asyncio.sleep(0.05)
            raise AssertionError(f"contact k{i} could not be created")

    await asyncio.gather(*(one(i) for i in range(N_CONTACTS)))
    return retries


async def read_sla_events(client: Redis, key: str) -> list[tuple[str, dict[str, Any]]]:
    out, last, dec = [], "-", msgspec.json.Decoder()
    while True:
        rows = await client.xrange(key, last, "+", count=20_000)
        rows = rows[1:] if last != "-" else rows
        if not rows:
            return out
        for sid, fields in rows:
            e = dec.decode(fields["e"])
            if e["type"].startswith("sla."):
                out.append((sid, e))
        last = rows[-1][0]


async def scenario(redis_url: str, ws: str, log_dir: Path) -> dict[str, Any]:
    receiver = Receiver()
    await receiver.start()
    env = {"ROUTER_WEBHOOK_CLAIM_IDLE": "3", "ROUTER_REDIS_TIMEOUT": "10"}
    replicas = start_replicas(redis_url, log_dir, 3, env)
    client = Redis.from_url(redis_url, decode_responses=True)
    out: dict[str, Any] = {}
    try:
        await wait_ready(replicas)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.put(
                f"{replicas[0].url}/v1/workspaces/{ws}",
                json=crash_config(receiver.url()),
                headers=ADM,
            ) as resp:
                assert resp.status == 200, await resp.text()
            await asyncio.sleep(1.2)  # every replica's config cache has the webhook
            t0 = time.monotonic()
            creating = asyncio.create_task(create_all(http, replicas, ws))
            while len(receiver.ok_ids()) < N_TIMERS // 2:
                assert time.monotonic() - t0 < TIMEOUT / 2, "SLA events are not arriving"
                await asyncio.sleep(0.1)
            replicas[0].proc.send_signal(signal.SIGKILL)
            out["killed_at"] = (time.monotonic() - t0, len(receiver.ok_ids()))
            out["create_retries"] = await creating
            while len(receiver.ok_ids()) < N_TIMERS:
                if time.monotonic() - t0 > TIMEOUT - 60:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(2)  # anything delivered twice would show up now
            out["seconds"] = time.monotonic() - t0
        for r in replicas[1:]:
            assert r.proc.poll() is None, f"replica {r.port} died:\n{r.log_tail()}"
        out["events"] = await read_sla_events(client, "{ws:" + ws + "}:events")
        out["ok"] = receiver.ok_ids()
        tag = "{ws:" + ws + "}"
        out["leftover_timers"] = [
            t for t in await client.zrange(tag + ":timers", 0, -1) if t.startswith("sla|")
        ]
        out["leased"] = await client.zcard(tag + ":timers:leased")
        out["retry"] = await client.zcard(tag + ":wh:retry")
        out["dead"] = await client.llen(tag + ":wh:dead")
    finally:
        await client.aclose()
        stop_replicas(replicas)
        await receiver.stop()
    return out


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT)
def test_timers_and_webhooks_survive_a_killed_replica(
    redis_url: str, ws: str, tmp_path: Path, one_at_a_time: None
) -> None:
    out = uvloop.run(scenario(redis_url, ws, tmp_path))
    events, ok = out["events"], out["ok"]
    per_step = Counter((e["contact"], e["clock"], e["step"]) for _, e in events)
    twice = Counter(ok.values())
    print(
        f"\n{N_TIMERS:,} timers, 3 replicas, replica 0 killed after "
        f"{out['killed_at'][0]:.1f} s with {out['killed_at'][1]:,} delivered; "
        f"{len(events):,} SLA events, {len(ok):,} webhook ids answered 2xx "
        f"({sum(ok.values()):,} answers, by count {dict(twice)}); "
        f"{out['create_retries']} create retries; {out['seconds']:.1f} s"
    )
    # every timer fired exactly once
    assert len(per_step) == N_TIMERS and set(per_step.values()) == {1}
    assert Counter(e["type"] for _, e in events) == {
        "sla.warning": 3 * N_CONTACTS,
        "sla.breached": N_CONTACTS,
    }
    assert not out["leftover_timers"] and out["leased"] == 0
    # every SLA event reached the receiver; a webhook-id twice only for the
    # deliveries the killed replica had in flight (at most its concurrency)
    assert set(ok) == {f"{sid}.crm" for sid, _ in events}
    assert sum(n - 1 for n in ok.values()) <= CONCURRENCY
    assert out["retry"] == 0 and out["dead"] == 0
