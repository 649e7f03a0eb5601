"""CPU accounting from /proc: per process, the whole machine, quiet waits."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.e2e.common import CLK_TCK


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) used so far by a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def system_cpu() -> tuple[float, float, float]:
    """(busy, steal, wall-clock x cores) seconds of the whole machine so far."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    v = [int(x) / CLK_TCK for x in parts]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
    return user + nice + system + irq + softirq, steal, sum(v[:8])


class CpuWindow:
    """CPU used by named processes and by everything else between start() and stop()."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.p0 = {k: proc_cpu(p) for k, p in self.pids.items()}
        self.s0 = system_cpu()

    def stop(self, reaped: dict[str, float] | None = None) -> dict[str, float]:
        """`reaped`: CPU seconds of processes that exited in the window (from rusage)."""
        wall = time.perf_counter() - self.t0
        p1 = {k: proc_cpu(p) for k, p in self.pids.items()}
        s1 = system_cpu()
        out = {k: round((p1[k] - self.p0[k]) / wall, 3) for k in self.pids}
        out.update({k: round(v / wall, 3) for k, v in (reaped or {}).items()})
        busy = (s1[0] - self.s0[0]) / wall
        out["other"] = round(max(0.0, busy - sum(out[k] for k in {*self.pids, *(reaped or {})})), 3)
        out["steal"] = round((s1[1] - self.s0[1]) / wall, 3)
        out["wall_s"] = round(wall, 3)
        return out


def background_cores(own: dict[str, int], seconds: float = 1.0) -> float:
    w = CpuWindow(own)
    w.start()
    time.sleep(seconds)
    return w.stop()["other"]


def cpu_share(seconds: float = 0.3) -> float:
    """Share of wall time a spinning thread gets: ~1.0 on an idle machine, less when
    other processes, or the hypervisor, take the cores."""
    t0, c0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        pass
    return (time.process_time() - c0) / (time.perf_counter() - t0)


def wait_quiet(own: dict[str, int], limit: float, max_wait: float) -> tuple[float, float]:
    """Waits (up to max_wait s) until other processes use < limit cores and a spinning
    thread gets >= 90% of a core; returns the last (other cores, spin share)."""
    deadline = time.monotonic() + max_wait
    while True:
        level = background_cores(own)
        share = cpu_share()
        if (level <= limit and share >= 0.9) or time.monotonic() >= deadline:
            return level, share
        print(
            f"  machine busy: other processes use {level:.2f} cores, a spinning thread "
            f"gets {100 * share:.0f}% of a core; waiting",
            flush=True,
        )
        time.sleep(2)
