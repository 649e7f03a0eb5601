"""Capacity search: step the offered rate of full lifecycles up until p99 latency
or errors cross a threshold, for 1 and 2 router processes on this machine.

For each replica count it starts a private redis-server and the routers, sets up
the load-test workspace (the demo bank's routing: rules, SLA policies, seven
pools; wrap-ups compressed to nearly nothing) with `--agents` agents, and runs
`benchmarks/lifecycle.py` (its own process, open-loop Poisson arrivals, one
WebSocket per agent desktop) at each rate. A step passes when the error rate is
at most `--max-error-rate`, contact creation p99 is at most `--max-p99-ms` and
the lifecycles completed keep up with the contacts admitted (at least 95%). The
sustainable rate is the highest passing step; the run then measures the routing
decision at half of it. Writes reports/capacity/capacity.json, a Markdown table
and benchmarks/capacity.png (latency against offered load).

CPU is read twice per step: over the whole step (connecting the desktops,
warm-up, window, tail: "router cores", "Redis µs / lifecycle") and over the
generator's measured window only (after every desktop connected), per lifecycle
completed in it: router (summed over replicas), Redis and the generator apart.
With `--hello` (the default for `--rates` runs; `--no-hello` skips it, `--hello`
adds it to a search) each step is followed by hello world driven at the step's
HTTP request rate for the same window length, and the router's CPU per lifecycle
is stated against it (benchmarks/capacity_report.py).

    .venv/bin/python -m benchmarks.capacity                       # 1 and 2 routers, 5,000 agents
    .venv/bin/python -m benchmarks.capacity --replicas 1 --agents 1000 --rates 100,200
    .venv/bin/python -m benchmarks.capacity --replicas 1 --rates 300 --out /tmp/cap  # + hello
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.capacity_report import compare_hello, markdown, pause_counts, pause_report, plot
from benchmarks.cpu_window import format_pids
from benchmarks.e2e.cpu import CpuWindow, proc_cpu
from benchmarks.e2e.procs import machine
from loadtest.workspace import WORKSPACE, agents, config
from router.runtime.settings import DEMO_JWT_SECRET
from router.store.local import LocalRedis
from router.store.shards import Shards
from tests.support.procs import ROOT, Replica, start_replicas, stop_replicas, wait_ready

AGENT_FORMAT = "lt-a"  # loadtest.workspace.agents ids: lt-a0000...


async def setup(
    redis_url: str,
    n_agents: int,
    workspace: str = WORKSPACE,
    tweak: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Config and available agents straight through the engine (5,000 agents in
    seconds); any topology (`redis_url` may name a cluster). `tweak` edits the
    config document first."""
    from router.routing.engine import Engine
    from router.routing.model import AgentIn, AgentStateIn
    from router.routing.validation import parse_config
    from router.store.client import open_shards

    shards = await open_shards(redis_url, 30.0)
    engine = Engine(shards)
    try:
        for client in shards.primaries():
            await engine.scripts.load_all(client)
        doc = config(1000.0)  # wrap-ups of 30 s become 30 ms: agents free almost at once
        for ch in doc["channels"].values():  # type: ignore[attr-defined]
            ch["offer_timeout"] = 60.0
        if tweak is not None:
            tweak(doc)
        await engine.put_config(workspace, parse_config(json.dumps(doc).encode()), "admin:bench")
        items = agents(n_agents)
        for i in range(0, len(items), 500):

            async def one(aid: str, body: dict[str, Any]) -> None:
                await engine.upsert_agent(workspace, aid, AgentIn(**body), "admin:bench")
                await engine.set_agent_state(workspace, aid, AgentStateIn(state="available"),
                                             "admin:bench")  # fmt: skip

            await asyncio.gather(*(one(aid, body) for aid, body in items[i : i + 500]))
    finally:
        await engine.close()
        await shards.aclose()


