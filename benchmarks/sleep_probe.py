"""How late a process that does nothing wakes: the machine's own scheduling floor.

    python -m benchmarks.sleep_probe --duration 15

Sleeps 10 ms at a time (plain `time.sleep`, no event loop, nothing else to
run) and reports how late each wake-up came, with the CPU time the hypervisor
took from this machine's CPUs meanwhile (`steal` in /proc/stat). Run beside a
load test (benchmarks/lifecycle.py starts it for its window), it is the
baseline a latency tail is read against: whatever this idle process waits, any
request waits too, on top of its own work. On a 2-core machine shared by the
routers, Redis and the load generator that floor is not zero. Prints one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from benchmarks.loadgen import percentile


def steal_seconds() -> float:
    """CPU seconds stolen from this machine so far, over all its CPUs."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = f.readline().split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def probe(duration: float, every: float = 0.01) -> dict[str, float | int]:
    late: list[float] = []
    steal0, wall0 = steal_seconds(), time.perf_counter()
    end = wall0 + duration
    while (t0 := time.perf_counter()) < end:
        time.sleep(every)
        late.append(max(0.0, time.perf_counter() - t0 - every))
    wall = time.perf_counter() - wall0
    late.sort()
    n = len(late)
    return {
        "n": n,
        "p50_ms": round(percentile(late, 50) * 1000, 2),
        "p99_ms": round(percentile(late, 99) * 1000, 2),
        "max_ms": round(max(late, default=0.0) * 1000, 2),
        "late_5ms": round(sum(x > 0.005 for x in late) / max(1, n), 4),
        "steal_cores": round((steal_seconds() - steal0) / wall, 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--after", type=float, default=0.0, help="seconds to wait first")
    a = p.parse_args()
    time.sleep(a.after)
    print(json.dumps(probe(a.duration)))


if __name__ == "__main__":
    main()
