"""Where a full lifecycle's floor is: `benchmarks/lifecycle_floor_server.py` (the
lifecycle's HTTP requests, script calls and WebSocket pushes with none of the
router's decisions) driven exactly as `benchmarks.capacity` drives the router,
each step followed by hello world at the step's request rate.

    .venv/bin/python -m benchmarks.lifecycle_floor [--rates 300,150] [--agents 5000]

Its "router ÷ hello" is the floor's: what aiohttp, msgspec and redis-py alone
spend on a lifecycle's three requests and its pushes, against hello world's CPU
for three requests. Read the router's own figure from `benchmarks.capacity`
run in the same minutes (the machine's state moves both).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.capacity import AGENT_FORMAT, step
from benchmarks.e2e.common import HERE, PY, ROOT
from benchmarks.e2e.procs import machine, stop_proc, wait_http
from router.runtime.settings import DEMO_JWT_SECRET
from router.store.local import LocalRedis, free_port


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=5000)
    p.add_argument("--rates", default="300,150")
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--handle", type=float, default=0.0, help="mean handle time, seconds")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "lifecycle_floor")
    a = p.parse_args(argv)
    a.hello, a.jwt_secret = True, DEMO_JWT_SECRET  # what capacity.step reads
    a.out.mkdir(parents=True, exist_ok=True)
    local = LocalRedis()
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="lifecycle-floor-")) / "server.log"
    with log.open("wb") as err:
        server = subprocess.Popen(
            [PY, str(HERE / "lifecycle_floor_server.py"), "--port", str(port),
             "--redis", local.url, "--agents", str(a.agents), "--agent-prefix", AGENT_FORMAT],
            cwd=ROOT, stderr=err,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    steps: list[dict[str, Any]] = []
    try:
        wait_http(url + "/readyz")
        pids = {"router0": server.pid, "redis": local.proc.pid}
        for i, rate in enumerate(float(x) for x in a.rates.split(",")):
            if i:
                time.sleep(a.settle)
            r = step(a, [url], rate, f"floor{i}", pids, local.url)
            steps.append(r)
            per = r.get("cpu_us_per_lifecycle", {})
            ratio = r.get("router_vs_hello", {})
            print(f"floor {rate:>6.0f}/s offered: {r['lifecycles_per_s']:>7.1f} lifecycles/s, "
                  f"create p99 {r.get('create', {}).get('p99_ms')} ms; window: server "
                  f"{per.get('router')} µs / lifecycle, Redis {per.get('redis')} µs, hello "
                  f"{r.get('hello', {}).get('cpu_us_per_request', {}).get('hello')} µs / request, "
                  f"÷ hello {ratio.get('http', '-')} (HTTP + WS {ratio.get('http_and_ws', '-')}), "
                  f"messages / lifecycle {r.get('requests_per_lifecycle')}",
                  flush=True)  # fmt: skip
    finally:
        stop_proc(server)
        local.stop()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "command": " ".join(["python -m benchmarks.lifecycle_floor", *(argv or [])]),
    }
    out = json.dumps({"meta": meta, "steps": steps}, indent=1)
    (a.out / "lifecycle_floor.json").write_text(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
