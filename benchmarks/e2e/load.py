"""Load runs: Redis INFO around a run, the aiohttp-client load generator and wrk."""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from benchmarks.e2e.common import HERE, PY, ROOT
from benchmarks.e2e.cpu import CpuWindow


def redis_info(r: redis.Redis) -> dict[str, Any]:
    info = r.info("all")
    ev = info.get("cmdstat_evalsha", {})
    return {
        "used_memory": info["used_memory"],
        "used_memory_human": info["used_memory_human"],
        "total_commands_processed": info["total_commands_processed"],
        "evalsha_calls": ev.get("calls", 0),
        "evalsha_usec_per_call": ev.get("usec_per_call", 0.0),
        "instantaneous_ops_per_sec": info["instantaneous_ops_per_sec"],
        # connections opened since CONFIG RESETSTAT (the run's start): a redis-py
        # connection costs the client milliseconds to set up
        "connections_opened": info.get("total_connections_received", 0),
        # commands run by scripts are counted too: where a script's time goes
        "commandstats": {
            k[len("cmdstat_") :]: {"calls": v["calls"], "usec": v["usec"]}
            for k, v in info.items()
            if k.startswith("cmdstat_")
        },
    }


class LoadRun:
    """One load-generator process, with CPU and Redis sampled over its measured window."""

    def __init__(
        self,
        r: redis.Redis,
        pids: dict[str, int],
        duration: float,
        on_start: Callable[[], None] | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self.r = r
        self.pids = pids
        self.duration = duration
        self.on_start = on_start or (lambda: None)
        self.on_end = on_end or (lambda: None)

    def _sample_mid(self, out: dict[str, Any]) -> None:
        time.sleep(self.duration / 2)
        with contextlib.suppress(redis.RedisError):
            out["instantaneous_ops_per_sec"] = self.r.info("stats")["instantaneous_ops_per_sec"]

    def run(self, cmd: list[str], marks: bool) -> dict[str, Any]:
        self.r.config_resetstat()
        rusage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
        assert proc.stdout is not None
        window = CpuWindow({**self.pids, "loadgen": proc.pid})
        mid: dict[str, Any] = {}
        cpu: dict[str, float] | None = None
        sampler = threading.Thread(target=self._sample_mid, args=(mid,))
        lines: list[str] = []
        if marks:  # the Python load generator says when its measured window opens and closes
            for line in proc.stdout:
                if line.startswith('{"event": "start"'):
                    self.on_start()
                    window.start()
                    sampler.start()
                elif line.startswith('{"event": "end"'):
                    cpu = window.stop()
                    self.on_end()
                    break
                else:
                    lines.append(line)
            lines += proc.stdout.readlines()
        else:  # wrk: the window is the process' life; its CPU comes from rusage
            window.start()
            sampler.start()
            lines = proc.stdout.readlines()
            proc.wait()
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = (ru.ru_utime + ru.ru_stime) - (rusage0.ru_utime + rusage0.ru_stime)
            cpu = window.stop({"loadgen": used})
        err = proc.stderr.read() if proc.stderr else ""
        proc.wait()
        if sampler.is_alive() or sampler.ident is not None:
            sampler.join()
        rusage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0 or cpu is None:
            raise RuntimeError(f"{cmd[:3]} exited {proc.returncode}: {err[-2000:]}")
        info = redis_info(self.r)
        info["instantaneous_ops_per_sec"] = mid.get("instantaneous_ops_per_sec")
        return {
            "stdout": "".join(lines),
            "cpu": cpu,
            "redis": info,
            "loadgen_cpu_total_s": round(
                (rusage1.ru_utime + rusage1.ru_stime) - (rusage0.ru_utime + rusage0.ru_stime), 2
            ),
        }


def python_load(
    lr: LoadRun, mode: str, url: str, args: argparse.Namespace, extra: list[str]
) -> dict[str, Any]:
    cmd = [
        PY,
        str(HERE / "loadgen.py"),
        mode,
        "--url",
        url,
        "--concurrency",
        str(args.concurrency),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        *extra,
    ]
    raw = lr.run(cmd, marks=True)
    res: dict[str, Any] = json.loads(raw["stdout"].strip().splitlines()[-1])
    res.update(cpu=raw["cpu"], redis=raw["redis"], loadgen_cpu_total_s=raw["loadgen_cpu_total_s"])
    return res


def complete_flags(ws: str, per_agent: int) -> list[str]:
    """The Python loader's flags for the agent-freed stream of workspace `ws`: agent *i*
    completes contacts `{ws}-c-i-000000`, `-000001`, ... in order."""
    return [
        "--token", "demo-admin",
        "--prefix", f"{ws}-c",
        "--agent-prefix", f"{ws}-a",
        "--per-agent", str(per_agent),
    ]  # fmt: skip


def complete_wrk_args(ws: str, per_agent: int) -> list[str]:
    """The same stream for wrk/complete.lua."""
    return [f"/v1/workspaces/{ws}", "demo-admin", f"{ws}-c", f"{ws}-a", str(per_agent)]


def wrk_load(
    lr: LoadRun,
    script: str,
    url: str,
    threads: int,
    args: argparse.Namespace,
    extra: list[str],
    duration: float | None = None,
) -> dict[str, Any]:
    d = args.duration if duration is None else duration
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{args.concurrency}",
        f"-d{d:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(HERE / "wrk" / script),
        url,
    ]
    if extra:
        cmd += ["--", *extra]
    raw = lr.run(cmd, marks=False)
    line = next((x for x in raw["stdout"].splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no report:\n{raw['stdout'][-2000:]}")
    w = json.loads(line[len("WRKJSON ") :])
    secs = w["duration_us"] / 1e6
    errors = {k[4:]: v for k, v in w.items() if k.startswith("err_") and v}
    return {
        "tool": "wrk",
        "concurrency": args.concurrency,
        "threads": threads,
        "duration_s": round(secs, 3),
        "requests": w["requests"],
        "rps": round(w["requests"] / secs, 1),
        "min_ms": w.get("min_us", float("nan")) / 1000,
        "p10_ms": w.get("p10_us", float("nan")) / 1000,
        "p50_ms": w["p50_us"] / 1000,
        "p90_ms": w["p90_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        "max_ms": w["max_us"] / 1000,
        "errors": errors,
        "exhausted": bool(w["exhausted"]),
        "cpu": raw["cpu"],
        "redis": raw["redis"],
        "loadgen_cpu_total_s": raw["loadgen_cpu_total_s"],
    }


def annotate(res: dict[str, Any], server: str) -> dict[str, Any]:
    rps = res["rps"] or 1.0
    res["server_cpu_us_per_req"] = round(res["cpu"][server] * 1e6 / rps, 1)
    if "redis" in res["cpu"]:
        res["redis_cpu_us_per_req"] = round(res["cpu"]["redis"] * 1e6 / rps, 1)
    return res
