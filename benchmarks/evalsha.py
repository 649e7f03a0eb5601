"""Baseline 2: bare EVALSHA round trips of `return 1` through redis-py asyncio.

    python benchmarks/evalsha.py --url redis://127.0.0.1:6379/0 --duration 10

Three ways, each for `--duration` seconds after `--warmup`, client settings
as the router's (hiredis parser, decode_responses=True, uvloop):
  sequential   one caller awaiting one EVALSHA at a time
  concurrent   `--concurrency` callers, one connection each from the pool
  batched      `--concurrency` callers through router.store.batch.ScriptBatcher
               (the router's path: a loop tick's calls in pipelines of 16)
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop
from redis.asyncio import Redis

from router.store.shards import Shards

SCRIPT = "return 1"


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile (same as benchmarks/loadgen.py)."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


async def timed(
    call: Callable[[], Awaitable[Any]], concurrency: int, warmup: float, duration: float
) -> dict[str, float | int]:
    latencies: list[float] = []
    start = time.perf_counter()
    warm_end = start + warmup
    end = warm_end + duration

    async def worker() -> None:
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            await call()
            t1 = time.perf_counter()
            if warm_end <= t1 <= end:
                latencies.append(t1 - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    latencies.sort()
    return {
        "concurrency": concurrency,
        "ops": len(latencies),
        "ops_per_s": round(len(latencies) / duration, 1),
        "p50_us": round(percentile(latencies, 50) * 1e6, 1),
        "p99_us": round(percentile(latencies, 99) * 1e6, 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from router.store.batch import ScriptBatcher
    from router.store.scripts import Script

    client = Redis.from_url(
        args.url, decode_responses=True, max_connections=args.concurrency + 8, socket_timeout=60
    )
    try:
        script = client.register_script(SCRIPT)
        script.sha = await client.script_load(SCRIPT)
        sha = script.sha
        assert await client.evalsha(sha, 0) == 1
        out: dict[str, Any] = {}

        async def bare() -> Any:
            return await client.evalsha(sha, 0)

        out["sequential"] = await timed(bare, 1, args.warmup, args.duration)
        out["concurrent"] = await timed(bare, args.concurrency, args.warmup, args.duration)
        batcher = ScriptBatcher(Shards(client))
        routed = Script(SCRIPT)  # the router's own script type, as its calls use

        async def batched() -> Any:
            return await batcher.call(routed, (), ())

        out["batched"] = await timed(batched, args.concurrency, args.warmup, args.duration)
        await batcher.close()
        return out
    finally:
        await client.aclose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0)
    args = p.parse_args()
    json.dump(uvloop.run(run(args)), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
