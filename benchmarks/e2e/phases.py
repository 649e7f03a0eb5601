"""Phases of a round beside the load runs: one request at a time, paired slices."""

from __future__ import annotations

import argparse
import json
import math
from typing import TYPE_CHECKING, Any

from benchmarks.e2e.common import HERE, PY
from benchmarks.e2e.load import (
    LoadRun,
    annotate,
    complete_flags,
    complete_wrk_args,
    python_load,
    wrk_load,
)
from benchmarks.e2e.procs import wait_http_auth
from benchmarks.e2e.workspaces import check_freed, setup_admission, setup_freed

if TYPE_CHECKING:
    from benchmarks.e2e.bench import Bench


def only_round(bench: Bench, rnd: int, phases: set[str]) -> None:
    """--only: just the named phases of a round (paired and c1 size themselves)."""
    bench.r.flushall(asynchronous=True)
    if "paired" in phases:
        paired(bench, rnd, bench.args.freed_rps_bound)
    if "c1" in phases:
        service_time(bench, rnd)


def service_time(bench: Bench, rnd: int) -> None:
    """One request at a time (concurrency 1): the fastest and typical request show
    each path's own cost with little queueing, and the minimum and 10th percentile
    hardly move when the host takes the CPU away now and then."""
    a = bench.args
    url, router = bench.redis_url, bench.router_url
    one = argparse.Namespace(**{**vars(a), "concurrency": 1, "duration": a.service_time})
    tool = "wrk" if "wrk" in bench.tools else "python"
    bench.log(f"round {rnd}: service time (concurrency 1, {tool})")
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
            bench.r.sadd("router:workspaces", ws)
            if path == "admission":
                setup_admission(url, ws, 200)
            else:
                setup_freed(url, ws, 1, per_agent)
                check_freed(bench.r, ws, 1)
            wait_http_auth(f"{router}/v1/workspaces/{ws}")
            return ws

        def load(ws: str, path: str = path, per_agent: int = per_agent) -> dict[str, Any]:
            server = "hello" if path == "hello" else "router"
            lr = LoadRun(
                bench.r, {server: bench.own[server], "redis": bench.own["redis"]}, a.service_time
            )
            res = _one_at_a_time(bench, lr, one, tool, path, ws, per_agent)
            bench.r.srem("router:workspaces", ws)
            return annotate(res, server)

        res = bench.attempt(prepare, load, f"service-time/{path}")
        seq[path] = res
        bench.record(rnd, f"c1-{path}", tool, res)


def _one_at_a_time(
    bench: Bench,
    lr: LoadRun,
    one: argparse.Namespace,
    tool: str,
    path: str,
    ws: str,
    per_agent: int,
) -> dict[str, Any]:
    """One concurrency-1 run of `path` with `tool` (wrk or the Python loader)."""
    hello_url, router = bench.hello_url, bench.router_url
    base = f"/v1/workspaces/{ws}"
    if tool == "wrk":
        if path == "hello":
            return wrk_load(lr, "get.lua", hello_url, 1, one, [])
        if path == "admission":
            return wrk_load(lr, "create.lua", router, 1, one, [base, "demo-gateway", ws])
        return wrk_load(lr, "complete.lua", router, 1, one, complete_wrk_args(ws, per_agent))
    if path == "hello":
        return python_load(lr, "get", hello_url, one, [])
    if path == "admission":
        return python_load(lr, "create", router + base, one, ["--prefix", ws])
    return python_load(lr, "complete", router + base, one, complete_flags(ws, per_agent))


def paired(bench: Bench, rnd: int, hello_rps: float) -> None:
    """Hello world and a router path in alternating slices from one Python loader."""
    a = bench.args
    url, router = bench.redis_url, bench.router_url
    bench.log(f"round {rnd}: paired runs ({a.slice:g} s slices alternating with hello world)")
    per_agent = math.ceil(hello_rps * (a.duration + a.warmup + 2) * 1.1 / a.concurrency) + 5
    for path in ("admission", "freed"):
        n = 0
        agents = bench.admission_agents(hello_rps)

        def prepare(path: str = path, agents: int = agents) -> str:
            nonlocal n
            n += 1
            ws = f"pa{rnd}{path[0]}{n}"
            bench.r.sadd("router:workspaces", ws)
            if path == "admission":
                setup_admission(url, ws, agents)
            else:
                setup_freed(url, ws, a.concurrency, per_agent)
                check_freed(bench.r, ws, a.concurrency)
            wait_http_auth(f"{router}/v1/workspaces/{ws}")
            return ws

        def load(ws: str, path: str = path) -> dict[str, Any]:
            res = _paired_run(bench, path, ws, per_agent)
            bench.r.srem("router:workspaces", ws)
            return res

        res = bench.attempt(prepare, load, f"paired-{path}")
        res["server_cpu_us_per_req"] = res["redis_cpu_us_per_req"] = float("nan")
        bench.record(rnd, f"paired-{path}", "python", res)
        bench.log(
            f"    hello in the same run: {res['hello']['rps']} req/s, p99 "
            f"{res['hello']['p99_ms']} ms -> ratio {res['paired_ratio']}"
        )


def _paired_run(bench: Bench, path: str, ws: str, per_agent: int) -> dict[str, Any]:
    """One paired run: benchmarks/loadgen.py alternates hello world and `path`."""
    a = bench.args
    mode = "create" if path == "admission" else "complete"
    extra = ["--prefix", ws] if path == "admission" else complete_flags(ws, per_agent)
    cmd = [
        PY, str(HERE / "loadgen.py"), mode,
        "--url", f"{bench.router_url}/v1/workspaces/{ws}",
        "--hello-url", bench.hello_url,
        "--slice", str(a.slice),
        "--concurrency", str(a.concurrency),
        "--duration", str(a.duration),
        "--warmup", str(a.warmup),
        *extra,
    ]  # fmt: skip
    own = bench.own
    lr = LoadRun(
        bench.r,
        {"router": own["router"], "hello": own["hello"], "redis": own["redis"]},
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
    return res
