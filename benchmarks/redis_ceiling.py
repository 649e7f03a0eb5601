"""Redis' ceiling for one workspace: full lifecycles driven straight through the engine.

    .venv/bin/python -m benchmarks.redis_ceiling                 # ~1 min, own redis-server
    .venv/bin/python -m benchmarks.redis_ceiling --json /tmp/ceiling.json
    .venv/bin/python -m benchmarks.redis_ceiling --cluster       # ~3 min, see below

Every contact of a workspace is decided by scripts on one Redis thread, so that
thread bounds what one workspace can do however many routers run; the routers
themselves scale out. On this 2-core machine the capacity search cannot show
that bound: routers, load generator and Redis share the cores and the routers
run out first. This benchmark leaves HTTP and the routers out. It runs the
router's own engine in this process (the same scripts, script pipeline and
timer worker a replica runs) and drives closed-loop lifecycles with `--agents`
agents of the load-test workspace:

    create -> offered -> accept -> complete -> wrap-up timer fires (the agent
    is free, takes the next)

The desktop pushes cost no read of their own: every script that changes an
agent publishes the agent's view with its notification (lib/20_events.lua), so
their Redis work is inside the scripts measured. `--views N` adds N agent reads
per lifecycle (agent_view.lua), as desktops did before and long-polls that time
out still do.

`--workspace demo` runs the demo workspace's routing as `router serve --demo`
seeds it (router/cli/demo.py: its real wrap-ups and offer timeouts; `--agents`
agents with the demo teams' skills, as the load-test workspace has). Its
wrap-ups last 10-30 s, so the agent ends each one at once (a second
`complete`, the desktop's "end wrap-up"): one more script per lifecycle, in
place of the wrap-up timer. `--archived` marks the workspace archived before
the run, as the history archiver does (router/archive/events.py: its consumer
group and `arch` = 1 in the runtime hash), which the demo is: the scripts then
keep no timeline copy per contact.

It reports Redis' CPU per lifecycle (user + system of the redis-server process,
from /proc: commands, networking and protocol) and its command time
(INFO commandstats), both over a measured window, and from the CPU the rate
one workspace could reach with a core of its own: 1,000,000 / CPU µs. The
per-request rate limiter (one more script per request, ~10 µs) is left out: it
runs on the routers' Redis calls, not on the lifecycle's. The audit sealer is left out
as well: one replica seals each workspace's events in batches (an XADD per
event into the sealed stream, `router/security/audit/lua/seal.lua`), Redis work
per lifecycle this figure does not include; `benchmarks.redis_profile` shows it
beside the scripts.

`--cluster` measures what Redis Cluster costs: three workspaces driven alike,
first on one standalone redis-server, then one per shard of a three-primary
cluster (no replicas on either side), then on a one-node cluster holding every
slot (cluster mode without the split into processes), and reports Redis CPU
per lifecycle summed over the shards against the standalone figure, and each
shard's share of the cluster's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import uvloop

from benchmarks.capacity import redis_usec, setup
from benchmarks.e2e.cpu import proc_cpu
from benchmarks.e2e.procs import machine
from benchmarks.lifecycle import CHANNELS, INTENTS, TIERS
from loadtest.workspace import WORKSPACE
from router.cli.demo import DEMO_WORKSPACE, demo_config
from router.routing.engine import Engine
from router.routing.model import ContactIn, Customer
from router.runtime.errors import RouterError
from router.store.client import make_shards, open_shards
from router.store.keys import ARCHIVE_GROUP, WsKeys
from router.store.local import LocalRedis
from sla.timers import TimerWorker


class Driver:
    def __init__(self, engine: Engine, a: argparse.Namespace, workspaces: list[str]) -> None:
        self.engine, self.a, self.workspaces = engine, a, workspaces
        self.rng = random.Random(a.seed)
        self.n = 0
        self.done = 0
        self.outcomes: Counter[str] = Counter()
        self.stop = False
        # `--rate`: lifecycles start at that pace (open loop), else as fast as
        # `--concurrency` callers go (closed loop)
        self.permits: asyncio.Queue[None] | None = asyncio.Queue() if a.rate else None

    async def pace(self) -> None:
        assert self.permits is not None
        t0, n = time.perf_counter(), 0
        while not self.stop:
            due = int((time.perf_counter() - t0) * self.a.rate) - n
            for _ in range(min(due, self.a.concurrency)):
                self.permits.put_nowait(None)
            n += due
            await asyncio.sleep(0.005)

    async def wait_offer(self, ws: str, cid: str) -> str | None:
        """A contact that queued (no agent with the skill was free): poll until it
        is offered. Every contact has a customer of its own, so none waits for a
        recent agent of its customer (continuity)."""
        while not self.stop:
            await asyncio.sleep(0.02)
            c = await self.engine.get_contact(ws, cid, timeline=False)
            if c.state == "offered" and c.agent:
                return c.agent
        return None

    async def caller(self, ws: str) -> None:
        e, rng = self.engine, self.rng
        while not self.stop:
            if self.permits is not None:
                await self.permits.get()
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
                    agent = await self.wait_offer(ws, cid)
                    if agent is None:
                        self.outcomes["never offered"] += 1
                        continue
                for _ in range(self.a.views):
                    await e.agent_view(ws, agent)
                who = "agent:" + agent
                await e.contact_action(ws, cid, "accept", [agent], who)
                out = await e.contact_action(ws, cid, "complete", [agent], who)
                if self.a.workspace == "demo" and out.state == "wrap_up":
                    # the demo's wrap-ups are real (10-30 s): the agent ends it
                    await e.contact_action(ws, cid, "complete", [agent], who)
                self.done += 1
            except RouterError as exc:
                self.outcomes[type(exc).__name__] += 1


def demo_doc(doc: dict[str, Any]) -> None:
    """The demo workspace's config in place of the load-test one."""
    doc.clear()
    doc.update(msgspec.to_builtins(demo_config()))