async def clear_backlog(redis_url: str) -> int:
    """Abandons every contact a step left behind (queued, offered or held by an
    agent whose desktop went away mid-lifecycle), as callers hanging up would.
    A saturated step leaves a backlog that the next step's agents would
    otherwise serve, counting it there and inflating its latencies."""
    from redis.asyncio import Redis

    from router.routing.engine import Engine
    from router.store.keys import WsKeys

    client = Redis.from_url(redis_url, decode_responses=True, max_connections=64)
    engine = Engine(Shards(client))
    ws = WsKeys(WORKSPACE)
    try:
        await engine.scripts.load_all(client)
        left: set[str] = set()
        async for key in client.scan_iter(match=ws.tag + ":qa:*", count=1000):
            left.update(await client.zrange(key, 0, -1))
        aids = sorted(await client.smembers(ws.agents))
        pipe = client.pipeline(transaction=False)
        for aid in aids:
            pipe.hkeys(ws.agent(aid))
        for fields in await pipe.execute():
            left.update(f[2:] for f in fields if f.startswith("h:"))
        ids = sorted(left)

        def abandon(cid: str) -> Any:
            return engine.contact_action(WORKSPACE, cid, "abandon", [""], "admin:bench")

        for i in range(0, len(ids), 500):
            await asyncio.gather(*map(abandon, ids[i : i + 500]), return_exceptions=True)
        return len(ids)
    finally:
        await engine.close()
        await client.aclose()


def redis_usec(url: str) -> tuple[float, int]:
    """Redis' own time in commands so far (µs, from INFO commandstats) and their count."""
    import redis

    with redis.Redis.from_url(url) as r:
        stats = r.info("commandstats")
    return (sum(float(v["usec"]) for v in stats.values()),  # type: ignore[union-attr]
            sum(int(v["calls"]) for v in stats.values()))  # type: ignore[union-attr]  # fmt: skip


def step(a: argparse.Namespace, hosts: list[str], rate: float, tag: str,
         pids: dict[str, int], redis_url: str) -> dict[str, Any]:  # fmt: skip
    cmd = [sys.executable, "-m", "benchmarks.lifecycle", "--urls", ",".join(hosts),
           "--ws", WORKSPACE, "--rate", str(rate), "--agents", str(a.agents),
           "--agent-prefix", AGENT_FORMAT, "--prefix", f"cap-{tag}",
           "--duration", str(a.duration), "--warmup", str(a.warmup),
           "--handle", str(a.handle), "--cpu-pids", format_pids(pids),
           "--redis-url", redis_url]  # fmt: skip
    if a.jwt_secret:
        cmd += ["--jwt-secret", a.jwt_secret]
    pauses = pause_counts(hosts)
    left = asyncio.run(clear_backlog(redis_url))
    cpu = CpuWindow(pids)
    cpu.start()
    u0, c0 = redis_usec(redis_url)
    t0 = os.times()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    t1 = os.times()
    usage = cpu.stop({"loadgen": (t1.children_user + t1.children_system)
                      - (t0.children_user + t0.children_system)})  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{out.stderr[-3000:]}")
    res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    res["cpu_cores"] = usage
    res["pauses"] = pause_report(pauses, pause_counts(hosts))
    res["backlog_abandoned_before"] = left
    u1, c1 = redis_usec(redis_url)
    # whole run (connect, warm-up, window, tail) over all lifecycles it completed
    done = max(1, res.get("status", {}).get("complete 200", 0))
    res["redis_us_per_lifecycle"] = round((u1 - u0) / done, 1)
    res["redis_commands_per_lifecycle"] = round((c1 - c0) / done, 1)
    if getattr(a, "hello", False):
        compare_hello(res, a.duration, a.warmup)
    return res


def passes(a: argparse.Namespace, r: dict[str, Any]) -> tuple[bool, str]:
    create = r.get("create", {})
    if r["error_rate"] > a.max_error_rate:
        return False, f"error rate {r['error_rate']:.2%}"
    if create.get("p99_ms", 1e9) > a.max_p99_ms:
        return False, f"create p99 {create.get('p99_ms')} ms"
    # Arrivals are Poisson: judge against what was admitted, and that most was admitted.
    if r["created_per_s"] < 0.9 * r["offered_rate"]:
        return False, f"admitted only {r['created_per_s']}/s"
    if r["lifecycles_per_s"] < 0.95 * r["created_per_s"]:
        return False, f"lifecycles {r['lifecycles_per_s']}/s behind admissions"
    return True, "ok"


