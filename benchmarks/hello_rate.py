"""Hello world at a lifecycle step's HTTP request rate, for CPU per request.

The capacity search compares the router's CPU per lifecycle with what the
smallest aiohttp server (benchmarks/hello_server.py) spends on the same
requests: this runs it at a fixed rate, open loop (Poisson arrivals, as
benchmarks/lifecycle.py's gateway), `GET /` over one aiohttp-client session
with an unbounded keep-alive pool, as the lifecycle load's. `--connections`
opens that many connections first (the lifecycle load's HTTP pool), so hello
world holds a pool of the same size. Hello world's CPU is read at the window's
start and end (benchmarks/cpu_window.py), over the same window length as the
step's. As a generator (its own process) it prints one JSON object:

    .venv/bin/python -m benchmarks.hello_rate --url http://127.0.0.1:8081/ \\
        --rate 900 --duration 15 --cpu-pids hello=1234

`hello_phase()` starts hello_server.py, runs the generator and stops the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import aiohttp
import uvloop

from benchmarks.cpu_window import WindowCpu, format_pids, parse_pids, per_unit
from benchmarks.loadgen import percentile


class HelloLoad:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.cpu = WindowCpu(parse_pids(a.cpu_pids))
        self.lat: list[float] = []
        self.status: Counter[str] = Counter()
        self.rng = random.Random(a.seed)
        self.connections = 0
        self.start = self.end = 0.0

    async def _count_connection(self, *_: object) -> None:
        self.connections += 1

    async def get(self, s: aiohttp.ClientSession) -> None:
        t0 = time.perf_counter()
        try:
            async with s.get(self.a.url) as r:
                await r.read()
                status = str(r.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = type(exc).__name__
        t1 = time.perf_counter()
        if self.start <= t1 <= self.end:
            self.lat.append(t1 - t0)
            self.status[status] += 1

    async def run(self) -> dict[str, Any]:
        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(self._count_connection)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                         trace_configs=[trace],
                                         timeout=aiohttp.ClientTimeout(total=30)) as s:  # fmt: skip
            # as many requests at once as the pool should hold: each opens a connection
            await asyncio.gather(*(self.get(s) for _ in range(max(1, self.a.connections))))
            self.start = time.perf_counter() + self.a.warmup
            self.end = self.start + self.a.duration
            sampler = asyncio.create_task(self.cpu.run(self.start, self.end))
            tasks: set[asyncio.Task[None]] = set()
            next_t = time.perf_counter()
            while next_t < self.end:
                next_t += self.rng.expovariate(self.a.rate)
                delay = next_t - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                t = asyncio.create_task(self.get(s))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            await sampler
            if tasks:
                await asyncio.wait(tasks, timeout=30)
        n = sum(self.status.values())
        self.lat.sort()
        cpu = self.cpu.result()
        return {
            "rate": self.a.rate, "duration": self.a.duration, "requests": n,
            "requests_per_s": round(n / self.a.duration, 1), "status": dict(self.status),
            "connections": self.connections,
            "p50_ms": round(percentile(self.lat, 50) * 1000, 2),
            "p99_ms": round(percentile(self.lat, 99) * 1000, 2),
            "cpu_window": cpu, "cpu_us_per_request": per_unit(cpu, n),
        }  # fmt: skip


def hello_phase(rate: float, duration: float, warmup: float, connections: int) -> dict[str, Any]:
    """Hello world's CPU per request at `rate` requests a second (its own server and
    generator processes, stopped afterwards)."""
    from benchmarks.e2e.procs import stop_proc, wait_http
    from router.store.local import free_port
    from tests.support.procs import ROOT

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "hello_server.py"),
                               "--port", str(port)], cwd=ROOT)  # fmt: skip
    try:
        wait_http(url, timeout=60, proc=server)
        cmd = [sys.executable, "-m", "benchmarks.hello_rate", "--url", url,
               "--rate", str(rate), "--duration", str(duration), "--warmup", str(warmup),
               "--connections", str(connections),
               "--cpu-pids", format_pids({"hello": server.pid})]  # fmt: skip
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"hello generator failed:\n{out.stderr[-3000:]}")
        res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return res
    finally:
        stop_proc(server)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--connections", type=int, default=1, help="keep-alive pool to open first")
    p.add_argument("--cpu-pids", default="", help="name=pid,... read at the window's edges")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    uvloop.install()
    print(json.dumps(asyncio.run(HelloLoad(a).run())), flush=True)


if __name__ == "__main__":
    main()