async def mark_archived(url: str, ws: str) -> None:
    """What the history archiver does on its first round in a workspace
    (router/archive/events.py `archive_once`)."""
    import redis.asyncio as aredis

    keys = WsKeys(ws)
    shards = await open_shards(url, 30.0)
    try:
        client = shards.of(keys.tag)
        try:
            await client.xgroup_create(keys.events, ARCHIVE_GROUP, id="0", mkstream=True)
        except aredis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        await client.hset(keys.runtime, "arch", "1")
    finally:
        await shards.aclose()


def command_stats(urls: list[str]) -> dict[str, tuple[int, float]]:
    """(calls, µs) per command so far, summed over `urls`; commands run inside
    scripts count too."""
    import redis

    out: dict[str, tuple[int, float]] = {}
    for url in urls:
        with redis.Redis.from_url(url) as r:
            stats = r.info("commandstats")
        for k, v in stats.items():
            calls, us = out.get(k.removeprefix("cmdstat_"), (0, 0.0))
            out[k.removeprefix("cmdstat_")] = (calls + int(v["calls"]), us + float(v["usec"]))  # type: ignore[index]
    return out


def _usec(urls: list[str]) -> tuple[float, int]:
    got = [redis_usec(u) for u in urls]
    return sum(us for us, _ in got), sum(calls for _, calls in got)


def redis_pid(client_url: str) -> int:
    import redis

    with redis.Redis.from_url(client_url) as r:
        return int(r.info("server")["process_id"])  # type: ignore[index]


