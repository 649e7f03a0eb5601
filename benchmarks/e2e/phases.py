"""Phases of a round beside the load runs: one request at a time, paired slices."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from benchmarks.e2e.common import HERE, PY
from benchmarks.e2e.load import LoadRun, annotate, python_load, wrk_load
from benchmarks.e2e.procs import wait_http_auth
from benchmarks.e2e.workspaces import check_freed, setup_admission, setup_freed


class Phases:
    """Rounds beside the main one: service time at concurrency 1, paired hello/router slices."""

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
