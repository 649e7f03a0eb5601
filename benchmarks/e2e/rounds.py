"""One round of measured runs: hello world, EVALSHA, admission and agent freed with
each loader, then the paired and one-at-a-time phases."""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any

from benchmarks.e2e.common import HERE, PY
from benchmarks.e2e.load import (
    annotate,
    complete_flags,
    complete_wrk_args,
    python_load,
    wrk_load,
)
from benchmarks.e2e.phases import only_round, paired, service_time
from benchmarks.e2e.procs import wait_http_auth
from benchmarks.e2e.workspaces import check_freed, setup_admission, setup_freed

if TYPE_CHECKING:
    from benchmarks.e2e.bench import Bench


def run_round(bench: Bench, rnd: int) -> None:
    """A full round, or with --only just the named phases."""
    a = bench.args
    if a.only:
        only_round(bench, rnd, set(a.only.split(",")))
        return
    bench.r.flushall(asynchronous=True)
    hello_rps = hello_runs(bench, rnd)
    evalsha_run(bench, rnd)
    adm_rps = admission_runs(bench, rnd, hello_rps)
    freed_runs(bench, rnd, hello_rps, adm_rps)
    if a.paired:
        paired(bench, rnd, hello_rps.get("python") or a.freed_rps_bound)
    if a.service_time > 0:
        service_time(bench, rnd)


def hello_runs(bench: Bench, rnd: int) -> dict[str, float]:
    """Hello world with each loader; its req/s per loader size the runs that follow."""
    a = bench.args
    hello_url = bench.hello_url
    hello_rps: dict[str, float] = {}
    bench.log(f"round {rnd}: hello world")
    for tool in bench.tools:

        def hello_load(_: Any, tool: str = tool) -> dict[str, Any]:
            if tool == "python":
                return python_load(bench.load_run("hello"), "get", hello_url, a, [])
            wrk_load(bench.load_run("hello"), "get.lua", hello_url, 2, a, [], duration=a.warmup)
            return wrk_load(bench.load_run("hello"), "get.lua", hello_url, 2, a, [])

        res = bench.attempt(lambda: None, hello_load, f"hello/{tool}")
        hello_rps[tool] = res["rps"]
        bench.record(rnd, "hello", tool, annotate(res, "hello"))
    return hello_rps


def evalsha_run(bench: Bench, rnd: int) -> None:
    """EVALSHA `return 1` in its three modes (benchmarks/evalsha.py)."""
    a = bench.args
    bench.log(f"round {rnd}: EVALSHA return 1")

    def evalsha_load(_: Any) -> dict[str, Any]:
        raw = bench.load_run("router").run(
            [
                PY, str(HERE / "evalsha.py"),
                "--url", bench.redis_url,
                "--concurrency", str(a.concurrency),
                "--duration", str(a.evalsha_duration),
                "--warmup", str(min(a.warmup, 1.0)),
            ],
            marks=False,
        )  # fmt: skip
        ev: dict[str, Any] = json.loads(raw["stdout"].strip().splitlines()[-1])
        ev.update(cpu=raw["cpu"], redis=raw["redis"])
        return ev

    ev = bench.attempt(lambda: None, evalsha_load, "evalsha")
    ev.update(round=rnd, path="evalsha")
    bench.results.append(ev)
    for k in ("sequential", "concurrent", "batched"):
        bench.log(
            f"  evalsha {k:<10} {ev[k]['ops_per_s']:>9.1f} ops/s  "
            f"p50 {ev[k]['p50_us']} us  p99 {ev[k]['p99_us']} us  "
            f"noise {ev['noise_cores']}"
        )


