"""What a per-token rate-limit check costs, against a private redis-server.

    .venv/bin/python benchmarks/ratelimit_overhead.py [--requests 4000] [--concurrency 64]

1. The check alone (`RateLimiter.hit`): sequential latency, and CPU per check
   with many requests in flight, through the engine's ScriptBatcher (one
   pipeline per loop tick) and, for comparison, as a direct EVALSHA each.
2. End to end: an authenticated GET (one Redis read) through the full
   middleware stack over loopback HTTP, limits on and off; the client runs in
   the same process, so the difference is the limiter's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

import aiohttp
import uvloop
from aiohttp.test_utils import TestServer

from router.api.app import create_app
from router.api.appkeys import ENGINE, METRICS, SHARDS
from router.api.ratelimit import COUNT_LUA, RateLimiter
from router.runtime.settings import Settings, Token, demo_token_spec
from router.store.local import LocalRedis
from router.store.scripts import Script

AG = {"Authorization": "Bearer demo-agent"}


def _settings(url: str, limits: str) -> Settings:
    return Settings.from_env(
        {"ROUTER_TOKENS": demo_token_spec(), "ROUTER_RATE_LIMITS": limits,
         "ROUTER_METRICS_GROUP": uuid.uuid4().hex},
        redis_url=url,
    )  # fmt: skip


async def _check_alone(url: str, n: int, conc: int) -> dict[str, float]:
    app = create_app(_settings(url, "agent=1000000/second"))
    server = TestServer(app)
    await server.start_server()  # runs startup: the Redis client and the engine
    try:
        limiter = RateLimiter({"agent": "1000000/second"}, {})
        limiter.bind(app[ENGINE].batcher, app[METRICS])
        token = Token("bench", "agent")
        for _ in range(200):
            await limiter.hit(token)
        lat = []
        for _ in range(n // 4):
            t = time.perf_counter()
            await limiter.hit(token)
            lat.append(time.perf_counter() - t)

        async def many(fn: Any) -> float:
            sem = asyncio.Semaphore(conc)

            async def one() -> None:
                async with sem:
                    await fn()

            c0 = time.process_time()
            await asyncio.gather(*(one() for _ in range(n)))
            return (time.process_time() - c0) / n

        script = Script(COUNT_LUA)  # the same script, one call per check, unbatched
        key = f"router:rl:bench:{uuid.uuid4().hex}"
        batched = await many(lambda: limiter.hit(token))
        direct = await many(lambda: script(keys=[key], args=[60, 1], client=app[SHARDS].single))
        return {
            "sequential_p50_us": statistics.median(lat) * 1e6,
            "sequential_p99_us": sorted(lat)[int(len(lat) * 0.99)] * 1e6,
            "cpu_per_check_batched_us": batched * 1e6,
            "cpu_per_check_direct_us": direct * 1e6,
        }
    finally:
        await server.close()


async def _end_to_end(url: str, limits: str, n: int, conc: int) -> tuple[float, float]:
    app = create_app(_settings(url, limits))
    server = TestServer(app)
    await server.start_server()
    ws = "bench" + uuid.uuid4().hex[:6]
    base = str(server.make_url(f"/v1/workspaces/{ws}/agents/agent-desktop"))  # its own
    try:
        async with aiohttp.ClientSession(headers=AG) as http:
            sem = asyncio.Semaphore(conc)

            async def one() -> None:
                async with sem, http.get(base) as r:
                    await r.read()
                    assert r.status in (404, 200), r.status

            await asyncio.gather(*(one() for _ in range(300)))
            c0, t0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*(one() for _ in range(n)))
            return (time.process_time() - c0) / n * 1e6, n / (time.perf_counter() - t0)
    finally:
        await server.close()


async def main(n: int, conc: int, rounds: int) -> None:
    redis = LocalRedis()
    try:
        alone = await _check_alone(redis.url, n, conc)
        for k, v in alone.items():
            print(f"{k:28} {v:8.1f}")
        on, off = [], []
        for _ in range(rounds):  # interleaved, medians: the machine is shared
            off.append(await _end_to_end(redis.url, "off", n, conc))
            on.append(await _end_to_end(redis.url, "agent=1000000/second", n, conc))
        for name, runs in (("limits off", off), ("limits on", on)):
            cpu = statistics.median(r[0] for r in runs)
            rps = statistics.median(r[1] for r in runs)
            print(f"end to end, {name:10}: {cpu:6.1f} us CPU/request, {rps:7.0f} req/s")
    finally:
        redis.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=4000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    uvloop.run(main(a.requests, a.concurrency, a.rounds))
