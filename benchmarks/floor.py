"""Where the admission path's floor is: the router's `POST /contacts` against
the same exchange served with less and less of the router's work, each on its
own process, in one run, with wrk at the same concurrency.

    .venv/bin/python -m benchmarks.floor [--duration 8] [--concurrency 64] [--agents 20000]
                                         [--profile]

Runs, in order, on one private redis-server: hello world (`hello_server.py`),
`floor_server.py` variants `http` (the route, the body read, the router's own
answer to one create sent back as is), `codec` (+ msgspec decode and encode),
`redis` (+ one script call through the router's `ScriptBatcher`), `routes`
(+ the router's whole route table and two middlewares), then the real router
(`python -m router serve`, rate limits on) with `--agents` ready agents. For
each: requests/s, latency, and the server's and Redis' CPU per request over
wrk's run (from /proc), with the server's CPU as a multiple of hello world's.
The gap between `routes` and the router is the router's own work (tokens,
rules, records, metrics); what `routes` costs is aiohttp, msgspec and redis-py
doing the least this exchange needs. `--profile` runs the router once more
under py-spy and splits its CPU a request by concern (`benchmarks/concerns.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis

from benchmarks import concerns
from benchmarks.e2e.common import HERE, PY, ROOT
from benchmarks.e2e.load import LoadRun, annotate, wrk_load
from benchmarks.e2e.procs import machine, stop_proc, wait_http
from benchmarks.e2e.workspaces import setup_admission
from router.runtime.settings import demo_token_spec
from router.store.local import LocalRedis, free_port

WS = "floor"
GATEWAY_UNCAPPED = "gateway=1000000/second"


def _server(
    cmd: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="floor-")) / "server.log"
    with log.open("wb") as err:  # the child keeps its own descriptor
        proc = subprocess.Popen([*cmd, "--port", str(port)], cwd=ROOT, env=env, stderr=err)
    print(f"  {Path(cmd[1]).name if cmd[1] != '-m' else cmd[2]}: pid {proc.pid}, log {log}")
    return proc, port


def _run(
    r: redis.Redis, a: argparse.Namespace, proc: subprocess.Popen[bytes], redis_pid: int,
    script: str, url: str, extra: list[str], profile: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One variant under wrk; with `profile`, py-spy samples the server over the
    measured window (raw stacks to that file; its own CPU is another process')."""
    pids = {"server": proc.pid, "redis": redis_pid}
    wrk_load(LoadRun(r, pids, a.warmup), script, url, 2, a, extra, duration=a.warmup)
    time.sleep(0.5)
    spy = None
    if profile is not None:
        spy = subprocess.Popen(
            [a.py_spy, "record", "-p", str(proc.pid), "-d", str(max(1, int(a.duration) - 1)),
             "-r", "200", "-f", "raw", "-o", str(profile), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    res = wrk_load(LoadRun(r, pids, a.duration), script, url, 2, a, extra)
    if spy is not None and spy.wait(timeout=60) != 0:
        raise RuntimeError(f"py-spy exited {spy.returncode} (it needs ptrace: run as root)")
    return annotate(res, "server")


def _sample(port: int) -> bytes:
    """The router's answer to one create, for the floor servers to send back."""
    body = json.dumps(
        {"id": "floor-sample", "channel": "voice", "intent": "card",
         "customer": {"id": "cu-1", "tier": "standard"}}
    ).encode()  # fmt: skip
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/workspaces/{WS}/contacts", data=body, method="POST",
        headers={"Authorization": "Bearer demo-gateway", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as resp:
        return bytes(resp.read())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--agents", type=int, default=20000, help="ready agents for the router run")
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--profile", action="store_true",
        help="run the router once more under py-spy and print its CPU by concern "
        "(benchmarks/concerns.py); py-spy is not a dependency: pip install py-spy",
    )  # fmt: skip
    p.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    a = p.parse_args(argv)
    local = LocalRedis()
    r = redis.Redis.from_url(local.url, decode_responses=True)
    rows: list[dict[str, Any]] = []
    sample_file = Path(tempfile.mkdtemp(prefix="floor-")) / "sample.json"
    base = f"/v1/workspaces/{WS}"
    profiled: tuple[Path, float] | None = None
    try:
        # the gateway token's limit (5,000/s) far above the run: every request is
        # served and still counted by the limiter (a refused one costs far less)
        env = {**os.environ, "REDIS_URL": local.url, "ROUTER_TOKENS": demo_token_spec(),
               "ROUTER_LOG_LEVEL": "WARNING",
               "ROUTER_RATE_LIMIT_OVERRIDES": GATEWAY_UNCAPPED}  # fmt: skip
        router, rport = _server([PY, "-m", "router", "serve", "--host", "127.0.0.1"], env)
        try:
            wait_http(f"http://127.0.0.1:{rport}/readyz", timeout=180, proc=router)
            setup_admission(local.url, WS, a.agents)
            time.sleep(1.5)  # the router's config cache
            sample_file.write_bytes(_sample(rport))
            hello, hport = _server([PY, str(HERE / "hello_server.py")])
            try:
                wait_http(f"http://127.0.0.1:{hport}/", proc=hello)
                res = _run(r, a, hello, local.proc.pid, "get.lua", f"http://127.0.0.1:{hport}/", [])
                rows.append({"variant": "hello", **res})
            finally:
                stop_proc(hello)
            for variant in ("http", "codec", "redis", "routes"):
                cmd = [PY, str(HERE / "floor_server.py"), "--variant", variant,
                       "--redis", local.url, "--sample", str(sample_file)]  # fmt: skip
                srv, sport = _server(cmd)
                try:
                    wait_http(f"http://127.0.0.1:{sport}/ready", proc=srv)
                    url = f"http://127.0.0.1:{sport}"
                    res = _run(r, a, srv, local.proc.pid, "create.lua", url,
                               [base, "demo-gateway", f"fl-{variant}"])  # fmt: skip
                    rows.append({"variant": variant, **res})
                finally:
                    stop_proc(srv)
            res = _run(r, a, router, local.proc.pid, "create.lua", f"http://127.0.0.1:{rport}",
                       [base, "demo-gateway", "fl-router"])  # fmt: skip
            rows.append({"variant": "router", **res})
            if a.profile:
                raw = sample_file.with_name("router.pyspy")
                res = _run(r, a, router, local.proc.pid, "create.lua",
                           f"http://127.0.0.1:{rport}", [base, "demo-gateway", "fl-prof"],
                           raw)  # fmt: skip
                profiled = (raw, res["server_cpu_us_per_req"])
        finally:
            stop_proc(router)
    finally:
        local.stop()
    print(report(rows, a))
    if profiled is not None:
        raw, us = profiled
        print(f"\nthe router's CPU by concern (py-spy, {raw}; {us:.0f} µs a request "
              "in that run, sampling included)\n")  # fmt: skip
        print(concerns.report(raw, us))
    if a.json:
        a.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    return 0


def report(rows: list[dict[str, Any]], a: argparse.Namespace) -> str:
    hello = next(x for x in rows if x["variant"] == "hello")
    h = hello["server_cpu_us_per_req"] or 1.0
    out = [
        f"wrk, {a.concurrency} connections, {a.duration:g} s each; {sys.version.split()[0]}",
        "",
        "| variant | req/s | vs hello req/s | p50 ms | p99 ms | server µs/req | x hello CPU "
        "| Redis µs/req | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for x in rows:
        out.append(
            f"| {x['variant']} | {x['rps']:.0f} | {x['rps'] / hello['rps']:.1%} "
            f"| {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['server_cpu_us_per_req']:.0f} "
            f"| {x['server_cpu_us_per_req'] / h:.1f} | {x.get('redis_cpu_us_per_req', 0):.0f} "
            f"| {x['errors'] or 'none'} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
