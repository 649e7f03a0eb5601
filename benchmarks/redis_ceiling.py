"""Redis' ceiling for one workspace: full lifecycles driven straight through the engine.

    .venv/bin/python -m benchmarks.redis_ceiling                 # ~1 min, own redis-server
    .venv/bin/python -m benchmarks.redis_ceiling --json /tmp/ceiling.json

Every contact of a workspace is decided by scripts on one Redis thread, so that
thread bounds what one workspace can do however many routers run; the routers
themselves scale out. On this 2-core machine the capacity search cannot show
that bound: routers, load generator and Redis share the cores and the routers
run out first. This benchmark leaves HTTP and the routers out. It runs the
router's own engine in this process (the same scripts, script pipeline and
timer worker a replica runs) and drives closed-loop lifecycles with `--agents`
agents of the load-test workspace:

    create -> offered -> `--views` agent reads (the desktop pushes) -> accept
    -> complete -> wrap-up timer fires (the agent is free, takes the next)

It reports Redis' CPU per lifecycle (user + system of the redis-server process,
from /proc: commands, networking and protocol) and its command time
(INFO commandstats), both over a measured window, and from the CPU the rate
one workspace could reach with a core of its own: 1,000,000 / CPU µs. The
per-request rate limiter (one more script per request, ~10 µs) is left out: it
runs on the routers' Redis calls, not on the lifecycle's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import time
from collections import Counter
from pathlib import Path
from typing import Any

import uvloop
from redis.asyncio import Redis

from benchmarks.capacity import redis_usec, setup
from benchmarks.e2e.cpu import proc_cpu
from benchmarks.e2e.procs import machine
from benchmarks.lifecycle import CHANNELS, INTENTS, TIERS
from loadtest.workspace import WORKSPACE
from router.routing.engine import Engine
from router.routing.model import ContactIn, Customer
from router.runtime.errors import RouterError
from router.store.local import LocalRedis
from sla.timers import TimerWorker


class Driver:
    def __init__(self, engine: Engine, a: argparse.Namespace) -> None:
        self.engine, self.a = engine, a
        self.rng = random.Random(a.seed)
        self.n = 0
        self.done = 0
        self.outcomes: Counter[str] = Counter()
        self.stop = False

    async def wait_offer(self, cid: str) -> str | None:
        """A contact that queued (no agent with the skill was free): poll until it
        is offered. Every contact has a customer of its own, so none waits for a
        recent agent of its customer (continuity)."""
        while not self.stop:
            await asyncio.sleep(0.02)
            c = await self.engine.get_contact(WORKSPACE, cid, timeline=False)
            if c.state == "offered" and c.agent:
                return c.agent
        return None

    async def caller(self) -> None:
        e, ws, rng = self.engine, WORKSPACE, self.rng
        while not self.stop:
            self.n += 1
            cid = f"rc-{self.n:08d}"
            body = ContactIn(id=cid, channel=rng.choice(CHANNELS), intent=rng.choice(INTENTS),
                             customer=Customer(id="cu-" + cid,
                                               tier=rng.choice(TIERS)))  # fmt: skip
            try:
                out = await e.create_contact(ws, body, "gateway:bench", gateway="bench")
                agent = out.agent if out.state == "offered" else None
                if agent is None:
                    self.outcomes["queued on arrival"] += 1
                    agent = await self.wait_offer(cid)
                    if agent is None:
                        self.outcomes["never offered"] += 1
                        continue
                for _ in range(self.a.views):
                    await e.agent_view(ws, agent)
                who = "agent:" + agent
                await e.contact_action(ws, cid, "accept", [agent], who)
                await e.contact_action(ws, cid, "complete", [agent], who)
                self.done += 1
            except RouterError as exc:
                self.outcomes[type(exc).__name__] += 1


def command_stats(url: str) -> dict[str, tuple[int, float]]:
    """(calls, µs) per command so far; commands run inside scripts count too."""
    import redis

    with redis.Redis.from_url(url) as r:
        stats = r.info("commandstats")
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), float(v["usec"]))  # type: ignore[index]
            for k, v in stats.items()}  # fmt: skip


def redis_pid(client_url: str) -> int:
    import redis

    with redis.Redis.from_url(client_url) as r:
        return int(r.info("server")["process_id"])  # type: ignore[index]


async def run(a: argparse.Namespace, url: str) -> dict[str, Any]:
    await setup(url, a.agents)
    client = Redis.from_url(url, decode_responses=True, max_connections=256)
    engine = Engine(client)
    await engine.scripts.load_all(client)
    timers = TimerWorker(client, engine.scripts["claim"], engine.scripts["handback"],
                         engine.fire_timers, poll=0.02)  # fmt: skip
    timer_task = asyncio.create_task(timers.run())
    d = Driver(engine, a)
    callers = [asyncio.create_task(d.caller()) for _ in range(a.concurrency)]
    pid = redis_pid(url)
    await asyncio.sleep(a.warmup)
    done0, cpu0, (us0, calls0) = d.done, proc_cpu(pid), redis_usec(url)
    cmd0 = command_stats(url)
    own0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    await asyncio.sleep(a.duration)
    done1, cpu1, (us1, calls1) = d.done, proc_cpu(pid), redis_usec(url)
    cmd1 = command_stats(url)
    own1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    d.stop = True
    await asyncio.gather(*callers, return_exceptions=True)
    await timers.stop()
    timer_task.cancel()
    await engine.close()
    await client.aclose()
    n, wall = done1 - done0, t1 - t0
    cpu_us = (cpu1 - cpu0) * 1e6 / max(n, 1)
    own = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
    return {
        "machine": machine(),
        "agents": a.agents, "concurrency": a.concurrency, "views": a.views,
        "window_s": round(wall, 2),
        "lifecycles": n,
        "lifecycles_per_s": round(n / wall, 1),
        "redis_cpu_cores": round((cpu1 - cpu0) / wall, 2),
        "redis_cpu_us_per_lifecycle": round(cpu_us, 1),
        "redis_command_us_per_lifecycle": round((us1 - us0) / max(n, 1), 1),
        "redis_commands_per_lifecycle": round((calls1 - calls0) / max(n, 1), 1),
        "driver_cpu_cores": round(own / wall, 2),
        "ceiling_lifecycles_per_s": round(1e6 / cpu_us) if n else 0,
        "outcomes": dict(d.outcomes),
        # per lifecycle: calls and µs of each command (EVALSHA's µs include those
        # of the commands its scripts ran, which are listed too)
        "commands": {k: {"calls": round((c - cmd0.get(k, (0, 0.0))[0]) / max(n, 1), 2),
                         "us": round((u - cmd0.get(k, (0, 0.0))[1]) / max(n, 1), 1)}
                     for k, (c, u) in sorted(cmd1.items(), key=lambda kv: -kv[1][1])
                     if c > cmd0.get(k, (0, 0.0))[0]},
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=96, help="lifecycles in flight")
    p.add_argument(
        "--views",
        type=int,
        default=4,
        help="agent reads per lifecycle (the full stack measured 4.2 pushes)",
    )
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    local = LocalRedis()
    try:
        out = uvloop.run(run(a, local.url))
    finally:
        local.stop()
    text = json.dumps(out, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
