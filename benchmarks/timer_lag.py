"""Timer lag: SLA timers firing from a store of 1,000,000 pending timers.

Starts a private redis-server and `python -m router serve` replicas, writes a
workspace whose policy has a warning step, then:

- phase A (steady): `--pending` timers in the store, of which `--rate` per
  second come due for `--duration` seconds (the rest are due tomorrow); each
  due one is a real SLA warning of a real queued contact (the fire script loads
  the contact and its clock, marks the step, appends the event);
- phase B (backlog): `--backlog` timers all due at one instant, as after an
  outage: how fast the replicas drain them (timers per second per process).

Lag is read from the events afterwards: every SLA step event carries
`late_ms` = Redis TIME when its script ran minus the timer's due time.
Also reports Redis memory per pending timer.

    .venv/bin/python benchmarks/timer_lag.py            # 1M pending, 10k/s for 60 s, 2 replicas
    .venv/bin/python benchmarks/timer_lag.py --pending 200000 --rate 2000 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from router.routing.engine import Engine
from router.routing.validation import parse_config
from router.store.client import make_client
from router.store.keys import WsKeys
from router.store.local import LocalRedis
from router.store.shards import Shards
from tests.support.client import small_config
from tests.support.procs import start_replicas, stop_replicas, wait_ready

WS = "lag"
CHUNK = 5_000


def config() -> bytes:
    cfg = small_config()
    cfg["sla_policies"] = {"bench": {"answer": {"target": 86_400, "ladder": [{"at": 0.5}]}}}
    return msgspec.json.encode(cfg)


async def write_contacts(client: Any, prefix: str, n: int) -> None:
    """Queued contacts with a running answer clock (no queue entries: no agent needs them)."""
    keys = WsKeys(WS)
    for start in range(0, n, CHUNK):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(n, start + CHUNK)):
            cid = f"{prefix}{i}"
            pipe.hset(
                keys.contact(cid),
                mapping={
                    "id": cid,
                    "st": "queued",
                    "ch": "voice",
                    "agent": "",
                    "sla": "bench",
                    "enq": 0,
                    "rank": 0,
                    "stage": 1,
                    "stages": "0:cards",
                    "w": 100,
                    "cust": "x",
                },
            )
            pipe.hset(
                keys.sla(cid),
                mapping={
                    "policy": "bench",
                    "answer.st": "active",
                    "answer.g": 1,
                    "answer.steps": "0,1",
                    "answer.due": 0,
                    "answer.start": 0,
                },
            )
        await pipe.execute()


async def add_timers(client: Any, members: list[tuple[str, int]]) -> None:
    keys = WsKeys(WS)
    for start in range(0, len(members), CHUNK):
        await client.zadd(keys.timers, dict(members[start : start + CHUNK]))


async def redis_ms(client: Any) -> int:
    s, us = await client.time()
    return int(s) * 1000 + int(us) // 1000


async def wait_fired(client: Any, total: int, within: float) -> int:
    """Waits until the stream holds `total` events (or `within` seconds pass)."""
    deadline = time.monotonic() + within
    n = 0
    while time.monotonic() < deadline:
        n = await client.xlen(WsKeys(WS).events)
        if n >= total:
            break
        await asyncio.sleep(0.5)
    return int(n)


async def read_lags(client: Any) -> dict[str, list[int]]:
    """late_ms and event time of every SLA warning, by contact prefix (phase)."""
    out: dict[str, list[int]] = {"a": [], "b": [], "b_at": []}
    last = "-"
    dec = msgspec.json.Decoder()
    while True:
        rows = await client.xrange(WsKeys(WS).events, last, "+", count=20_000)
        if last != "-":
            rows = rows[1:]
        if not rows:
            return out
        for _, fields in rows:
            e = dec.decode(fields["e"])
            if e.get("type") == "sla.warning":
                phase = e["contact"][0]
                out[phase].append(int(e["late_ms"]))
                if phase == "b":
                    out["b_at"].append(int(e["at"]))
        last = rows[-1][0]


def pct(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return float(s[min(len(s) - 1, int(q * len(s)))])


async def run(a: argparse.Namespace) -> dict[str, Any]:
    local = LocalRedis()
    client = make_client(local.url, 60.0)
    replicas = []
    try:
        engine = Engine(Shards(client))
        await engine.scripts.load_all(client)
        await engine.put_config(WS, parse_config(config()), "admin:bench")
        due_n = int(a.rate * a.duration)
        print(f"writing {due_n + a.backlog:,} contacts ...", flush=True)
        await write_contacts(client, "a", due_n)
        await write_contacts(client, "b", a.backlog)
        # Far-future filler: the store holds `pending` timers while phase A runs.
        filler = a.pending - due_n
        now = await redis_ms(client)
        mem0 = int((await client.info("memory"))["used_memory"])
        await add_timers(
            client, [(f"sla|z{i}|answer|0|1", now + 86_400_000 + i) for i in range(filler)]
        )
        mem1 = int((await client.info("memory"))["used_memory"])
        per_timer = (mem1 - mem0) / max(1, filler)
        print(f"{filler:,} far-future timers: {per_timer:.0f} bytes each in Redis", flush=True)

        log_dir = Path(tempfile.mkdtemp(prefix="timer-lag-"))
        os.environ.setdefault("ROUTER_REDIS_TIMEOUT", "10")
        replicas = start_replicas(local.url, log_dir, a.replicas)
        await wait_ready(replicas)

        t0 = await redis_ms(client) + 8_000  # time to write phase A's timers first
        step = 1000.0 / a.rate
        await add_timers(
            client, [(f"sla|a{i}|answer|0|1", t0 + int(i * step)) for i in range(due_n)]
        )
        print(
            f"phase A: {due_n:,} timers due at {a.rate:,.0f}/s from t0 "
            f"({(t0 - await redis_ms(client)) / 1000:.1f} s from now), "
            f"{a.pending:,} pending",
            flush=True,
        )
        base = int(await client.xlen(WsKeys(WS).events))  # the config event
        fired = await wait_fired(client, base + due_n, a.duration + 60)
        print(f"phase A: {fired - base:,} fired", flush=True)

        t1 = await redis_ms(client) + 3_000
        await add_timers(client, [(f"sla|b{i}|answer|0|1", t1) for i in range(a.backlog)])
        await wait_fired(client, base + due_n + a.backlog, 120)
        lags = await read_lags(client)
        drain_s = (max(lags["b_at"]) - t1) / 1000 if lags["b_at"] else float("nan")
        res = {
            "replicas": a.replicas,
            "pending": a.pending,
            "rate": a.rate,
            "duration": a.duration,
            "backlog": a.backlog,
            "phase_a": {
                "fired": len(lags["a"]),
                "expected": due_n,
                "lag_p50_ms": pct(lags["a"], 0.5),
                "lag_p99_ms": pct(lags["a"], 0.99),
                "lag_max_ms": max(lags["a"], default=0),
                "lag_mean_ms": statistics.fmean(lags["a"]) if lags["a"] else None,
                "late_over_250ms": sum(1 for x in lags["a"] if x > 250),
            },
            "phase_b": {
                "fired": len(lags["b"]),
                "expected": a.backlog,
                "drain_s": drain_s,
                "per_s": a.backlog / drain_s if drain_s else None,
                "per_s_per_process": a.backlog / drain_s / a.replicas if drain_s else None,
            },
            "bytes_per_pending_timer": round(per_timer),
            "redis": {k: (await client.info("memory"))[k] for k in ("used_memory_human",)},
            "machine": {
                "nproc": os.cpu_count(),
                "python": platform.python_version(),
                "redis": (await client.info("server"))["redis_version"],
                "loadavg": os.getloadavg(),
            },
        }
        return res
    finally:
        stop_replicas(replicas)
        await client.aclose()
        local.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pending", type=int, default=1_000_000)
    p.add_argument("--rate", type=float, default=10_000.0, help="timers due per second")
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--backlog", type=int, default=100_000)
    p.add_argument("--replicas", type=int, default=2)
    a = p.parse_args()
    res = asyncio.run(run(a))
    print(json.dumps(res, indent=1))
    pa, pb = res["phase_a"], res["phase_b"]
    print(
        f"\ntimer lag (fire time minus due time), {res['replicas']} replica(s), "
        f"{a.pending:,} pending, {a.rate:,.0f}/s due for {a.duration:.0f} s: "
        f"p50 {pa['lag_p50_ms']:.0f} ms, p99 {pa['lag_p99_ms']:.0f} ms, "
        f"max {pa['lag_max_ms']} ms; {pa['fired']:,} of {pa['expected']:,} fired; "
        f"backlog of {a.backlog:,} drained at {pb['per_s'] or 0:,.0f}/s "
        f"({pb['per_s_per_process'] or 0:,.0f}/s per process)"
    )


if __name__ == "__main__":
    main()
