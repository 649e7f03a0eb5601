"""End-to-end benchmark of the contact router against its own baselines, in one command.

    .venv/bin/python benchmarks/e2e.py                       # ~2 min, prints a report
    .venv/bin/python benchmarks/e2e.py --md /tmp/e2e.md --json /tmp/e2e.json
    .venv/bin/python benchmarks/e2e.py --rounds 3 --profile /tmp/e2e-prof

What runs (every server and load generator is its own process on loopback):
  hello       baseline 1: benchmarks/hello_server.py (aiohttp + uvloop, one process)
  evalsha     baseline 2: EVALSHA of `return 1` via redis-py asyncio (benchmarks/evalsha.py)
  admission   POST /v1/workspaces/{ws}/contacts on `python -m router serve` (one process)
              with a private redis-server (router.store.local.LocalRedis); a pool of ready
              agents takes the first contacts, the rest queue
  freed       POST .../contacts/{cid}/complete: every agent is busy and has a queue of
              waiting contacts; each completion hands the agent its next contact inside
              the same script (agent-freed path)
Each HTTP path is driven at fixed concurrency by the aiohttp-client load generator
(benchmarks/loadgen.py) and, when installed, by wrk (apt-get install wrk). The load
generator, the server and redis-server share the machine's cores: the report gives
each one's CPU use and that of every other process during the measured window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import json
import math
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from router.runtime.settings import demo_token_spec
from router.store.local import LocalRedis, free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_SHARE = 0.40  # admission rps / hello-world rps, from the issue
TARGET_P99_MS = 10.0

# --------------------------------------------------------------------------- CPU


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


# --------------------------------------------------------------------------- processes


def wait_http(
    url: str,
    timeout: float = 30.0,
    proc: subprocess.Popen[bytes] | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    req = urllib.request.Request(url, headers=headers or {})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout} s")


def stop_proc(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def versions() -> dict[str, str]:
    import aiohttp
    import uvloop

    out = {
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "uvloop": uvloop.__version__,
        "redis-py": redis.__version__,
    }
    try:
        import hiredis

        out["hiredis"] = hiredis.__version__
    except ImportError:
        out["hiredis"] = "not installed"
    wrk = shutil.which("wrk")
    if wrk:
        res = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
        out["wrk"] = (res.stdout or res.stderr).split("Copyright")[0].strip()
    return out


def machine() -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "memory": mem,
        "kernel": platform.release(),
        "loadavg_at_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


# --------------------------------------------------------------------------- workspaces


def admission_config() -> dict[str, Any]:
    """tests/support/client.py small_config with offers that do not time out during a run."""
    return {
        "tiers": {"vip": {"priority_offset": 120}, "standard": {"priority_offset": 0}},
        "channels": {
            "voice": {"weight": 100, "offer_timeout": 3600, "wrap_up": 0},
            "chat": {"weight": 25, "offer_timeout": 3600, "wrap_up": 0},
        },
        "skills": ["cards", "loans"],
        "pools": {
            "cards": {"skills": [{"skill": "cards", "min": 1}], "channels": ["voice", "chat"]},
            "loans": {"skills": [{"skill": "loans", "min": 1}], "channels": ["voice", "chat"]},
        },
        "rules": [
            {"name": "loans", "when": {"intent": ["loan"]}, "stages": [{"pools": ["loans"]}]}
        ],
        "defaults": {"tier": "standard", "stages": [{"pools": ["cards"]}]},
    }


def freed_config(agents: int) -> dict[str, Any]:
    """One pool (and intent rule) per agent, so the loader knows which contact an agent
    is handed next: its own queue, in arrival order. Voice is auto-accepted with no
    wrap-up, so completing a contact frees the agent at once."""
    ids = [f"{i:03d}" for i in range(agents)]
    return {
        "tiers": {"standard": {"priority_offset": 0}},
        "channels": {
            "voice": {"weight": 100, "offer_timeout": 3600, "auto_accept": True, "wrap_up": 0}
        },
        "skills": [f"k{i}" for i in ids],
        "pools": {
            f"p{i}": {"skills": [{"skill": f"k{i}", "min": 1}], "channels": ["voice"]} for i in ids
        },
        "rules": [
            {"name": f"r{i}", "when": {"intent": [f"i{i}"]}, "stages": [{"pools": [f"p{i}"]}]}
            for i in ids
        ],
        "defaults": {"tier": "standard", "stages": []},
    }


async def _gather_chunks(coros: list[Any], chunk: int = 500) -> None:
    for i in range(0, len(coros), chunk):
        await asyncio.gather(*coros[i : i + chunk])


async def _setup(
    url: str,
    ws: str,
    cfg: dict[str, Any],
    agents: list[tuple[str, dict[str, int]]],
    contacts: list[tuple[str, str]],
) -> None:
    """Config, available agents, then contacts (id, intent) in order, through the engine."""
    from redis.asyncio import Redis

    from router.routing.engine import Engine
    from router.routing.model import AgentIn, AgentStateIn, ContactIn, Customer
    from router.routing.validation import parse_config

    client = Redis.from_url(url, decode_responses=True, max_connections=64, socket_timeout=60)
    engine = Engine(client)
    try:
        await engine.scripts.load_all(client)
        await engine.put_config(ws, parse_config(json.dumps(cfg).encode()), "admin:bench")

        async def agent(aid: str, skills: dict[str, int]) -> None:
            await engine.upsert_agent(ws, aid, AgentIn(skills=skills, capacity=100), "admin:bench")
            await engine.set_agent_state(ws, aid, AgentStateIn(state="available"), "admin:bench")

        await _gather_chunks([agent(a, s) for a, s in agents])
        # Contacts must be admitted in order (an agent's queue is then its chain in
        # order: ranks tie within a millisecond and ids sort in order), so each chunk
        # is one pipeline (the batcher flushes at 512) and chunks go one after another.
        for i in range(0, len(contacts), 500):
            await asyncio.gather(
                *(
                    engine.create_contact(
                        ws,
                        ContactIn(
                            id=cid,
                            channel="voice",
                            intent=intent,
                            customer=Customer(id="cu-" + cid),
                        ),
                        "gateway:bench",
                    )
                    for cid, intent in contacts[i : i + 500]
                )
            )
    finally:
        await engine.close()
        await client.aclose()


def setup_admission(url: str, ws: str, agents: int) -> None:
    asyncio.run(
        _setup(
            url, ws, admission_config(), [(f"adm-{i:05d}", {"cards": 5}) for i in range(agents)], []
        )
    )


def setup_freed(url: str, ws: str, agents: int, per_agent: int) -> None:
    contacts = [
        (f"{ws}-c-{a:04d}-{n:06d}", f"i{a:03d}") for n in range(per_agent) for a in range(agents)
    ]
    asyncio.run(
        _setup(
            url,
            ws,
            freed_config(agents),
            [(f"{ws}-a-{a:04d}", {f"k{a:03d}": 5}) for a in range(agents)],
            contacts,
        )
    )


def check_freed(r: redis.Redis, ws: str, agents: int) -> None:
    """Every agent holds its contact 0, and contact 1 heads its queue."""
    tag = "{ws:" + ws + "}"
    for a in range(agents):
        held = [k for k in r.hkeys(f"{tag}:a:{ws}-a-{a:04d}") if k.startswith("h:")]
        head = r.zrange(f"{tag}:q:p{a:03d}:voice", 0, 0)
        if held != [f"h:{ws}-c-{a:04d}-000000"] or head != [f"{ws}-c-{a:04d}-000001"]:
            raise RuntimeError(f"freed setup: agent {a} holds {held}, queue head {head}")


# --------------------------------------------------------------------------- load runs


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
    res = json.loads(raw["stdout"].strip().splitlines()[-1])
    res.update(cpu=raw["cpu"], redis=raw["redis"], loadgen_cpu_total_s=raw["loadgen_cpu_total_s"])
    return res


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


# --------------------------------------------------------------------------- the run


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tools = self._tools()
        self.results: list[dict[str, Any]] = []
        self.local: LocalRedis | None = None
        self.hello: subprocess.Popen[bytes] | None = None
        self.router: subprocess.Popen[bytes] | None = None

    def _tools(self) -> list[str]:
        want = self.args.loadgen
        has_wrk = shutil.which("wrk") is not None
        if want == "wrk" and not has_wrk:
            raise SystemExit("wrk is not installed (apt-get install -y wrk)")
        if want == "auto":
            return ["python", "wrk"] if has_wrk else ["python"]
        return ["python", "wrk"] if want == "both" else [want]

    def log(self, msg: str) -> None:
        print(msg, flush=True)

    def start(self) -> None:
        self.local = LocalRedis()
        self.r = redis.Redis.from_url(self.local.url, decode_responses=True, socket_timeout=120)
        self.redis_version = self.r.info("server")["redis_version"]
        self.hello_port = free_port()
        self.hello = subprocess.Popen(
            [PY, str(HERE / "hello_server.py"), "--port", str(self.hello_port)], cwd=ROOT
        )
        wait_http(f"http://127.0.0.1:{self.hello_port}/", timeout=180, proc=self.hello)
        self.router_port = free_port()
        self.router = self.start_router(self.router_port)
        self.own = {
            "hello": self.hello.pid,
            "router": self.router.pid,
            "redis": self.local.proc.pid,
        }

    def stop(self) -> None:
        stop_proc(self.router)
        stop_proc(self.hello)
        if self.local:
            self.local.stop()

    def _lr(self, server: str) -> LoadRun:
        return LoadRun(
            self.r, {server: self.own[server], "redis": self.own["redis"]}, self.args.duration
        )

    def attempt(
        self, prepare: Callable[[], Any], load: Callable[[Any], dict[str, Any]], label: str
    ) -> dict[str, Any]:
        """prepare() then load() until the run was not disturbed by other processes
        (at most 1 + --retries times); returns the least disturbed run."""
        a = self.args
        tries: list[dict[str, Any]] = []
        for _ in range(a.retries + 1):
            ctx = prepare()
            bg, share = wait_quiet(self.own, a.quiet_cores, a.quiet_wait)
            res = load(ctx)
            res["background_before"] = bg
            res["spin_share_before"] = round(share, 2)
            res["noise_cores"] = round(res["cpu"]["other"] + res["cpu"]["steal"], 3)
            res["noisy"] = res["noise_cores"] > a.max_noise
            tries.append(res)
            if not res["noisy"] or len(tries) > a.retries:
                break
            self.log(
                f"  {label}: other processes took {res['noise_cores']:.2f} cores during "
                f"the run ({res.get('rps')} req/s); retrying"
            )
        best = min(tries, key=lambda r: r["noise_cores"])
        best["attempts"] = len(tries)
        best["rejected"] = [
            {k: r.get(k) for k in ("rps", "p99_ms", "noise_cores")} for r in tries if r is not best
        ]
        return best

    def admission_agents(self, hello_rps: float | None) -> int:
        """Ready agents for the admission runs: --agents, or (auto) as many as 15% of
        what hello world served in a run's time, so that a share of the contacts is
        matched and the rest queue (37% matched if admission runs at 40% of hello world;
        every contact matched if it runs at 15% or less). The report gives the share."""
        a = self.args
        if a.agents > 0:
            return int(a.agents)
        if not hello_rps:
            return 2000
        return max(200, min(20000, math.ceil(0.15 * hello_rps * (a.duration + a.warmup))))

    def record(self, rnd: int, path: str, tool: str, res: dict[str, Any], **extra: Any) -> None:
        res.update(round=rnd, path=path, tool=res.get("tool", tool), loader=tool, **extra)
        self.results.append(res)
        self.log(
            f"  {path:<9} {tool:<6} {res['rps']:>9.1f} req/s  p50 {res['p50_ms']:.2f} ms  "
            f"p99 {res['p99_ms']:.2f} ms  cpu {res['cpu']}  noise {res['noise_cores']}"
            f"{' (NOISY)' if res['noisy'] else ''}"
        )

    def round(self, rnd: int) -> None:
        a = self.args
        if a.only:
            self.only_round(rnd, set(a.only.split(",")))
            return
        url = self.local.url if self.local else ""
        self.r.flushall(asynchronous=True)
        hello_url = f"http://127.0.0.1:{self.hello_port}/"
        router = f"http://127.0.0.1:{self.router_port}"
        hello_rps: dict[str, float] = {}
        adm_rps: dict[str, float] = {}
        self.log(f"round {rnd}: hello world")
        for tool in self.tools:

            def hello_load(_: Any, tool: str = tool) -> dict[str, Any]:
                if tool == "python":
                    return python_load(self._lr("hello"), "get", hello_url, a, [])
                wrk_load(self._lr("hello"), "get.lua", hello_url, 2, a, [], duration=a.warmup)
                return wrk_load(self._lr("hello"), "get.lua", hello_url, 2, a, [])

            res = self.attempt(lambda: None, hello_load, f"hello/{tool}")
            hello_rps[tool] = res["rps"]
            self.record(rnd, "hello", tool, annotate(res, "hello"))

        self.log(f"round {rnd}: EVALSHA return 1")

        def evalsha_load(_: Any) -> dict[str, Any]:
            raw = self._lr("router").run(
                [
                    PY,
                    str(HERE / "evalsha.py"),
                    "--url",
                    url,
                    "--concurrency",
                    str(a.concurrency),
                    "--duration",
                    str(a.evalsha_duration),
                    "--warmup",
                    str(min(a.warmup, 1.0)),
                ],
                marks=False,
            )
            ev: dict[str, Any] = json.loads(raw["stdout"].strip().splitlines()[-1])
            ev.update(cpu=raw["cpu"], redis=raw["redis"])
            return ev

        ev = self.attempt(lambda: None, evalsha_load, "evalsha")
        ev.update(round=rnd, path="evalsha")
        self.results.append(ev)
        for k in ("sequential", "concurrent", "batched"):
            self.log(
                f"  evalsha {k:<10} {ev[k]['ops_per_s']:>9.1f} ops/s  "
                f"p50 {ev[k]['p50_us']} us  p99 {ev[k]['p99_us']} us  "
                f"noise {ev['noise_cores']}"
            )

        self.log(f"round {rnd}: admission (POST contacts)")
        for tool in self.tools:
            n = 0
            agents = self.admission_agents(hello_rps.get(tool))

            def adm_prepare(tool: str = tool, agents: int = agents) -> str:
                nonlocal n
                n += 1
                ws = f"adm{rnd}{tool[0]}{n}"
                self.r.sadd("router:workspaces", ws)
                setup_admission(url, ws, agents)
                wait_http_auth(f"{router}/v1/workspaces/{ws}")
                return ws

            def adm_load(ws: str, tool: str = tool, agents: int = agents) -> dict[str, Any]:
                if tool == "python":
                    res = python_load(
                        self._lr("router"),
                        "create",
                        f"{router}/v1/workspaces/{ws}",
                        a,
                        ["--prefix", ws],
                    )
                else:
                    res = wrk_load(
                        self._lr("router"),
                        "create.lua",
                        router,
                        2,
                        a,
                        [f"/v1/workspaces/{ws}", "demo-gateway", ws],
                    )
                tag = "{ws:" + ws + "}"
                queued = int(self.r.zcard(f"{tag}:qa:cards"))
                matched = agents - int(self.r.zcard(f"{tag}:r:cards:voice"))
                res["outcome"] = {
                    "matched": matched,
                    "queued": queued,
                    "agents": agents,
                    "matched_share": round(matched / max(1, matched + queued), 3),
                }
                self.r.srem("router:workspaces", ws)  # stop the router's timer polls of it
                return res

            res = self.attempt(adm_prepare, adm_load, f"admission/{tool}")
            adm_rps[tool] = res["rps"]
            self.record(rnd, "admission", tool, annotate(res, "router"))

        self.log(f"round {rnd}: agent freed (POST complete -> next contact)")
        for tool in self.tools:
            n = 0
            # Enough waiting contacts that no chain runs out: no path outruns hello world,
            # and completing is assumed to be at most 3x as fast as admitting.
            bound = (
                min(x for x in (hello_rps.get(tool), 3 * adm_rps.get(tool, 0)) if x)
                if hello_rps.get(tool) or adm_rps.get(tool)
                else a.freed_rps_bound
            )
            per_agent = (
                a.per_agent
                or math.ceil(bound * (a.duration + a.warmup + 1) * 1.1 / a.concurrency) + 5
            )

            def freed_prepare(tool: str = tool, per_agent: int = per_agent) -> str:
                nonlocal n
                n += 1
                ws = f"fr{rnd}{tool[0]}{n}"
                self.log(f"  setting up {a.concurrency} agents x {per_agent} waiting contacts")
                t0 = time.perf_counter()
                self.r.sadd("router:workspaces", ws)
                setup_freed(url, ws, a.concurrency, per_agent)
                check_freed(self.r, ws, a.concurrency)
                self.log(f"  set up in {time.perf_counter() - t0:.1f} s")
                wait_http_auth(f"{router}/v1/workspaces/{ws}")
                return ws

            def freed_load(ws: str, tool: str = tool, per_agent: int = per_agent) -> dict[str, Any]:
                if tool == "python":
                    res = python_load(
                        self._lr("router"),
                        "complete",
                        f"{router}/v1/workspaces/{ws}",
                        a,
                        [
                            "--token",
                            "demo-admin",
                            "--prefix",
                            f"{ws}-c",
                            "--agent-prefix",
                            f"{ws}-a",
                            "--per-agent",
                            str(per_agent),
                        ],
                    )
                else:
                    res = wrk_load(
                        self._lr("router"),
                        "complete.lua",
                        router,
                        a.concurrency,
                        a,
                        [
                            f"/v1/workspaces/{ws}",
                            "demo-admin",
                            f"{ws}-c",
                            f"{ws}-a",
                            str(per_agent),
                        ],
                    )
                res["outcome"] = {"per_agent": per_agent, "agents": a.concurrency}
                self.r.srem("router:workspaces", ws)
                return res

            res = self.attempt(freed_prepare, freed_load, f"freed/{tool}")
            self.record(rnd, "freed", tool, annotate(res, "router"))

        if a.paired:
            self.paired(rnd, hello_rps.get("python") or a.freed_rps_bound)
        if a.service_time > 0:
            self.service_time(rnd)

    def service_time(self, rnd: int) -> None:
        """One request at a time (concurrency 1): the fastest and typical request show
        each path's own cost with little queueing, and the minimum and 10th percentile
        hardly move when the host takes the CPU away now and then."""
        a = self.args
        url = self.local.url if self.local else ""
        hello_url = f"http://127.0.0.1:{self.hello_port}/"
        router = f"http://127.0.0.1:{self.router_port}"
        one = argparse.Namespace(**{**vars(a), "concurrency": 1, "duration": a.service_time})
        tool = "wrk" if "wrk" in self.tools else "python"
        self.log(f"round {rnd}: service time (concurrency 1, {tool})")
        seq: dict[str, dict[str, Any]] = {}
        for path in ("hello", "admission", "freed"):
            n = 0
            # one agent's chain must outlast the run: bounded by hello world, and assumed
            # at most 3x as fast as admission
            top = min(
                seq.get("hello", {}).get("rps") or 3000,
                3 * (seq.get("admission", {}).get("rps") or 1000),
            )
            per_agent = math.ceil(top * (a.service_time + a.warmup + 1) * 1.2) + 5

            def prepare(path: str = path, per_agent: int = per_agent) -> str:
                nonlocal n
                n += 1
                ws = f"st{rnd}{path[0]}{n}"
                if path == "hello":
                    return ws
                self.r.sadd("router:workspaces", ws)
                if path == "admission":
                    setup_admission(url, ws, 200)
                else:
                    setup_freed(url, ws, 1, per_agent)
                    check_freed(self.r, ws, 1)
                wait_http_auth(f"{router}/v1/workspaces/{ws}")
                return ws

            def load(ws: str, path: str = path, per_agent: int = per_agent) -> dict[str, Any]:
                server = "hello" if path == "hello" else "router"
                lr = LoadRun(
                    self.r, {server: self.own[server], "redis": self.own["redis"]}, a.service_time
                )
                base = f"/v1/workspaces/{ws}"
                if tool == "wrk":
                    if path == "hello":
                        res = wrk_load(lr, "get.lua", hello_url, 1, one, [])
                    elif path == "admission":
                        res = wrk_load(lr, "create.lua", router, 1, one, [base, "demo-gateway", ws])
                    else:
                        res = wrk_load(
                            lr,
                            "complete.lua",
                            router,
                            1,
                            one,
                            [base, "demo-admin", f"{ws}-c", f"{ws}-a", str(per_agent)],
                        )
                else:
                    if path == "hello":
                        res = python_load(lr, "get", hello_url, one, [])
                    elif path == "admission":
                        res = python_load(lr, "create", router + base, one, ["--prefix", ws])
                    else:
                        res = python_load(
                            lr,
                            "complete",
                            router + base,
                            one,
                            [
                                "--token",
                                "demo-admin",
                                "--prefix",
                                f"{ws}-c",
                                "--agent-prefix",
                                f"{ws}-a",
                                "--per-agent",
                                str(per_agent),
                            ],
                        )
                self.r.srem("router:workspaces", ws)
                return annotate(res, server)

            res = self.attempt(prepare, load, f"service-time/{path}")
            seq[path] = res
            self.record(rnd, f"c1-{path}", tool, res)

    def only_round(self, rnd: int, phases: set[str]) -> None:
        """--only: just the named phases of a round (paired and c1 size themselves)."""
        self.r.flushall(asynchronous=True)
        if "paired" in phases:
            self.paired(rnd, self.args.freed_rps_bound)
        if "c1" in phases:
            self.service_time(rnd)

    def paired(self, rnd: int, hello_rps: float) -> None:
        """Hello world and a router path in alternating slices from one Python loader."""
        a = self.args
        url = self.local.url if self.local else ""
        hello_url = f"http://127.0.0.1:{self.hello_port}/"
        router = f"http://127.0.0.1:{self.router_port}"
        self.log(f"round {rnd}: paired runs ({a.slice:g} s slices alternating with hello world)")
        per_agent = math.ceil(hello_rps * (a.duration + a.warmup + 2) * 1.1 / a.concurrency) + 5
        for path in ("admission", "freed"):
            n = 0
            agents = self.admission_agents(hello_rps)

            def prepare(path: str = path, agents: int = agents) -> str:
                nonlocal n
                n += 1
                ws = f"pa{rnd}{path[0]}{n}"
                self.r.sadd("router:workspaces", ws)
                if path == "admission":
                    setup_admission(url, ws, agents)
                else:
                    setup_freed(url, ws, a.concurrency, per_agent)
                    check_freed(self.r, ws, a.concurrency)
                wait_http_auth(f"{router}/v1/workspaces/{ws}")
                return ws

            def load(ws: str, path: str = path) -> dict[str, Any]:
                mode = "create" if path == "admission" else "complete"
                extra = (
                    ["--prefix", ws]
                    if path == "admission"
                    else [
                        "--token",
                        "demo-admin",
                        "--prefix",
                        f"{ws}-c",
                        "--agent-prefix",
                        f"{ws}-a",
                        "--per-agent",
                        str(per_agent),
                    ]
                )
                cmd = [
                    PY,
                    str(HERE / "loadgen.py"),
                    mode,
                    "--url",
                    f"{router}/v1/workspaces/{ws}",
                    "--hello-url",
                    hello_url,
                    "--slice",
                    str(a.slice),
                    "--concurrency",
                    str(a.concurrency),
                    "--duration",
                    str(a.duration),
                    "--warmup",
                    str(a.warmup),
                    *extra,
                ]
                lr = LoadRun(
                    self.r,
                    {
                        "router": self.own["router"],
                        "hello": self.own["hello"],
                        "redis": self.own["redis"],
                    },
                    2 * a.duration,
                )
                raw = lr.run(cmd, marks=False)
                out = json.loads(raw["stdout"].strip().splitlines()[-1])
                res = dict(out[mode])
                res.update(
                    tool="aiohttp-client",
                    hello=out["hello"],
                    paired_ratio=out["ratio"],
                    exhausted=out["exhausted"],
                    cpu=raw["cpu"],
                    redis=raw["redis"],
                )
                self.r.srem("router:workspaces", ws)
                return res

            res = self.attempt(prepare, load, f"paired-{path}")
            res["server_cpu_us_per_req"] = res["redis_cpu_us_per_req"] = float("nan")
            self.record(rnd, f"paired-{path}", "python", res)
            self.log(
                f"    hello in the same run: {res['hello']['rps']} req/s, p99 "
                f"{res['hello']['p99_ms']} ms -> ratio {res['paired_ratio']}"
            )

    def start_router(self, port: int, stats: Path | None = None) -> subprocess.Popen[bytes]:
        """`python -m router serve`; with `stats`, under benchmarks/profiled_router.py."""
        # the admin token completes for thousands of agent desktops here: no per-token limit
        env = dict(
            os.environ,
            REDIS_URL=self.local.url if self.local else "",
            ROUTER_TOKENS=demo_token_spec(),
            ROUTER_RATE_LIMIT_OVERRIDES="admin=off",
        )
        env.pop("ROUTER_HOST", None)
        env.pop("ROUTER_PORT", None)
        head = [str(HERE / "profiled_router.py"), str(stats)] if stats else ["-m", "router"]
        cmd = [PY, *head, "serve", "--host", "127.0.0.1", "--port", str(port)]
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL if self.args.quiet_router else None
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", timeout=180, proc=proc)
        except BaseException:
            stop_proc(proc)
            raise
        return proc

    def profile_hello(self, out: Path) -> None:
        _profile_hello(self, out)

    def profile(self, out: Path) -> None:
        """Profiles a router of its own during one admission and one agent-freed run
        (Python loader): py-spy sampling and/or cProfile. Not measured runs: profilers
        take CPU and slow the router down (cProfile by about 2x)."""
        a = self.args
        url = self.local.url if self.local else ""
        out.mkdir(parents=True, exist_ok=True)
        adm = [r["rps"] for r in self.results if r.get("path") == "admission"]
        bound = 3 * max(adm) if adm else a.freed_rps_bound
        profilers = ["py-spy", "cprofile"] if a.profiler == "both" else [a.profiler]
        if "cprofile" in profilers:
            self.profile_hello(out)
        for profiler in profilers:
            for path in ("admission", "freed"):
                self.r.flushall(asynchronous=True)
                port = free_port()
                stats_file = out / f"{path}.pstats"
                router = self.start_router(port, stats_file if profiler == "cprofile" else None)
                base_url = f"http://127.0.0.1:{port}"
                try:
                    ws = f"prof{path[0]}"
                    self.r.sadd("router:workspaces", ws)
                    per_agent = 0
                    if path == "admission":
                        setup_admission(url, ws, self.admission_agents(None))
                        wait_http_auth(f"{base_url}/v1/workspaces/{ws}")
                    else:
                        per_agent = math.ceil(
                            bound * (a.duration + a.warmup + 1) * 1.1 / a.concurrency
                        )
                        self.log(f"  setting up {a.concurrency} agents x {per_agent} contacts")
                        setup_freed(url, ws, a.concurrency, per_agent)
                        wait_http_auth(f"{base_url}/v1/workspaces/{ws}")
                    base = f"{base_url}/v1/workspaces/{ws}"
                    raw_file = out / f"{path}.pyspy.txt"
                    own = {"router": router.pid, "redis": self.own["redis"]}
                    wait_quiet(own, a.quiet_cores, a.quiet_wait)
                    spy = None
                    if profiler == "py-spy":
                        spy = subprocess.Popen(
                            [
                                "py-spy",
                                "record",
                                "--pid",
                                str(router.pid),
                                "--rate",
                                "100",
                                "--format",
                                "raw",
                                "--output",
                                str(raw_file),
                                "--duration",
                                str(math.ceil(a.duration + a.warmup + 1)),
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                        time.sleep(0.5)
                    hooks: dict[str, Callable[[], None]] = {}
                    if profiler == "cprofile":  # profile the measured window only
                        hooks = {
                            "on_start": functools.partial(router.send_signal, signal.SIGUSR1),
                            "on_end": functools.partial(router.send_signal, signal.SIGUSR2),
                        }
                    lr = LoadRun(self.r, own, a.duration, **hooks)
                    if path == "admission":
                        res = python_load(lr, "create", base, a, ["--prefix", ws])
                    else:
                        res = python_load(
                            lr,
                            "complete",
                            base,
                            a,
                            [
                                "--token",
                                "demo-admin",
                                "--prefix",
                                f"{ws}-c",
                                "--agent-prefix",
                                f"{ws}-a",
                                "--per-agent",
                                str(per_agent),
                            ],
                        )
                    if spy is not None:
                        try:
                            spy.wait(60)
                        except subprocess.TimeoutExpired:
                            spy.kill()
                            spy.wait()
                finally:
                    if profiler == "cprofile":
                        time.sleep(1)  # let the router write its stats
                    stop_proc(router)
                annotate(res, "router")
                text = [
                    f"{path} under {profiler}: {res['rps']} req/s (p50 {res['p50_ms']} ms, "
                    f"p99 {res['p99_ms']} ms); CPU cores {res['cpu']}; router "
                    f"{res['server_cpu_us_per_req']} µs/req, redis "
                    f"{res['redis_cpu_us_per_req']} µs/req",
                    "",
                    redis_breakdown(res["redis"], res["requests"] or 1),
                    "",
                ]
                if profiler == "py-spy" and raw_file.exists():
                    text.append(summarize_profile(raw_file))
                if profiler == "cprofile" and stats_file.exists():
                    text.append(summarize_pstats(stats_file, res["requests"]))
                name = out / f"{path}.{profiler}.summary.txt"
                name.write_text("\n".join(text))
                self.log("\n".join(text))
                self.results.append({"path": f"profile-{path}-{profiler}", **res})


def _profile_hello(bench: Bench, out: Path) -> None:
    """cProfile of the hello-world server over one run: its call counts per request are
    the floor the router's are compared with."""
    a = bench.args
    port = free_port()
    stats_file = out / "hello.pstats"
    proc = subprocess.Popen(
        [PY, str(HERE / "hello_server.py"), "--port", str(port), "--profile-out", str(stats_file)],
        cwd=ROOT,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_http(url, timeout=180, proc=proc)
        lr = LoadRun(
            bench.r,
            {"hello": proc.pid, "redis": bench.own["redis"]},
            a.duration,
            on_start=functools.partial(proc.send_signal, signal.SIGUSR1),
            on_end=functools.partial(proc.send_signal, signal.SIGUSR2),
        )
        res = python_load(lr, "get", url, a, [])
        time.sleep(1)
    finally:
        stop_proc(proc)
    text = f"hello under cprofile: {res['rps']} req/s\n\n"
    if stats_file.exists():
        text += summarize_pstats(stats_file, res["requests"])
    (out / "hello.cprofile.summary.txt").write_text(text)
    bench.log(text)


def redis_breakdown(info: dict[str, Any], requests: int, top: int = 12) -> str:
    """Redis time per request by command (commands run inside scripts included)."""
    stats = info.get("commandstats", {})
    lines = [
        "Redis time per request by command (script-invoked commands included; "
        "evalsha's own time includes theirs):"
    ]
    for cmd, v in sorted(stats.items(), key=lambda kv: -kv[1]["usec"])[:top]:
        lines.append(
            f"  {cmd:<14} {v['calls'] / requests:6.2f} calls/req "
            f"{v['usec'] / requests:8.1f} µs/req  ({v['usec'] / max(1, v['calls']):.1f} "
            f"µs/call)"
        )
    return "\n".join(lines)


def wait_http_auth(url: str, timeout: float = 15.0) -> None:
    """Until the router knows the workspace (its config cache refreshes every second)."""
    wait_http(url, timeout, headers={"Authorization": "Bearer demo-supervisor"})


# --------------------------------------------------------------------------- profile summary


def summarize_profile(raw_file: Path, top: int = 25) -> str:
    """Self and inclusive sample shares by function, and self time by library, from
    py-spy's collapsed-stack output."""
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    lib: Counter[str] = Counter()
    total = 0
    for line in raw_file.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        leaf = frames[-1]
        self_t[_short(leaf)] += n
        for f in set(map(_short, frames)):
            incl[f] += n
        lib[_library(leaf)] += n
    if not total:
        return "no samples"
    lines = [
        f"samples: {total} (busy time only; idle waits are not sampled)",
        "",
        "self time by library:",
    ]
    lines += [f"  {100 * n / total:5.1f}%  {k}" for k, n in lib.most_common()]
    lines += ["", f"top {top} functions by self time:"]
    lines += [f"  {100 * n / total:5.1f}%  {k}" for k, n in self_t.most_common(top)]
    lines += ["", f"top {top} functions by inclusive time:"]
    lines += [f"  {100 * n / total:5.1f}%  {k}" for k, n in incl.most_common(top)]
    return "\n".join(lines) + "\n"


# Plain (non-coroutine) functions that run a known number of times per event: their
# call counts per request are exact whatever the machine's load.
COUNTED = (
    ("HTTP responses written", "_writelines", "aiohttp/http_writer.py"),
    ("bearer tokens hashed", "token_hash", "router/runtime/settings.py"),
    ("routes planned (rules)", "plan_route", "router/routing/rules.py"),
    ("contacts rendered", "contact_out", "router/routing/engine.py"),
    ("Redis pipelines packed", "pack_commands", "redis/asyncio/connection.py"),
    ("Redis commands packed (pipelined or not)", "pack_command", "redis/asyncio/connection.py"),
    ("Redis replies parsed", "read_response", "redis/_parsers/hiredis.py"),
    ("pub/sub messages handled", "handle_message", "redis/asyncio/client.py"),
    ("logging.getLogger calls", "getLogger", "logging/__init__.py"),
    ("timer-claim polls", "claim_once", "sla/timers.py"),
)


def summarize_pstats(stats_file: Path, requests: int = 0, top: int = 30) -> str:
    """Own (tottime) and cumulative CPU time by function from a cProfile dump, and exact
    call counts per request; C functions such as socket writes appear by name."""
    import pstats

    st = pstats.Stats(str(stats_file))
    rows = st.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in rows.values()) or 1.0
    counts: list[str] = []
    if requests:
        calls = sum(v[1] for v in rows.values())
        counts = [
            f"per request ({requests} requests in the window; exact counts):",
            f"  {calls / requests:8.1f}  Python function calls (coroutine resumptions "
            "count as calls)",
        ]
        for label, func, where in COUNTED:
            n = sum(v[1] for k, v in rows.items() if k[2] == func and where in k[0])
            counts.append(f"  {n / requests:8.2f}  {label} ({func})")
        counts.append("")

    def name(k: tuple[str, int, str]) -> str:
        file, line, func = k
        for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
            if marker in file:
                file = file.split(marker, 1)[1]
                break
        return f"{func} ({file}:{line})" if file != "~" else func

    lines = [
        *counts,
        f"cProfile: {total:.2f} s CPU in total (includes the profiler's overhead)",
        "",
        f"top {top} by own time:  % | calls | own s",
    ]
    by_own = sorted(rows.items(), key=lambda kv: -kv[1][2])[:top]
    lines += [f"  {100 * v[2] / total:5.1f}%  {v[1]:>9}  {v[2]:7.2f}  {name(k)}" for k, v in by_own]
    lines += ["", f"top {top} by cumulative time (% of total own time)"]
    by_cum = sorted(rows.items(), key=lambda kv: -kv[1][3])
    shown = 0
    for k, v in by_cum:
        if k[2] in (
            "<module>",
            "run_app",
            "_run_code",
            "_run_module_as_main",
            "main",
            "_serve",
            "run",
            "runctx",
            "run_until_complete",
            "run_forever",
            "exec",
            "<built-in method builtins.exec>",
        ):
            continue
        lines.append(f"  {100 * v[3] / total:5.1f}%  {v[1]:>9}  {v[3]:7.2f}  {name(k)}")
        shown += 1
        if shown >= top:
            break
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    # py-spy raw frames look like "func (path/to/file.py:123)"
    name, _, rest = frame.partition(" (")
    path = rest.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def _library(frame: str) -> str:
    _, _, rest = frame.partition(" (")
    if "site-packages/" in rest:
        return rest.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/router/" in rest:
        return "router"
    if "/sla/" in rest:
        return "sla"
    if "/lib/python3" in rest:
        return "stdlib: " + rest.split("/lib/python3", 1)[1].split("/", 2)[1]
    return rest.split(":", 1)[0] or frame