def admission_runs(bench: Bench, rnd: int, hello_rps: dict[str, float]) -> dict[str, float]:
    """POST contacts with each loader, in a fresh workspace of ready agents per attempt;
    returns req/s per loader."""
    a = bench.args
    url, router = bench.redis_url, bench.router_url
    adm_rps: dict[str, float] = {}
    bench.log(f"round {rnd}: admission (POST contacts)")
    for tool in bench.tools:
        n = 0
        agents = bench.admission_agents(hello_rps.get(tool))

        def adm_prepare(tool: str = tool, agents: int = agents) -> str:
            nonlocal n
            n += 1
            ws = f"adm{rnd}{tool[0]}{n}"
            bench.r.sadd("router:workspaces", ws)
            setup_admission(url, ws, agents)
            wait_http_auth(f"{router}/v1/workspaces/{ws}")
            return ws

        def adm_load(ws: str, tool: str = tool, agents: int = agents) -> dict[str, Any]:
            if tool == "python":
                res = python_load(
                    bench.load_run("router"),
                    "create",
                    f"{router}/v1/workspaces/{ws}",
                    a,
                    ["--prefix", ws],
                )
            else:
                res = wrk_load(
                    bench.load_run("router"),
                    "create.lua",
                    router,
                    2,
                    a,
                    [f"/v1/workspaces/{ws}", "demo-gateway", ws],
                )
            tag = "{ws:" + ws + "}"
            queued = int(bench.r.zcard(f"{tag}:qa:cards"))
            matched = agents - int(bench.r.zcard(f"{tag}:r:cards:voice"))
            res["outcome"] = {
                "matched": matched,
                "queued": queued,
                "agents": agents,
                "matched_share": round(matched / max(1, matched + queued), 3),
            }
            bench.r.srem("router:workspaces", ws)  # stop the router's timer polls of it
            return res

        res = bench.attempt(adm_prepare, adm_load, f"admission/{tool}")
        adm_rps[tool] = res["rps"]
        bench.record(rnd, "admission", tool, annotate(res, "router"))
    return adm_rps


def freed_runs(
    bench: Bench, rnd: int, hello_rps: dict[str, float], adm_rps: dict[str, float]
) -> None:
    """POST complete with each loader: every completion hands the agent its next contact."""
    a = bench.args
    url, router = bench.redis_url, bench.router_url
    bench.log(f"round {rnd}: agent freed (POST complete -> next contact)")
    for tool in bench.tools:
        n = 0
        # Enough waiting contacts that no chain runs out: no path outruns hello world,
        # and completing is assumed to be at most 3x as fast as admitting.
        bound = (
            min(x for x in (hello_rps.get(tool), 3 * adm_rps.get(tool, 0)) if x)
            if hello_rps.get(tool) or adm_rps.get(tool)
            else a.freed_rps_bound
        )
        per_agent = (
            a.per_agent or math.ceil(bound * (a.duration + a.warmup + 1) * 1.1 / a.concurrency) + 5
        )

        def freed_prepare(tool: str = tool, per_agent: int = per_agent) -> str:
            nonlocal n
            n += 1
            ws = f"fr{rnd}{tool[0]}{n}"
            bench.log(f"  setting up {a.concurrency} agents x {per_agent} waiting contacts")
            t0 = time.perf_counter()
            bench.r.sadd("router:workspaces", ws)
            setup_freed(url, ws, a.concurrency, per_agent)
            check_freed(bench.r, ws, a.concurrency)
            bench.log(f"  set up in {time.perf_counter() - t0:.1f} s")
            wait_http_auth(f"{router}/v1/workspaces/{ws}")
            return ws

        def freed_load(ws: str, tool: str = tool, per_agent: int = per_agent) -> dict[str, Any]:
            if tool == "python":
                res = python_load(
                    bench.load_run("router"),
                    "complete",
                    f"{router}/v1/workspaces/{ws}",
                    a,
                    complete_flags(ws, per_agent),
                )
            else:
                res = wrk_load(
                    bench.load_run("router"),
                    "complete.lua",
                    router,
                    a.concurrency,
                    a,
                    complete_wrk_args(ws, per_agent),
                )
            res["outcome"] = {"per_agent": per_agent, "agents": a.concurrency}
            bench.r.srem("router:workspaces", ws)
            return res

        res = bench.attempt(freed_prepare, freed_load, f"freed/{tool}")
        bench.record(rnd, "freed", tool, annotate(res, "router"))