def search(a: argparse.Namespace, replicas: int) -> dict[str, Any]:
    local = LocalRedis()
    log_dir = Path(tempfile.mkdtemp(prefix="capacity-"))
    env = {"ROUTER_LOG_LEVEL": "WARNING"}
    procs: list[Replica] = start_replicas(local.url, log_dir, replicas, env)
    try:
        asyncio.run(wait_ready(procs))
        asyncio.run(setup(local.url, a.agents))
        time.sleep(1.5)  # every replica's config cache
        hosts = [r.url for r in procs]
        pids = {f"router{i}": r.proc.pid for i, r in enumerate(procs)}
        pids["redis"] = local.proc.pid
        steps: list[dict[str, Any]] = []
        best = 0.0
        rates = [float(x) for x in a.rates.split(",")] if a.rates else None
        rate = rates[0] if rates else a.start
        i = 0
        while True:
            r = step(a, hosts, rate, f"{replicas}r{i}", pids, local.url)
            ok, why = passes(a, r)
            r["pass"], r["verdict"] = ok, why
            steps.append(r)
            print(f"  {replicas} router(s) {rate:>6.0f}/s offered: "
                  f"{r['lifecycles_per_s']:>7.1f} lifecycles/s, create p99 "
                  f"{r.get('create', {}).get('p99_ms')} ms, decision p99 "
                  f"{r.get('decision', {}).get('p99_ms')} ms (an idle process: late p99 "
                  f"{r.get('sleep_probe', {}).get('p99_ms')} ms), {why}; window: router "
                  f"{r.get('cpu_us_per_lifecycle', {}).get('router')} µs / lifecycle, "
                  f"÷ hello {r.get('router_vs_hello', {}).get('http', '-')}",
                  flush=True)  # fmt: skip
            if ok:
                best = rate
            i += 1
            if rates:
                if i >= len(rates):
                    break
                rate = rates[i]
            elif not ok:
                break
            else:
                rate = round(rate * a.factor, -1)
            time.sleep(a.settle)
        half = None
        if best:
            time.sleep(a.settle)
            half = step(a, hosts, best / 2, f"{replicas}half", pids, local.url)
            print(f"  half load {best / 2:.0f}/s: decision p99 "
                  f"{half.get('decision', {}).get('p99_ms')} ms (an idle process: late p99 "
                  f"{half.get('sleep_probe', {}).get('p99_ms')} ms)", flush=True)  # fmt: skip
        import redis

        with redis.Redis.from_url(local.url) as sync:
            mem = int(sync.info("memory")["used_memory"])  # type: ignore[index]
        return {"replicas": replicas, "sustainable_rate": best, "steps": steps, "half": half,
                "redis_used_memory": mem, "redis_cpu_s": proc_cpu(local.proc.pid)}  # fmt: skip
    finally:
        stop_replicas(procs)
        local.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replicas", default="1,2", help="router process counts to search")
    p.add_argument("--agents", type=int, default=5000)
    p.add_argument("--start", type=float, default=100.0, help="first offered rate, per second")
    p.add_argument("--factor", type=float, default=1.3, help="rate step multiplier")
    p.add_argument("--rates", default="", help="explicit comma list of rates instead")
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--handle", type=float, default=0.0, help="mean handle time, seconds")
    p.add_argument("--max-error-rate", type=float, default=0.01)
    p.add_argument("--max-p99-ms", type=float, default=100.0)
    p.add_argument(
        "--jwt-secret",
        default=DEMO_JWT_SECRET,
        help="the routers' ROUTER_JWT_SECRET: one signed token per agent desktop",
    )
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "capacity")
    p.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "capacity.png")
    p.add_argument("--hello", action=argparse.BooleanOptionalAction, default=None,
                   help="after each step, hello world at its HTTP request rate "
                   "(default: on with --rates, off for the search)")  # fmt: skip
    a = p.parse_args(argv)
    if a.hello is None:
        a.hello = bool(a.rates)
    a.out.mkdir(parents=True, exist_ok=True)
    results = []
    for n in (int(x) for x in a.replicas.split(",")):
        print(f"{n} router process(es), {a.agents} agents", flush=True)
        results.append(search(a, n))
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "command": " ".join(["python -m benchmarks.capacity", *(argv or sys.argv[1:])]),
    }
    (a.out / "capacity.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    table = markdown(results)
    (a.out / "capacity.md").write_text(table + "\n")
    plot(results, a.plot)
    print(table)
    for res in results:
        print(f"{res['replicas']} router(s): sustainable {res['sustainable_rate']:.0f} "
              "lifecycles/s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
