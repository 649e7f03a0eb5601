"""Two router builds side by side, at the same time: which one spends less CPU
per contact lifecycle, read through this machine's drift.

    git worktree add /tmp/base main          # the build to compare against
    .venv/bin/python -m benchmarks.paired --base /tmp/base [--rate 150] [--rounds 6]

On a shared 2-vCPU machine the same build's CPU per lifecycle moves by 10-20%
from one run to the next (benchmarks/RESULTS.md, "noise"), which hides any
change worth less than that when builds are measured one after the other. Here
each round runs both at once: each build is one `router serve` process (the
base's started from its own source tree) on its own redis-server, set up alike
(`benchmarks.capacity.setup`: the load-test workspace, `--agents` agents), and
driven by its own `benchmarks.lifecycle` generator at `--rate` lifecycles a
second over the same window. Both see the same machine state, so the ratio of
their CPU per lifecycle (this tree over the base) is read in each round; the
builds swap which starts first every round. The two trees must share the data
layout (setup runs this tree's engine against both).

Prints one line per round and the medians; with `--out`, writes the rounds as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.capacity import AGENT_FORMAT, clear_backlog, setup
from benchmarks.cpu_window import format_pids
from benchmarks.e2e.procs import machine
from loadtest.workspace import WORKSPACE
from router.runtime.settings import DEMO_JWT_SECRET
from router.store.local import LocalRedis
from tests.support.procs import ROOT, Replica, stop_replicas, wait_ready

KEYS = ("router", "redis")


def _generator(a: argparse.Namespace, url: str, pids: dict[str, int], redis_url: str,
               tag: str) -> subprocess.Popen[str]:  # fmt: skip
    cmd = [sys.executable, "-m", "benchmarks.lifecycle", "--urls", url, "--ws", WORKSPACE,
           "--rate", str(a.rate), "--agents", str(a.agents), "--agent-prefix", AGENT_FORMAT,
           "--prefix", tag, "--duration", str(a.duration), "--warmup", str(a.warmup),
           "--handle", "0", "--cpu-pids", format_pids(pids), "--redis-url", redis_url,
           "--jwt-secret", DEMO_JWT_SECRET]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _round(a: argparse.Namespace, stacks: dict[str, tuple[Replica, LocalRedis]],
           order: list[str], n: int) -> dict[str, Any]:  # fmt: skip
    for _, redis in stacks.values():
        asyncio.run(clear_backlog(redis.url))
    procs = {}
    for name in order:
        replica, redis = stacks[name]
        pids = {"router": replica.proc.pid, "redis": redis.proc.pid}
        procs[name] = _generator(a, replica.url, pids, redis.url, f"pair{n}-{name}")
    out: dict[str, Any] = {"round": n, "first": order[0]}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{name}'s load generator failed:\n{stderr[-3000:]}")
        res = json.loads(stdout.strip().splitlines()[-1])
        cpu = res.get("cpu_us_per_lifecycle", {})
        out[name] = {"lifecycles_per_s": res["lifecycles_per_s"],
                     "errors": res.get("errors", {}),
                     "decision_p50_ms": res.get("decision", {}).get("p50_ms"),
                     **{k: cpu.get(k) for k in KEYS}}  # fmt: skip
    for k in KEYS:
        base, this = out["base"][k], out["this"][k]
        out[k + "_ratio"] = round(this / base, 3) if base and this else None
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", type=Path, required=True, help="source tree of the base build")
    p.add_argument("--rate", type=float, default=150.0, help="lifecycles a second, each build")
    p.add_argument("--agents", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    if not (a.base / "router" / "__main__.py").exists():
        p.error(f"--base {a.base} is not a source tree of the router")
    log_dir = Path(tempfile.mkdtemp(prefix="paired-"))
    env = {"ROUTER_LOG_LEVEL": "WARNING"}
    stacks: dict[str, tuple[Replica, LocalRedis]] = {}
    try:
        for i, (name, root) in enumerate((("base", a.base.resolve()), ("this", ROOT))):
            redis = LocalRedis()
            stacks[name] = (Replica(redis.url, log_dir, i, env, root=root), redis)
        asyncio.run(wait_ready([r for r, _ in stacks.values()]))
        for _, redis in stacks.values():
            asyncio.run(setup(redis.url, a.agents))
        time.sleep(1.5)  # the routers' config caches
        print(f"this tree {ROOT} against base {a.base}: {a.rate:.0f} lifecycles/s each, "
              f"{a.agents} agents each", flush=True)  # fmt: skip
        rounds = []
        for n in range(a.rounds):
            order = ["base", "this"] if n % 2 == 0 else ["this", "base"]
            r = _round(a, stacks, order, n)
            rounds.append(r)
            print(f"  round {n}: router µs/lifecycle base {r['base']['router']}, this "
                  f"{r['this']['router']} (x{r['router_ratio']}); Redis base "
                  f"{r['base']['redis']}, this {r['this']['redis']} (x{r['redis_ratio']})",
                  flush=True)  # fmt: skip
        summary = {k: statistics.median(r[k + "_ratio"] for r in rounds if r[k + "_ratio"])
                   for k in KEYS}  # fmt: skip
        print(f"median of rounds, this ÷ base: router x{summary['router']:.3f}, "
              f"Redis x{summary['redis']:.3f}")  # fmt: skip
        if a.out:
            a.out.write_text(json.dumps({"machine": machine(), "base": str(a.base),
                                         "rate": a.rate, "agents": a.agents,
                                         "rounds": rounds, "median_ratio": summary},
                                        indent=2))  # fmt: skip
        return 0
    finally:
        stop_replicas([r for r, _ in stacks.values()])
        for _, redis in stacks.values():
            redis.stop()


if __name__ == "__main__":
    sys.exit(main())
