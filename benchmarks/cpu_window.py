"""CPU of named processes over a load generator's measured window only.

A capacity step's whole run also connects thousands of desktops (each with a
signed token to verify), warms up and drains a tail: costs fixed per step, not
per lifecycle, that swamp a per-lifecycle figure taken over the whole step. The
generator knows when its window opens and closes, so it samples here: each
process's user + system CPU from /proc (all threads), the whole machine's busy
time (what the named processes do not account for is "other"), and optionally
Redis' own INFO (time inside commands, command count, its CPU counters).
It also reads how long each process was ready to run but waited for a CPU
(the scheduler's run-queue wait, /proc/<pid>/task/*/schedstat): on a machine
whose cores the routers, Redis and the generator share, that wait is part of
every latency measured, and none of it shows as a stalled event loop.

    --cpu-pids router0=1234,redis=5678       (the generator adds itself as "loadgen")
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from benchmarks.e2e.cpu import proc_cpu, system_cpu


def run_queue_wait(pid: int) -> float:
    """Seconds the process's threads have spent ready to run, waiting for a CPU."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def parse_pids(text: str) -> dict[str, int]:
    """`name=pid,...` -> {name: pid}; empty text -> {}."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, pid = part.partition("=")
        out[name] = int(pid)
    return out


def format_pids(pids: dict[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in pids.items())


SCRIPT_COMMANDS = {"fcall", "fcall_ro", "evalsha", "evalsha_ro", "eval", "eval_ro"}


async def _redis_counters(url: str) -> dict[str, float]:
    from redis.asyncio import Redis

    r = Redis.from_url(url)
    try:
        cmds = await r.info("commandstats")
        cpu = await r.info("cpu")
    finally:
        await r.aclose()
    # Commands a script calls are counted in commandstats twice: under their own
    # name and inside the script's time, so the sum over all commands overstates
    # Redis' time; the scripts' own entries do not (but leave out plain commands).
    scripts = [v for k, v in cmds.items()
               if k.removeprefix("cmdstat_").split("|")[0] in SCRIPT_COMMANDS]  # fmt: skip
    return {
        "commands_usec": sum(float(v["usec"]) for v in cmds.values()),
        "calls": sum(int(v["calls"]) for v in cmds.values()),
        "scripts_usec": sum(float(v["usec"]) for v in scripts),
        "script_calls": sum(int(v["calls"]) for v in scripts),
        "info_cpu_s": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
    }


class WindowCpu:
    """Samples at the window's start and end; `result()` gives CPU seconds and cores."""

    def __init__(self, pids: dict[str, int], redis_url: str = "") -> None:
        # the generator's own process: its CPU shows what the load itself costs
        self.pids = {**pids, "loadgen": os.getpid()}
        self.redis_url = redis_url
        self.samples: list[tuple[float, dict[str, float], tuple[float, float], dict[str, float]]]
        self.samples = []
        self.waits: list[dict[str, float]] = []

    async def sample(self) -> None:
        t = time.perf_counter()
        procs = {k: proc_cpu(p) for k, p in self.pids.items()}
        self.waits.append({k: run_queue_wait(p) for k, p in self.pids.items()})
        busy, steal, _ = system_cpu()
        redis = await _redis_counters(self.redis_url) if self.redis_url else {}
        self.samples.append((t, procs, (busy, steal), redis))

    async def run(self, start: float, end: float) -> None:
        """Samples at perf_counter() `start` and `end` (run it as a task)."""
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        await self.sample()
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        await self.sample()

    def result(self) -> dict[str, Any]:
        if len(self.samples) < 2:
            return {}
        (t0, p0, s0, r0), (t1, p1, s1, r1) = self.samples[:2]
        wall = t1 - t0
        cpu_s = {k: p1[k] - p0[k] for k in self.pids}
        other = max(0.0, (s1[0] - s0[0]) - sum(cpu_s.values()))
        out: dict[str, Any] = {
            "wall_s": round(wall, 3),
            "cpu_s": {k: round(v, 4) for k, v in cpu_s.items()},
            "cores": {k: round(v / wall, 3) for k, v in cpu_s.items()}
            | {"other": round(other / wall, 3), "steal": round((s1[1] - s0[1]) / wall, 3)},
        }
        if len(self.waits) >= 2:  # share of the window each process waited for a CPU
            w0, w1 = self.waits[:2]
            out["run_queue_wait"] = {k: round((w1[k] - w0[k]) / wall, 4) for k in self.pids}
        if r0:
            out["redis_info"] = {k: r1[k] - r0[k] for k in r0}
        return out


def per_unit(cpu: dict[str, Any], units: int) -> dict[str, Any]:
    """CPU µs per unit of work done in the window (a lifecycle, a request): the
    routers summed over replicas, Redis, the generator, each apart."""
    if not cpu or units <= 0:
        return {}
    s = cpu["cpu_s"]
    us: dict[str, Any] = {}
    routers = [v for k, v in s.items() if k.startswith("router")]
    if routers:
        us["router"] = round(1e6 * sum(routers) / units, 1)
    us |= {k: round(1e6 * v / units, 1) for k, v in s.items() if not k.startswith("router")}
    info = cpu.get("redis_info")
    if info:
        # all commands' time (a script's inner commands twice, see above); the scripts'
        us["redis_commands_double_counted"] = round(info["commands_usec"] / units, 1)
        us["redis_scripts"] = round(info["scripts_usec"] / units, 1)
        us["redis_calls"] = round(info["calls"] / units, 2)
        us["redis_script_calls"] = round(info["script_calls"] / units, 2)
    return us
