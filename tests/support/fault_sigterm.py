"""SIGTERM scenarios run against real processes (tests/faults/test_kill_restart_sleep.py checks the
outcomes): timer leases handed back by a terminated replica, requests in
flight drained."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from redis.asyncio import Redis

from router.store.keys import WsKeys
from tests.support.client import ADM, GW, agent_headers, small_config
from tests.support.fault_runs import now_ms, sla_config, until, ws_name
from tests.support.faults import (
    Client,
    RedisServer,
    Relay,
    add_agents,
    create_contact,
    slow_post,
    stop_all,
)
from tests.support.invariants import read_events
from tests.support.procs import Replica, wait_ready

# --- (c) SIGTERM: drain, and hand back the timer leases -------------------------------

LONG_LEASE = 60  # s: a timer left to its lease would fire a minute late
N_HELD = 40  # contacts whose warning comes due while the replica's link loses replies


async def leases_of(admin: Redis, ws: str, pid: int) -> list[str]:
    info = await admin.hgetall(WsKeys(ws).timer_lease_info)
    return [m for m, v in info.items() if f":{pid}:" in v.split("|")[0]]


async def hand_back_phase(
    server: RedisServer, admin: Redis, tmp: Path, http: aiohttp.ClientSession, others: list[Replica]
) -> dict[str, Any]:
    """Replica A, alone, claims SLA warnings whose replies its link loses: they are
    leased to A for a minute. B starts and cannot fire them. A gets SIGTERM while
    its link still loses replies; once the link is back A hands the leases back
    and B fires them at once."""
    relay = Relay(server.port)
    await relay.start()
    ws, out = ws_name(), {}
    # polling every 0.5 s, A's first claim of them takes most warnings at once
    env = {
        "ROUTER_TIMER_LEASE": str(LONG_LEASE),
        "ROUTER_REDIS_TIMEOUT": "0.5",
        "ROUTER_TIMER_POLL": "0.5",
    }
    a = Replica(relay.url, tmp, 10, env)
    others.append(a)
    try:
        await wait_ready([a])
        c = Client(http, [a.url], ws)
        assert (await c.call("PUT", "", ADM, sla_config(3, [{"at": 0.5}])))[0] == 200
        await asyncio.gather(*(create_contact(c, f"h{i}") for i in range(N_HELD)))
        # the warnings come due at 1.5 s: A's claim of them executes, its reply is lost
        relay.lose_from(b"sla|h")

        async def leased_to_a() -> bool:
            return bool(await leases_of(admin, ws, a.proc.pid))

        await until(leased_to_a, 10, "A leased warnings")
        await asyncio.sleep(1.5)  # A retries the lost claim: the same timers, no others
        held = {m.split("|")[1] for m in await leases_of(admin, ws, a.proc.pid)}
        out["held"], out["claimed_ms"] = held, now_ms()
        b = Replica(server.url, tmp, 11)
        others.append(b)
        await wait_ready([b])
        await asyncio.sleep(1.0)  # B fires the other warnings, not A's

        def warned(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [e for e in events if e["type"] == "sla.warning" and e["contact"] in held]

        out["warned_before"] = warned(await read_events(admin, WsKeys(ws).events))
        out["still_held"] = len(await leases_of(admin, ws, a.proc.pid))
        a.proc.send_signal(signal.SIGTERM)  # its link still loses every reply

        async def a_retries() -> bool:
            return "handing back timer leases failed" in a.log_tail(20_000)

        await until(a_retries, 15, "A tries to hand its leases back")
        relay.restore()
        out["restored_ms"] = now_ms()

        async def held_fired() -> bool:
            return len(warned(await read_events(admin, WsKeys(ws).events))) >= len(held)

        await until(held_fired, 15, "the handed-back warnings fired")
        out["exit"] = await asyncio.to_thread(a.proc.wait, 15)
        out["a_log"] = a.log_tail(20_000)
        out["events"] = await read_events(admin, WsKeys(ws).events)
        out["warned"] = warned(out["events"])
        out["leased"] = await admin.zcard(WsKeys(ws).timer_leases)
    finally:
        await relay.close()
    return out


async def drain_phase(
    server: RedisServer, admin: Redis, tmp: Path, http: aiohttp.ClientSession, others: list[Replica]
) -> dict[str, Any]:
    """Replica A2 with long-polls, a create whose body is still arriving and a
    stream of creates in flight gets SIGTERM."""
    ws, out = ws_name(), {}
    a = Replica(server.url, tmp, 12)
    others.append(a)
    await wait_ready([a])
    c = Client(http, [a.url], ws)
    assert (await c.call("PUT", "", ADM, small_config()))[0] == 200
    agents = [f"l{i}" for i in range(4)]
    await add_agents(c, agents, {"loans": 5})  # never offered the cards contacts below
    api = f"{a.url}/v1/workspaces/{ws}"

    async def long_poll(aid: str) -> tuple[int, Any, float]:
        async with http.get(
            f"{api}/agents/{aid}/offers?wait=20",
            headers=agent_headers(aid),
            timeout=aiohttp.ClientTimeout(total=30),
        ) as r:
            return r.status, await r.json(), time.monotonic()

    polls = [asyncio.create_task(long_poll(aid)) for aid in agents]
    sent, finish = asyncio.Event(), asyncio.Event()
    body = msgspec.json.encode({"id": "slow", "channel": "voice", "customer": {"id": "cu-s"}})
    slow = asyncio.create_task(
        slow_post(a.port, f"/v1/workspaces/{ws}/contacts", GW, body, sent, finish)
    )
    outcomes: list[tuple[str, str]] = []
    exited = asyncio.Event()

    async def creator(k: int) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as h:
            n = 0
            while not exited.is_set():
                n += 1
                cid = f"d{k}-{n}"
                try:
                    async with h.post(
                        f"{api}/contacts",
                        headers=GW,
                        json={"id": cid, "channel": "voice", "customer": {"id": "cu-" + cid}},
                    ) as r:
                        await r.read()
                        outcomes.append((cid, str(r.status)))
                except (aiohttp.ClientError, OSError) as exc:
                    outcomes.append((cid, type(exc).__name__))
                    await asyncio.sleep(0.02)

    creators = [asyncio.create_task(creator(k)) for k in range(4)]
    await sent.wait()
    await asyncio.sleep(0.5)  # long-polls waiting, creates flowing
    a.proc.send_signal(signal.SIGTERM)
    t_term = time.monotonic()
    await asyncio.sleep(0.3)
    try:
        socket.create_connection(("127.0.0.1", a.port), timeout=1).close()
        out["new_connection"] = "accepted"
    except ConnectionRefusedError:
        out["new_connection"] = "refused"
    out["alive_while_draining"] = a.proc.poll() is None  # the slow create holds it open
    await asyncio.sleep(0.7)
    finish.set()
    out["slow"] = await slow
    out["polls"] = [(st, data, t - t_term) for st, data, t in await asyncio.gather(*polls)]
    out["exit"] = await asyncio.to_thread(a.proc.wait, 15)
    out["exit_s"] = time.monotonic() - t_term
    exited.set()
    await asyncio.gather(*creators)
    exists = [await admin.exists(WsKeys(ws).contact(cid)) for cid, _ in outcomes]
    out["outcomes"] = [(cid, how, bool(e)) for (cid, how), e in zip(outcomes, exists, strict=True)]
    out["slow_exists"] = bool(await admin.exists(WsKeys(ws).contact("slow")))
    return out


async def sigterm(tmp: Path) -> dict[str, Any]:
    server = RedisServer(tmp / "redis")
    admin = Redis.from_url(server.url, decode_responses=True)
    replicas: list[Replica] = []
    try:
        async with aiohttp.ClientSession() as http:
            handed = await hand_back_phase(server, admin, tmp, http, replicas)
            drained = await drain_phase(server, admin, tmp, http, replicas)
    finally:
        stop_all(replicas)
        await admin.aclose()
        server.stop()
    return {"handed": handed, "drained": drained}
