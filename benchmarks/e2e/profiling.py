"""Profiles (py-spy or cProfile) of the router and hello world, and their summaries."""

from __future__ import annotations

import argparse
import functools
import math
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.e2e.common import HERE, PY, ROOT
from benchmarks.e2e.cpu import wait_quiet
from benchmarks.e2e.load import LoadRun, annotate, complete_flags, python_load
from benchmarks.e2e.procs import stop_proc, wait_http, wait_http_auth
from benchmarks.e2e.report import redis_breakdown
from benchmarks.e2e.workspaces import setup_admission, setup_freed
from router.store.local import free_port

if TYPE_CHECKING:
    from benchmarks.e2e.bench import Bench


def profile(bench: Bench, out: Path) -> None:
    """Profiles a router of its own during one admission and one agent-freed run
    (Python loader): py-spy sampling and/or cProfile. Not measured runs: profilers
    take CPU and slow the router down (cProfile by about 2x)."""
    a = bench.args
    out.mkdir(parents=True, exist_ok=True)
    adm = [r["rps"] for r in bench.results if r.get("path") == "admission"]
    bound = 3 * max(adm) if adm else a.freed_rps_bound
    profilers = ["py-spy", "cprofile"] if a.profiler == "both" else [a.profiler]
    if "cprofile" in profilers:
        profile_hello(bench, out)
    for profiler in profilers:
        for path in ("admission", "freed"):
            bench.r.flushall(asynchronous=True)
            res = _profiled_run(bench, out, profiler, path, bound)
            _write_summary(bench, out, profiler, path, res)


def _profiled_run(
    bench: Bench, out: Path, profiler: str, path: str, bound: float
) -> dict[str, Any]:
    """One load run against a router of its own under `profiler`."""
    a = bench.args
    port = free_port()
    stats_file = out / f"{path}.pstats"
    router = bench.start_router(port, stats_file if profiler == "cprofile" else None)
    base_url = f"http://127.0.0.1:{port}"
    try:
        ws = f"prof{path[0]}"
        per_agent = _profile_workspace(bench, path, ws, base_url, bound)
        base = f"{base_url}/v1/workspaces/{ws}"
        own = {"router": router.pid, "redis": bench.own["redis"]}
        wait_quiet(own, a.quiet_cores, a.quiet_wait)
        spy = None
        if profiler == "py-spy":
            spy = _start_py_spy(router.pid, out / f"{path}.pyspy.txt", a)
        hooks: dict[str, Callable[[], None]] = {}
        if profiler == "cprofile":  # profile the measured window only
            hooks = {
                "on_start": functools.partial(router.send_signal, signal.SIGUSR1),
                "on_end": functools.partial(router.send_signal, signal.SIGUSR2),
            }
        lr = LoadRun(bench.r, own, a.duration, **hooks)
        if path == "admission":
            res = python_load(lr, "create", base, a, ["--prefix", ws])
        else:
            res = python_load(lr, "complete", base, a, complete_flags(ws, per_agent))
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
    return annotate(res, "router")


def _profile_workspace(bench: Bench, path: str, ws: str, base_url: str, bound: float) -> int:
    """Sets up the profiled run's workspace; returns its contacts per agent (freed)."""
    a = bench.args
    bench.r.sadd("router:workspaces", ws)
    per_agent = 0
    if path == "admission":
        setup_admission(bench.redis_url, ws, bench.admission_agents(None))
    else:
        per_agent = math.ceil(bound * (a.duration + a.warmup + 1) * 1.1 / a.concurrency)
        bench.log(f"  setting up {a.concurrency} agents x {per_agent} contacts")
        setup_freed(bench.redis_url, ws, a.concurrency, per_agent)
    wait_http_auth(f"{base_url}/v1/workspaces/{ws}")
    return per_agent


def _start_py_spy(pid: int, raw_file: Path, a: argparse.Namespace) -> subprocess.Popen[bytes]:
    """py-spy sampling `pid` at 100 Hz into collapsed stacks, for the run's length."""
    spy = subprocess.Popen(
        [
            "py-spy", "record",
            "--pid", str(pid),
            "--rate", "100",
            "--format", "raw",
            "--output", str(raw_file),
            "--duration", str(math.ceil(a.duration + a.warmup + 1)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    return spy


def _write_summary(bench: Bench, out: Path, profiler: str, path: str, res: dict[str, Any]) -> None:
    """The run's figures, Redis time by command and the profile's summary, to a file
    beside the profile and to the log."""
    text = [
        f"{path} under {profiler}: {res['rps']} req/s (p50 {res['p50_ms']} ms, "
        f"p99 {res['p99_ms']} ms); CPU cores {res['cpu']}; router "
        f"{res['server_cpu_us_per_req']} µs/req, redis "
        f"{res['redis_cpu_us_per_req']} µs/req",
        "",
        redis_breakdown(res["redis"], res["requests"] or 1),
        "",
    ]
    raw_file, stats_file = out / f"{path}.pyspy.txt", out / f"{path}.pstats"
    if profiler == "py-spy" and raw_file.exists():
        text.append(summarize_profile(raw_file))
    if profiler == "cprofile" and stats_file.exists():
        text.append(summarize_pstats(stats_file, res["requests"]))
    name = out / f"{path}.{profiler}.summary.txt"
    name.write_text("\n".join(text))
    bench.log("\n".join(text))
    bench.results.append({"path": f"profile-{path}-{profiler}", **res})


def profile_hello(bench: Bench, out: Path) -> None:
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
