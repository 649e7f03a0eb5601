"""Fault scenarios run against real processes (tests/faults/test_kill_restart_sleep.py checks the
outcomes): Redis put to sleep, Redis restarted from its AOF during load, a
replica killed every 10 s during a two-minute load."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from router.store.keys import WsKeys
from tests.support.client import ADM, GW, SUP, small_config
from tests.support.faults import (
    ENDED,
    Client,
    Desk,
    RedisServer,
    add_agents,
    create_contact,
    kill,
    restart,
    stop_all,
)
from tests.support.invariants import check_redis_left_nothing, read_events
from tests.support.procs import Replica, start_replicas, wait_ready


def ws_name() -> str:
    return "f" + uuid.uuid4().hex[:10]


def sla_config(target: float, ladder: list[dict[str, Any]]) -> dict[str, Any]:
    cfg = small_config()
    cfg["sla_policies"] = {"fast": {"answer": {"target": target, "ladder": ladder}}}
    cfg["defaults"]["sla"] = "fast"
    return cfg


def now_ms() -> int:
    return int(time.time() * 1000)  # the clock Redis TIME reads on this machine


async def probe(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> dict[str, Any]:
    """One request without retries: status, headers that matter, seconds taken."""
    t0 = time.monotonic()
    try:
        async with http.request(
            method,
            url,
            json=body,
            headers=GW if method == "POST" else SUP,
            timeout=aiohttp.ClientTimeout(total=10),
        ) as r:
            await r.read()
            return {
                "status": r.status,
                "type": r.content_type,
                "retry_after": r.headers.get("Retry-After"),
                "s": time.monotonic() - t0,
            }
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return {"status": type(exc).__name__, "s": time.monotonic() - t0}


def assert_unavailable(results: list[dict[str, Any]], within: float) -> None:
    """503 problem+json with Retry-After, answered within `within` seconds."""
    for r in results:
        assert r["status"] == 503, r
        assert r["type"] == "application/problem+json" and r["retry_after"], r
        assert r["s"] < within, r


async def until(cond: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await cond():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.05)


# --- (d) a slow Redis ---------------------------------------------------------------


async def slow_redis(tmp: Path) -> dict[str, Any]:
    server = RedisServer(tmp / "redis")
    replicas: list[Replica] = []
    admin = Redis.from_url(server.url, decode_responses=True)
    out: dict[str, Any] = {}
    ws = ws_name()
    try:
        replicas = start_replicas(server.url, tmp, 1, {"ROUTER_REDIS_TIMEOUT": "0.5"})
        await wait_ready(replicas)
        base = replicas[0].url
        async with aiohttp.ClientSession() as http:
            c = Client(http, [base], ws)
            assert (await c.call("PUT", "", ADM, sla_config(30, [])))[0] == 200
            await add_agents(c, ["a1"], {"cards": 5})
            before = [await create_contact(c, f"b{i}") for i in range(5)]

            health: list[tuple[int, float]] = []

            async def watch_health(until: asyncio.Task[Any]) -> None:
                while not until.done():
                    t0 = time.monotonic()
                    async with http.get(base + "/healthz") as r:
                        health.append((r.status, time.monotonic() - t0))
                    await asyncio.sleep(0.1)

            sleeper = asyncio.create_task(admin.execute_command("DEBUG", "SLEEP", 3))
            await asyncio.sleep(0.3)  # Redis is asleep now
            watcher = asyncio.create_task(watch_health(sleeper))
            api = f"{base}/v1/workspaces/{ws}"
            out["during"] = await asyncio.gather(
                *(
                    probe(
                        http,
                        "POST",
                        api + "/contacts",
                        {"id": f"s{i}", "channel": "voice", "customer": {"id": f"cu-s{i}"}},
                    )
                    for i in range(8)
                ),
                probe(http, "GET", api + "/contacts/b0"),
                probe(http, "GET", api + "/pools"),
                probe(http, "GET", api + "/agents/a1"),
            )
            # the first requests also waited for the rate-limit check's own timeout;
            # after that failure the check is skipped for a while, so these do not
            out["later"] = await asyncio.gather(
                *(probe(http, "GET", api + "/contacts/b1") for _ in range(4))
            )
            out["ready_during"] = await probe(http, "GET", base + "/readyz")
            await sleeper
            await watcher
            out["health"] = health
            # afterwards: the gateway retries what it got 503 for; nothing was lost
            out["after"] = [await create_contact(c, f"s{i}") for i in range(8)]
            views = [await c.call("GET", f"/contacts/{b['id']}", SUP) for b in before]
            out["before_states"] = [(s, v["state"]) for s, v in views]
            out["ready_after"] = await probe(http, "GET", base + "/readyz")
        events = await read_events(admin, WsKeys(ws).events)
        out["created"] = Counter(e["contact"] for e in events if e["type"] == "contact.created")
        assert replicas[0].proc.poll() is None, replicas[0].log_tail()
    finally:
        stop_all(replicas)
        await admin.aclose()
        server.stop()
    return out


# --- (b) Redis restarted from its AOF -------------------------------------------------

OUTAGE = 4.0  # seconds Redis is down
WARN_MS, BREACH_MS = 1500, 3000  # the answer ladder: both come due during the outage


async def redis_restart(tmp: Path) -> dict[str, Any]:
    server = RedisServer(tmp / "redis", aof=True)
    replicas: list[Replica] = []
    admin = Redis.from_url(server.url, decode_responses=True)
    ws, out = ws_name(), {}
    try:
        replicas = start_replicas(server.url, tmp, 2, {"ROUTER_REDIS_TIMEOUT": "1"})
        await wait_ready(replicas)
        urls = [r.url for r in replicas]
        async with aiohttp.ClientSession() as http:
            c = Client(http, urls, ws)
            cfg = sla_config(BREACH_MS / 1000, [{"at": WARN_MS / BREACH_MS}])
            assert (await c.call("PUT", "", ADM, cfg))[0] == 200
            agents = [f"a{i}" for i in range(3)]
            await add_agents(c, agents, {"cards": 5})
            stop, acked = asyncio.Event(), {}

            async def gateway() -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    acked[f"r{n:04d}"] = await create_contact(c, f"r{n:04d}")
                    await asyncio.sleep(0.1)

            desks = [Desk(c, a, lambda: 0.4) for a in agents]
            load = [asyncio.create_task(gateway())]
            load += [asyncio.create_task(d.run(stop)) for d in desks]
            await asyncio.sleep(3)
            await asyncio.to_thread(server.shutdown)
            out["down_ms"], out["acked_before"] = now_ms(), set(acked)
            api = [f"{u}/v1/workspaces/{ws}" for u in urls]
            body = {"id": "p1", "channel": "voice", "customer": {"id": "cu-p1"}}
            down: list[dict[str, Any]] = []
            health: list[dict[str, Any]] = []
            while now_ms() - out["down_ms"] < OUTAGE * 1000:
                for u, a in zip(urls, api, strict=True):
                    down += await asyncio.gather(
                        probe(http, "POST", a + "/contacts", body),
                        probe(http, "GET", a + "/contacts/r0001"),
                        probe(http, "GET", a + "/pools"),
                    )
                    health += [
                        await probe(http, "GET", u + "/healthz"),
                        await probe(http, "GET", u + "/readyz"),
                    ]
                await asyncio.sleep(0.3)
            out["down"], out["health"] = down, health
            await asyncio.to_thread(server.start)  # same port, same directory: the AOF
            out["up_ms"] = now_ms()
            await wait_ready(replicas, within=20)  # by themselves: nobody restarts them
            out["ready_s"] = (now_ms() - out["up_ms"]) / 1000
            await asyncio.sleep(3)  # load goes on after the outage
            stop.set()
            await asyncio.gather(*load)
            out["stats"] = dict(c.stats)
            # end what is still queued, so the replay has every contact end
            for cid in acked:
                status, data = await c.call(
                    "POST", f"/contacts/{cid}/abandon", GW, {"reason": "test over"}
                )
                assert status == 200 or (status == 409 and data["state"] in ENDED), data
            await asyncio.sleep(0.5)
            metrics = [await (await http.get(u + "/metrics")).text() for u in urls]
            out["late_metric"] = sum(
                float(line.split()[-1])
                for m in metrics
                for line in m.splitlines()
                if line.startswith("router_timers_late_total")
            )
        out["events"] = await read_events(admin, WsKeys(ws).events)
        out["acked"] = set(acked)
        for r in replicas:
            assert r.proc.poll() is None, r.log_tail()
    finally:
        stop_all(replicas)
        await admin.aclose()
        server.stop()
    return out


# --- (a) a replica killed every 10 s --------------------------------------------------

LOAD_S = 120.0  # seconds of load
KILL_EVERY = 10.0
N_AGENTS = 12
# Arrivals: bursts above what the agents handle, then lulls that drain the queue,
# so waits cross the SLA ladder's steps (warning 1 s, breach 2.5 s, escalation 4 s).
BURST, LULL = 24.0, 4.0  # contacts per second, 5 s each
KILL_LADDER = [
    {"at": 0.4, "actions": [{"do": "notify", "to": ["role:duty_manager"]}]},
    {"at": 1.0},
    {"after": 1.5, "actions": [{"do": "notify", "to": ["role:head"]}]},
]
KILL_STEPS = {0: 1000, 1: 2500, 2: 4000}


def kill_config() -> dict[str, Any]:
    cfg = sla_config(2.5, KILL_LADDER)
    cfg["channels"] = {
        "voice": {"weight": 100, "offer_timeout": 15, "wrap_up": 0},
        "chat": {"weight": 25, "offer_timeout": 15, "wrap_up": 0},
    }
    return cfg


async def kill_load(tmp: Path) -> dict[str, Any]:
    server = RedisServer(tmp / "redis")
    admin = Redis.from_url(server.url, decode_responses=True)
    replicas: list[Replica] = []
    ws, out = ws_name(), {}
    keys = WsKeys(ws)
    rng = random.Random(6)
    try:
        replicas = start_replicas(server.url, tmp, 3)
        await wait_ready(replicas)
        conn = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(connector=conn) as http:
            c = Client(http, [r.url for r in replicas], ws)
            assert (await c.call("PUT", "", ADM, kill_config()))[0] == 200
            agents = [f"k{i:02d}" for i in range(N_AGENTS)]
            await add_agents(c, agents, {"cards": 5})
            stop_desks = asyncio.Event()
            desks = [Desk(c, a, lambda: rng.uniform(0.5, 1.5)) for a in agents]
            desk_tasks = [asyncio.create_task(d.run(stop_desks)) for d in desks]
            acked: set[str] = set()
            pending: set[asyncio.Task[None]] = set()

            async def customer(cid: str, channel: str, patience: float | None) -> None:
                await create_contact(c, cid, channel)
                acked.add(cid)
                if patience is not None:  # the customer hangs up if still waiting
                    await asyncio.sleep(patience)
                    status, data = await c.call(
                        "POST", f"/contacts/{cid}/abandon", GW, {"reason": "hung up"}
                    )
                    assert status == 200 or (status == 409 and data["state"] in ENDED), data
                    c.stats["abandon" if status == 200 else "abandon_too_late"] += 1

            async def gateway() -> None:
                t0, n = time.monotonic(), 0
                while (elapsed := time.monotonic() - t0) < LOAD_S:
                    n += 1
                    patience = rng.uniform(2, 8) if rng.random() < 0.05 else None
                    channel = "voice" if rng.random() < 0.7 else "chat"
                    task = asyncio.create_task(customer(f"x{n:05d}", channel, patience))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    rate = BURST if elapsed % 10 < 5 else LULL
                    await asyncio.sleep(rng.expovariate(rate))

            async def killer() -> None:
                k = 0
                while True:
                    await asyncio.sleep(KILL_EVERY)
                    r = replicas[k % len(replicas)]
                    await asyncio.to_thread(kill, r)
                    restart(r)
                    k += 1
                    out["kills"] = k

            t0 = time.monotonic()
            killing = asyncio.create_task(killer())
            await gateway()
            killing.cancel()
            await asyncio.gather(killing, return_exceptions=True)
            await asyncio.gather(*pending)
            out["load_s"] = time.monotonic() - t0

            async def all_ended() -> bool:
                ev = await read_events(admin, keys.events)
                ended = {
                    e["contact"]
                    for e in ev
                    if e["type"] in ("contact.completed", "contact.abandoned", "contact.expired")
                }
                return acked <= ended

            await until(all_ended, 90, "every contact ended")
            stop_desks.set()
            await asyncio.gather(*desk_tasks)
            out["stats"] = dict(c.stats)
            lat = sorted(c.latencies)
            out["latency"] = (lat[len(lat) // 2], lat[int(len(lat) * 0.99)], lat[-1])

            async def timers_settled() -> bool:  # leases of killed replicas ran out
                due = await admin.zrangebyscore(keys.timers, "-inf", now_ms())
                return not await admin.zcard(keys.timer_leases) and not [
                    m for m in due if m.startswith("sla|")
                ]

            await until(timers_settled, 30, "timers settled")
            await wait_ready(replicas)
        out["events"] = await read_events(admin, keys.events)
        timed_out = {e["agent"] for e in out["events"] if e["type"] == "contact.offer_timeout"}
        out["leftovers"] = await check_redis_left_nothing(admin, ws, agents, timed_out)
        out["acked"] = acked
    finally:
        stop_all(replicas)
        await admin.aclose()
        server.stop()
    return out