# --------------------------------------------------------------------------- report


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def summarize(bench: Bench) -> dict[str, Any]:
    """Medians over rounds per (path, loader) and the ratios to hello world."""
    out: dict[str, Any] = {"paths": {}, "ratios": {}, "evalsha": {}, "paired": {}, "c1": {}}
    for path in ("hello", "admission", "freed"):
        for tool in bench.tools:
            rows = [r for r in bench.results if r.get("path") == path and r.get("loader") == tool]
            if not rows:
                continue
            out["paths"][f"{path}/{tool}"] = {
                "rps": _median(rows, "rps"),
                "p50_ms": _median(rows, "p50_ms"),
                "p90_ms": _median(rows, "p90_ms"),
                "p99_ms": _median(rows, "p99_ms"),
                "rps_min": min(r["rps"] for r in rows),
                "rps_max": max(r["rps"] for r in rows),
                "server_cores": statistics.median(
                    r["cpu"].get("router", r["cpu"].get("hello", 0)) for r in rows
                ),
                "redis_cores": statistics.median(r["cpu"]["redis"] for r in rows),
                "loadgen_cores": statistics.median(r["cpu"]["loadgen"] for r in rows),
                "other_cores": statistics.median(r["cpu"]["other"] for r in rows),
                "server_cpu_us_per_req": _median(rows, "server_cpu_us_per_req"),
                "redis_cpu_us_per_req": _median(rows, "redis_cpu_us_per_req"),
                "rounds": len(rows),
            }
    for tool in bench.tools:
        h = out["paths"].get(f"hello/{tool}")
        for path in ("admission", "freed"):
            p = out["paths"].get(f"{path}/{tool}")
            if h and p:
                out["ratios"][f"{path}/{tool}"] = round(p["rps"] / h["rps"], 3)
    for path in ("admission", "freed"):
        rows = [r for r in bench.results if r.get("path") == f"paired-{path}"]
        if rows:
            out["paired"][path] = {
                "ratio": statistics.median(r["paired_ratio"] for r in rows),
                "rps": _median(rows, "rps"),
                "p50_ms": _median(rows, "p50_ms"),
                "p99_ms": _median(rows, "p99_ms"),
                "hello_rps": statistics.median(r["hello"]["rps"] for r in rows),
                "hello_p99_ms": statistics.median(r["hello"]["p99_ms"] for r in rows),
                "ratios": [r["paired_ratio"] for r in rows],
            }
    for path in ("hello", "admission", "freed"):
        rows = [r for r in bench.results if r.get("path") == f"c1-{path}"]
        if rows:
            out["c1"][path] = {
                k: _median(rows, k) for k in ("rps", "min_ms", "p10_ms", "p50_ms", "p99_ms")
            }
            out["c1"][path]["loader"] = rows[0]["loader"]
    evs = [r for r in bench.results if r.get("path") == "evalsha"]
    for k in ("sequential", "concurrent", "batched"):
        if evs:
            out["evalsha"][k] = {
                "ops_per_s": statistics.median(e[k]["ops_per_s"] for e in evs),
                "p50_us": statistics.median(e[k]["p50_us"] for e in evs),
                "p99_us": statistics.median(e[k]["p99_us"] for e in evs),
                "concurrency": evs[0][k]["concurrency"],
            }
    return out


