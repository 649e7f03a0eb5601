"""What the write guarantee costs: `POST /contacts` with `ROUTER_REDIS_WAIT_REPLICAS`
1 against 0, in one run, on the same primary and replica.

A primary redis-server with one replica (loopback), one `router serve` per
setting on the primary, the admission workspace of the end-to-end benchmark
(ready agents take the first contacts, the rest queue), and the closed-loop
load generator creating contacts at `--concurrency`. Reported per setting:
requests/s, p50/p99, and the CPU the primary and the replica spend per request
(/proc, over the measured window).

    .venv/bin/python -m benchmarks.write_guarantee                 # 64 and 8 connections, 10 s each
    .venv/bin/python -m benchmarks.write_guarantee --duration 5 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.e2e.common import HERE, PY
from benchmarks.e2e.cpu import proc_cpu
from benchmarks.e2e.workspaces import setup_admission
from tests.support.faults import RedisServer
from tests.support.procs import Replica, stop_replicas, wait_ready
from tests.support.sentinel import wait_synced


def load(url: str, concurrency: int, duration: float, prefix: str) -> dict[str, Any]:
    cmd = [
        PY, str(HERE / "loadgen.py"), "create", "--url", url, "--concurrency", str(concurrency),
        "--duration", str(duration), "--warmup", "1", "--prefix", prefix,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def measure(
    primary: RedisServer, replica: RedisServer, router: Replica, ws: str, c: int, secs: float
) -> dict[str, Any]:
    assert primary.proc is not None and replica.proc is not None
    before = proc_cpu(primary.proc.pid), proc_cpu(replica.proc.pid), proc_cpu(router.proc.pid)
    res = load(f"{router.url}/v1/workspaces/{ws}", c, secs, f"{ws}-{c}")
    after = proc_cpu(primary.proc.pid), proc_cpu(replica.proc.pid), proc_cpu(router.proc.pid)
    # the CPU counters cover warm-up too: divide by every request made, not just those counted
    made = res["requests"] * (1 + 1 / secs)
    per = [round((a - b) / made * 1e6, 1) for a, b in zip(after, before, strict=True)]
    return {
        "concurrency": c,
        "rps": res["rps"],
        "p50_ms": res["p50_ms"],
        "p99_ms": res["p99_ms"],
        "non_2xx": {k: v for k, v in res.get("statuses", {}).items() if not str(k).startswith("2")},
        "primary_us_per_request": per[0],
        "replica_us_per_request": per[1],
        "router_us_per_request": per[2],
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="wait-") as tmp:
        primary = RedisServer(Path(tmp) / "primary")
        replica = RedisServer(Path(tmp) / "replica", replica_of=primary.port)
        try:
            wait_synced(primary.port, 1)
            for wait in (0, 1):
                env = {"ROUTER_REDIS_WAIT_REPLICAS": str(wait), "ROUTER_RATE_LIMITS": "off"}
                router = Replica(primary.url, Path(tmp), wait, env)
                try:
                    await wait_ready([router])
                    ws = f"wg{wait}"
                    await asyncio.to_thread(setup_admission, primary.url, ws, args.agents)
                    for c in args.concurrency:
                        row = await asyncio.to_thread(
                            measure, primary, replica, router, ws, c, args.duration
                        )
                        row["wait_replicas"] = wait
                        print(json.dumps(row), flush=True)
                        rows.append(row)
                finally:
                    stop_replicas([router])
        finally:
            replica.stop()
            primary.stop()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[64, 8])
    p.add_argument("--agents", type=int, default=500, help="ready agents in the workspace")
    args = p.parse_args()
    rows = asyncio.run(run(args))
    print(f"machine: {platform.node()} {platform.machine()} Python {sys.version.split()[0]}")
    print("| WAIT | connections | req/s | p50 ms | p99 ms | primary µs/req | replica µs/req |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['wait_replicas']} | {r['concurrency']} | {r['rps']:.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['primary_us_per_request']} | {r['replica_us_per_request']} |"
        )


if __name__ == "__main__":
    main()