async def run(
    a: argparse.Namespace, url: str, nodes: list[str], workspaces: list[str] | None = None
) -> dict[str, Any]:
    """`url` for the engine (any topology); `nodes`: the plain URLs of the
    servers whose CPU and commands are counted (one, or every primary)."""
    demo = a.workspace == "demo"
    workspaces = workspaces or [DEMO_WORKSPACE if demo else WORKSPACE]
    for ws in workspaces:
        await setup(url, a.agents // len(workspaces), ws, demo_doc if demo else None)
        if a.archived:
            await mark_archived(url, ws)
    shards = make_shards(url, 30.0)
    await shards.start()
    engine = Engine(shards)
    timers = TimerWorker(shards, engine.scripts["claim"], engine.scripts["handback"],
                         engine.fire_timers, poll=0.02,
                         workspaces=engine.configs.workspaces)  # fmt: skip
    timer_task = asyncio.create_task(timers.run())
    d = Driver(engine, a, workspaces)
    callers = [asyncio.create_task(d.caller(workspaces[i % len(workspaces)]))
               for i in range(a.concurrency)]  # fmt: skip
    if d.permits is not None:
        callers.append(asyncio.create_task(d.pace()))
    pids = [redis_pid(n) for n in nodes]
    await asyncio.sleep(a.warmup)
    done0, cpus0, (us0, calls0) = d.done, [proc_cpu(p) for p in pids], _usec(nodes)
    cmd0 = command_stats(nodes)
    own0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    await asyncio.sleep(a.duration)
    done1, cpus1, (us1, calls1) = d.done, [proc_cpu(p) for p in pids], _usec(nodes)
    cmd1 = command_stats(nodes)
    own1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    d.stop = True
    if d.permits is not None:  # callers waiting for a permit: let them see the stop
        for _ in range(a.concurrency):
            d.permits.put_nowait(None)
    await asyncio.gather(*callers, return_exceptions=True)
    await timers.stop()
    timer_task.cancel()
    await engine.close()
    await shards.aclose()
    n, wall = done1 - done0, t1 - t0
    per_node = [c1 - c0 for c0, c1 in zip(cpus0, cpus1, strict=True)]
    cpu0, cpu1 = 0.0, sum(per_node)
    cpu_us = (cpu1 - cpu0) * 1e6 / max(n, 1)
    own = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
    return {
        "machine": machine(),
        "workspace": a.workspace, "archived": a.archived,
        "agents": a.agents, "concurrency": a.concurrency, "views": a.views, "rate": a.rate,
        "window_s": round(wall, 2),
        "lifecycles": n,
        "lifecycles_per_s": round(n / wall, 1),
        "redis_cpu_cores": round((cpu1 - cpu0) / wall, 2),
        "redis_cpu_share_by_node": [round(c / max(cpu1, 1e-9), 3) for c in per_node],
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


async def compare_cluster(a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Three workspaces on one standalone server, then one per shard of a
    three-primary cluster; the same load on both."""
    from tests.support.cluster import ClusterGroup

    local = LocalRedis()
    names = [f"ceiling{i}" for i in range(3)]
    try:
        standalone = await run(a, local.url, [local.url], names)
    finally:
        local.stop()
    group = ClusterGroup(tmp / "cluster", masters=3, replicas_per_master=0)
    try:
        names = group.names_on_each_primary("ceiling")
        nodes = [f"redis://127.0.0.1:{p}" for p in group.primaries()]
        cluster = await run(a, group.url, nodes, names)
    finally:
        group.stop()
    # control: cluster mode on one node that holds every slot (one process, as
    # the standalone server): what cluster mode itself costs Redis
    port, proc = one_node_cluster(tmp / "one")
    try:
        one = await run(a, f"redis+cluster://127.0.0.1:{port}", [f"redis://127.0.0.1:{port}"],
                        [f"ceiling{i}" for i in range(3)])  # fmt: skip
    finally:
        proc.kill()
        proc.wait()
    base = standalone["redis_cpu_us_per_lifecycle"]
    return {
        "standalone": standalone,
        "cluster": cluster,
        "one_node_cluster": one,
        "cluster_cpu_per_lifecycle_ratio": round(cluster["redis_cpu_us_per_lifecycle"] / base, 3),
        "one_node_cluster_ratio": round(one["redis_cpu_us_per_lifecycle"] / base, 3),
        "largest_shard_share": max(cluster["redis_cpu_share_by_node"]),
    }


def one_node_cluster(home: Path) -> tuple[int, subprocess.Popen[bytes]]:
    """A redis-server in cluster mode holding all 16,384 slots itself."""
    import redis

    from router.store.local import free_port

    home.mkdir(parents=True, exist_ok=True)
    port, bus = free_port(), free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--cluster-port", str(bus), "--bind", "127.0.0.1",
         "--cluster-enabled", "yes", "--dir", str(home), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(100):
        try:
            with redis.Redis(port=port, decode_responses=True) as r:
                r.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
                while r.cluster("INFO")["cluster_state"] != "ok":
                    time.sleep(0.1)
            return port, proc
        except redis.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the one-node cluster did not start")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=96, help="lifecycles in flight")
    p.add_argument(
        "--views",
        type=int,
        default=0,
        help="agent reads per lifecycle on top (pushes carry the view: 0)",
    )
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rate", type=float, default=0.0, help="lifecycles/s (open loop); 0: closed")
    p.add_argument(
        "--workspace",
        choices=["loadtest", "demo"],
        default="loadtest",
        help="the load-test workspace (compressed wrap-ups) or the demo's config",
    )
    p.add_argument(
        "--archived",
        action="store_true",
        help="the workspace archived (no per-contact timelines), as the demo runs",
    )
    p.add_argument("--cluster", action="store_true", help="standalone against a 3-shard cluster")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    if a.cluster:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            out = uvloop.run(compare_cluster(a, Path(tmp)))
    else:
        local = LocalRedis()
        try:
            out = uvloop.run(run(a, local.url, [local.url]))
        finally:
            local.stop()
    text = json.dumps(out, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
