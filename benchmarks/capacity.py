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

    .venv/bin/python -m benchmarks.capacity                       # 1 and 2 routers, 5,000 agents
    .venv/bin/python -m benchmarks.capacity --replicas 1 --agents 1000 --rates 100,200
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
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def pause_counts(hosts: list[str]) -> Counter[str]:
    """The routers' event-loop lag histogram and GC pauses (router/runtime/pauses.py), summed."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    out: Counter[str] = Counter()
    for host in hosts:
        with urllib.request.urlopen(host + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        for fam in text_string_to_metric_families(text):
            for smp in fam.samples:
                if smp.name == "router_event_loop_lag_seconds_bucket":
                    out["lag_le_" + smp.labels["le"]] += smp.value
                elif smp.name in ("router_gc_pause_seconds_sum", "router_gc_pause_seconds_count"):
                    kind = "sum" if smp.name.endswith("_sum") else "count"
                    out[f"{kind}_gen{smp.labels['generation']}"] += smp.value
    return out


def pause_report(before: Counter[str], after: Counter[str]) -> dict[str, Any]:
    """During one step: share of 100 ms loop ticks that ran over 5 / 25 ms late, the
    worst lag bucket reached, and GC pauses by generation (count, total ms)."""
    d = {k: after[k] - before[k] for k in after}
    ticks = d.get("lag_le_+Inf", 0)
    bounds = sorted((float(k[7:]), v) for k, v in d.items()
                    if k.startswith("lag_le_") and k != "lag_le_+Inf")  # fmt: skip
    worst = next((b for b, v in bounds if v >= ticks), float("inf")) if ticks else 0.0
    under = dict(bounds)
    return {
        "router_loop_ticks": int(ticks),
        "router_loop_late_5ms": round(1 - under.get(0.005, 0) / ticks, 4) if ticks else None,
        "router_loop_late_25ms": round(1 - under.get(0.025, 0) / ticks, 4) if ticks else None,
        "router_loop_lag_max_bucket_ms": worst * 1000,
        "router_gc": {g: {"count": int(d.get(f"count_gen{g}", 0)),
                          "ms": round(d.get(f"sum_gen{g}", 0) * 1000, 1)} for g in "012"},
    }  # fmt: skip


def step(a: argparse.Namespace, hosts: list[str], rate: float, tag: str,
         pids: dict[str, int], redis_url: str) -> dict[str, Any]:  # fmt: skip
    cmd = [sys.executable, "-m", "benchmarks.lifecycle", "--urls", ",".join(hosts),
           "--ws", WORKSPACE, "--rate", str(rate), "--agents", str(a.agents),
           "--agent-prefix", AGENT_FORMAT, "--prefix", f"cap-{tag}",
           "--duration", str(a.duration), "--warmup", str(a.warmup),
           "--handle", str(a.handle)]  # fmt: skip
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
                  f"{r.get('decision', {}).get('p99_ms')} ms, {why}", flush=True)  # fmt: skip
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
                  f"{half.get('decision', {}).get('p99_ms')} ms", flush=True)  # fmt: skip
        import redis

        with redis.Redis.from_url(local.url) as sync:
            mem = int(sync.info("memory")["used_memory"])  # type: ignore[index]
        return {"replicas": replicas, "sustainable_rate": best, "steps": steps, "half": half,
                "redis_used_memory": mem, "redis_cpu_s": proc_cpu(local.proc.pid)}  # fmt: skip
    finally:
        stop_replicas(procs)
        local.stop()


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, thr) = plt.subplots(1, 2, figsize=(12, 4.5))
    for res in results:
        rows = [s for s in res["steps"] if "create" in s]
        x = [s["offered_rate"] for s in rows]
        n = res["replicas"]
        lat.plot(x, [s["create"]["p99_ms"] for s in rows], "o-", label=f"{n} router: create p99")
        lat.plot(x, [s["create"]["p50_ms"] for s in rows], "o:", label=f"{n} router: create p50")
        if all("decision" in s for s in rows):
            lat.plot(x, [s["decision"]["p99_ms"] for s in rows], "s--",
                     label=f"{n} router: decision p99")  # fmt: skip
        thr.plot(x, [s["lifecycles_per_s"] for s in rows], "o-", label=f"{n} router")
    lat.set_yscale("log")
    lat.set_xlabel("offered contacts per second")
    lat.set_ylabel("latency, ms (log)")
    lat.legend(fontsize=8)
    lat.grid(True, which="both", alpha=0.3)
    top = max(s["offered_rate"] for r in results for s in r["steps"])
    thr.plot([0, top], [0, top], color="grey", lw=0.8, ls="--", label="offered")
    thr.set_xlabel("offered contacts per second")
    thr.set_ylabel("full lifecycles completed per second")
    thr.legend(fontsize=8)
    thr.grid(True, alpha=0.3)
    fig.suptitle("Capacity search (2-core machine; Redis, routers and load generator share it)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def late(s: dict[str, Any]) -> str:
    share = s.get("pauses", {}).get("router_loop_late_5ms")
    return "-" if share is None else f"{share:.1%}"


def gc_text(s: dict[str, Any]) -> str:
    gcs = s.get("pauses", {}).get("router_gc")
    if not gcs:
        return "-"
    return ", ".join(f"g{g}: {v['count']}, {v['ms']:.0f}" for g, v in gcs.items())


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| routers | offered/s | lifecycles/s | create p50 / p99 ms | decision p50 / p99 ms "
             "| accept p99 ms | complete p99 ms | errors | router cores | Redis cores "
             "| loadgen cores | Redis µs / lifecycle | router loop >5 ms late "
             "| router GC pauses (n, ms) | loadgen lag p99 ms | verdict |",
             "|" + "---|" * 16]  # fmt: skip
    for res in results:
        for s in res["steps"] + ([res["half"] | {"verdict": "half load"}] if res["half"] else []):
            c = s["cpu_cores"]
            routers = sum(v for k, v in c.items() if k.startswith("router"))

            def lat(kind: str, s: dict[str, Any] = s) -> str:
                v = s.get(kind)
                return f"{v['p50_ms']} / {v['p99_ms']}" if v else "-"

            lines.append(
                f"| {res['replicas']} | {s['offered_rate']:.0f} | {s['lifecycles_per_s']} "
                f"| {lat('create')} | {lat('decision')} "
                f"| {s.get('accept', {}).get('p99_ms', '-')} "
                f"| {s.get('complete', {}).get('p99_ms', '-')} | {s['error_rate']:.2%} "
                f"| {routers:.2f} | {c.get('redis', 0):.2f} | {c.get('loadgen', 0):.2f} "
                f"| {s.get('redis_us_per_lifecycle', '-')} | {late(s)} | {gc_text(s)} "
                f"| {s.get('loadgen_loop_lag', {}).get('p99_ms', '-')} | {s['verdict']} |"
            )
    return "\n".join(lines)


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
    a = p.parse_args(argv)
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