def markdown(bench: Bench, meta: dict[str, Any], summary: dict[str, Any]) -> str:
    a = bench.args
    m, v = meta["machine"], meta["versions"]
    L = [
        "## Run",
        "",
        f"- date: {m['date']}",
        f"- machine: nproc={m['nproc']}, {m['cpu']}, {m['memory']}, kernel {m['kernel']}, "
        f"loadavg at start {m['loadavg_at_start']}",
        f"- Redis {meta['redis_version']} (private redis-server, no persistence); "
        + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- command: `{meta['command']}`",
        f"- concurrency {a.concurrency}, {a.duration:g} s measured after {a.warmup:g} s warm-up, "
        f"{a.rounds} round(s) (medians; rps range in brackets); admission: "
        f"{'auto' if a.agents <= 0 else a.agents} ready agents (one voice contact each; "
        f"see the per-run table for the matched share)",
        "",
        "## Throughput and latency",
        "",
        "| path | loader | req/s | p50 ms | p90 ms | p99 ms | vs hello | server CPU (cores) "
        "| server µs/req | redis CPU | redis µs/req | loader CPU | other procs CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, p in summary["paths"].items():
        path, tool = key.split("/")
        ratio = summary["ratios"].get(key)
        rng = f" [{p['rps_min']:.0f}-{p['rps_max']:.0f}]" if p["rounds"] > 1 else ""
        L.append(
            f"| {path} | {tool} | {p['rps']:.0f}{rng} | {p['p50_ms']:.2f} | {p['p90_ms']:.2f} "
            f"| {p['p99_ms']:.2f} | {'' if ratio is None else f'{100 * ratio:.0f}%'} "
            f"| {p['server_cores']:.2f} | {p['server_cpu_us_per_req']:.0f} "
            f"| {p['redis_cores']:.2f} | {p['redis_cpu_us_per_req']:.0f} "
            f"| {p['loadgen_cores']:.2f} | {p['other_cores']:.2f} |"
        )
    L += [
        "",
        "## Ratios and target",
        "",
        f"Target: admission ≥ {100 * TARGET_SHARE:.0f}% of hello world with p99 < "
        f"{TARGET_P99_MS:g} ms.",
        "",
        "| ratio | loader | value | p99 ms | target met |",
        "|---|---|---:|---:|---|",
    ]
    for key, ratio in summary["ratios"].items():
        path, tool = key.split("/")
        p99 = summary["paths"][key]["p99_ms"]
        met = ""
        if path == "admission":
            met = "yes" if ratio >= TARGET_SHARE and p99 < TARGET_P99_MS else "no"
        L.append(f"| {path} / hello | {tool} | {100 * ratio:.1f}% | {p99:.2f} | {met} |")
    for path, p in summary["paired"].items():
        met = ""
        if path == "admission":
            met = "yes" if p["ratio"] >= TARGET_SHARE and p["p99_ms"] < TARGET_P99_MS else "no"
        L.append(
            f"| {path} / hello, paired slices (hello {p['hello_rps']:.0f} req/s, "
            f"{path} {p['rps']:.0f} req/s) | python | {100 * p['ratio']:.1f}% "
            f"| {p['p99_ms']:.2f} | {met} |"
        )
    if summary["c1"]:
        h = summary["c1"].get("hello")
        L += [
            "",
            "## One request at a time (concurrency 1)",
            "",
            "| path | loader | req/s | min ms | p10 ms | p50 ms | p99 ms | p10 vs hello |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for path, c in summary["c1"].items():
            rel = f"{c['p10_ms'] / h['p10_ms']:.1f}x" if h and h["p10_ms"] else ""
            L.append(
                f"| {path} | {c['loader']} | {c['rps']:.0f} | {c['min_ms']:.3f} "
                f"| {c['p10_ms']:.3f} | {c['p50_ms']:.3f} | {c['p99_ms']:.2f} | {rel} |"
            )
    if summary["evalsha"]:
        L += [
            "",
            "## EVALSHA `return 1` (redis-py asyncio, hiredis, uvloop)",
            "",
            "| mode | callers | ops/s | p50 µs | p99 µs |",
            "|---|---:|---:|---:|---:|",
        ]
        for k, e in summary["evalsha"].items():
            L.append(
                f"| {k} | {e['concurrency']} | {e['ops_per_s']:.0f} | {e['p50_us']:.0f} "
                f"| {e['p99_us']:.0f} |"
            )
    L += [
        "",
        "## Redis INFO per run",
        "",
        "| round | path | loader | instantaneous_ops_per_sec (mid-run) | EVALSHA calls/s "
        "| EVALSHA µs/call | commands/request | connections opened | used_memory after |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in bench.results:
        if r.get("path") not in ("admission", "freed", "evalsha"):
            continue
        ri = r["redis"]
        secs = r["cpu"]["wall_s"]
        per_req = ""
        if r.get("requests"):
            per_req = f"{ri['total_commands_processed'] / r['requests']:.1f}"
        L.append(
            f"| {r['round']} | {r['path']} | {r.get('loader', 'redis-py')} "
            f"| {ri['instantaneous_ops_per_sec']} | {ri['evalsha_calls'] / secs:.0f} "
            f"| {ri['evalsha_usec_per_call']:.1f} | {per_req} | {ri.get('connections_opened', '')} "
            f"| {ri['used_memory_human']} |"
        )
    outcomes = [
        r
        for r in bench.results
        if r.get("path") in ("admission", "freed", "paired-admission", "paired-freed")
    ]
    L += [
        "",
        "## Per run",
        "",
        "| round | path | loader | req/s | p99 ms | errors / non-2xx | outcome "
        "| before: other procs cores, spin share | during: other procs + steal cores "
        "| attempts |",
        "|---:|---|---|---:|---:|---|---|---|---|---|",
    ]
    for r in [
        x
        for x in bench.results
        if x.get("path") in ("hello", "admission", "freed", "paired-admission", "paired-freed")
    ]:
        errs = dict(r.get("errors") or {})
        bad = {k: v for k, v in (r.get("statuses") or {}).items() if not k.startswith("2")}
        errs.update(bad)
        out = r.get("outcome", {})
        if r.get("path", "").startswith("paired-"):
            oc = (
                f"hello in the same run: {r['hello']['rps']:.0f} req/s, p99 "
                f"{r['hello']['p99_ms']:.2f} ms; ratio {100 * r['paired_ratio']:.1f}%"
            )
        elif r in outcomes and r["path"] == "admission":
            oc = (
                f"{out['matched']} matched, {out['queued']} queued "
                f"({100 * out['matched_share']:.0f}% matched)"
            )
        elif r in outcomes:
            oc = f"{out['per_agent']} contacts/agent; ran out: {r.get('exhausted')}"
        else:
            oc = ""
        L.append(
            f"| {r['round']} | {r['path']} | {r['loader']} | {r['rps']:.0f} "
            f"| {r['p99_ms']:.2f} | {errs or 'none'} | {oc} "
            f"| {r.get('background_before', 0):.2f}, {r.get('spin_share_before', 0):.2f} "
            f"| {r['noise_cores']:.2f}{' NOISY' if r['noisy'] else ''} "
            f"| {r['attempts']} |"
        )
    return "\n".join(L) + "\n"


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument(
        "--evalsha-duration", type=float, default=5.0, help="seconds per EVALSHA mode (three modes)"
    )
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument(
        "--agents",
        type=int,
        default=0,
        help="ready agents in the admission workspace, one voice contact each "
        "(0: 15%% of what hello world served in a run's time)",
    )
    p.add_argument(
        "--per-agent",
        type=int,
        default=0,
        help="agent-freed: waiting contacts per agent (default: sized from hello rps)",
    )
    p.add_argument(
        "--freed-rps-bound",
        type=float,
        default=8000.0,
        help="agent-freed: assumed top rps when no hello run sizes the queues",
    )
    p.add_argument(
        "--loadgen",
        choices=("auto", "python", "wrk", "both"),
        default="auto",
        help="auto: the aiohttp-client loader, and wrk too when installed",
    )
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--only", help="comma list of phases to run instead of a full round: paired, c1")
    p.add_argument(
        "--no-paired",
        dest="paired",
        action="store_false",
        help="skip the paired runs (hello world and a router path in alternating "
        "slices from one loader process)",
    )
    p.add_argument("--slice", type=float, default=1.0, help="paired runs: seconds per slice")
    p.add_argument(
        "--service-time",
        type=float,
        default=5.0,
        help="seconds of each concurrency-1 run (0: skip them)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="before each run wait up to this long for other processes to calm down",
    )
    p.add_argument(
        "--quiet-cores",
        type=float,
        default=0.25,
        help="'calm': other processes use fewer cores than this",
    )
    p.add_argument(
        "--max-noise",
        type=float,
        default=0.35,
        help="a run during which other processes (and steal) took more cores than this is repeated",
    )
    p.add_argument("--retries", type=int, default=2, help="repeats of a disturbed run")
    p.add_argument(
        "--profile", type=Path, help="also profile a router (own process) into this folder"
    )
    p.add_argument("--profiler", choices=("py-spy", "cprofile", "both"), default="both")
    p.add_argument("--json", type=Path, help="write all results as JSON here")
    p.add_argument("--md", type=Path, help="write the markdown report here")
    p.add_argument("--quiet-router", action="store_true", help="hide the router's log")
    args = p.parse_args(argv)

    # SIGTERM (and SIGINT, which background jobs ignore) stop the run with cleanup.
    saved = {sig: signal.signal(sig, _interrupted) for sig in (signal.SIGTERM, signal.SIGINT)}
    bench = Bench(args)
    meta: dict[str, Any] = {
        "machine": machine(),
        "versions": versions(),
        "command": " ".join(
            [
                os.path.relpath(PY, ROOT),
                os.path.relpath(__file__, ROOT),
                *(sys.argv[1:] if argv is None else argv),
            ]
        ),
    }
    try:
        bench.start()
        meta["redis_version"] = bench.redis_version
        for rnd in range(1, args.rounds + 1):
            bench.round(rnd)
        if args.profile:
            bench.profile(args.profile)
    except Exception:  # report what was measured before the failure
        import traceback

        traceback.print_exc()
        meta["failed"] = traceback.format_exc(limit=3)
    finally:
        bench.stop()
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    summary = summarize(bench)
    report = markdown(bench, meta, summary)
    print()
    print(report)
    doc = {"meta": meta, "summary": summary, "results": bench.results}
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1, default=str))
    if args.md:
        args.md.write_text(report)
    return doc


if __name__ == "__main__":
    main()
