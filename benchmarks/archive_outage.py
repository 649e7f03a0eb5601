"""PostgreSQL stopped for two minutes under load: routing does not notice, the
archive catches up after the restart, and every event is archived exactly once.

Starts a private redis-server, a private PostgreSQL and `--replicas` routers
with ROUTER_ARCHIVE_URL, the load-test workspace (the demo bank's routing), and
runs `benchmarks/lifecycle.py` at `--rate` in three phases of its own: before
(`--before` s), with PostgreSQL killed (SIGKILL, as a crash) for `--outage`
seconds, and after the restart (`--after` s). Each phase reports lifecycles
done, errors and p99 latencies; routing is "unaffected" when the outage phase's
error rate is no higher and its p99s stay within `--tolerance` of the phase
before. Then it waits for the archive to catch up and compares the stream's
ids with the archive's: none missing, none twice.

    .venv/bin/python -m benchmarks.archive_outage          # 60 s, 120 s down, 60 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from benchmarks.capacity import AGENT_FORMAT, setup
from benchmarks.e2e.procs import machine
from loadtest.archive import caught_up
from loadtest.workspace import WORKSPACE
from router.runtime.settings import DEMO_JWT_SECRET
from router.store.client import make_client
from router.store.keys import WsKeys
from router.store.local import LocalRedis
from tests.support.postgres import PostgresServer, private_postgres
from tests.support.procs import ROOT, start_replicas, stop_replicas, wait_ready

OUT = ROOT / "reports" / "archive_outage"


def phase(a: argparse.Namespace, hosts: list[str], name: str, seconds: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.lifecycle", "--urls", ",".join(hosts),
           "--ws", WORKSPACE, "--rate", str(a.rate), "--agents", str(a.agents),
           "--agent-prefix", AGENT_FORMAT, "--prefix", f"out-{name}", "--duration", str(seconds),
           "--warmup", "2", "--handle", str(a.handle), "--jwt-secret", DEMO_JWT_SECRET]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{out.stderr[-3000:]}")
    res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    brief = {
        "lifecycles_per_s": res.get("lifecycles_per_s"),
        "error_rate": res.get("error_rate"),
        "create_p99_ms": res.get("create", {}).get("p99_ms"),
        "decision_p99_ms": res.get("decision", {}).get("p99_ms"),
        "errors": res.get("errors", {}),
        "status": {k: v for k, v in res.get("status", {}).items() if not k.endswith(" 200")},
    }
    print(f"  {name}: {brief}", flush=True)
    return brief


def archived_ids(pg: PostgresServer) -> list[str]:
    out = pg.psql(f"SELECT id FROM events WHERE ws = '{WORKSPACE}' AND type <> 'archive.gap'")
    return out.split()


def outage(a: argparse.Namespace, pg: PostgresServer) -> dict[str, Any]:
    local = LocalRedis()
    env = {"ROUTER_LOG_LEVEL": "WARNING", "ROUTER_ARCHIVE_URL": pg.url,
           "ROUTER_RATE_LIMITS": "off"}  # fmt: skip
    procs = start_replicas(local.url, Path(tempfile.mkdtemp(prefix="outage-")), a.replicas, env)
    client = redis.Redis.from_url(local.url, decode_responses=True)
    try:
        asyncio.run(wait_ready(procs))
        asyncio.run(setup(local.url, a.agents))
        time.sleep(2)
        hosts = [r.url for r in procs]
        phases = {"before": phase(a, hosts, "before", a.before)}
        pg.kill()
        t_down = time.monotonic()
        phases["outage"] = phase(a, hosts, "outage", a.outage)
        waited = a.outage - (time.monotonic() - t_down)
        if waited > 0:
            time.sleep(waited)
        backlog = client.xinfo_groups(WsKeys(WORKSPACE).events)
        pg.start()
        t_up = time.monotonic()
        phases["after"] = phase(a, hosts, "after", a.after)

        async def settle() -> bool:
            rc = make_client(local.url, 30)
            try:
                return await caught_up(rc, WORKSPACE, within=300)
            finally:
                await rc.aclose()

        ok = asyncio.run(settle())
        caught_up_s = round(time.monotonic() - t_up, 1)
        for _ in range(10):  # timers still add events after the load: settle again
            # the stream keeps only a tail: what it ever held is its entries-added
            added = int(client.xinfo_stream(WsKeys(WORKSPACE).events)["entries-added"])
            stream = [sid for sid, _ in client.xrange(WsKeys(WORKSPACE).events)]
            ids = archived_ids(pg)
            missing = len(set(stream) - set(ids)) + max(0, added - len(set(ids)))
            doubled = len(ids) - len(set(ids))
            if not missing:
                break
            time.sleep(2)
            asyncio.run(settle())
        before, during = phases["before"], phases["outage"]
        unaffected = during["error_rate"] <= max(before["error_rate"], 0.001) and all(
            (during[k] or 0) <= (before[k] or 0) * (1 + a.tolerance) + 5
            for k in ("create_p99_ms", "decision_p99_ms")
        )
        return {
            "machine": machine(), "args": vars(a), "phases": phases,
            "archive_pending_at_restart": [(g["name"], g["pending"], g.get("lag"))
                                           for g in backlog],
            "caught_up": ok, "seconds_from_restart_to_caught_up": caught_up_s,
            "stream_events_ever": added, "stream_events_left": len(stream),
            "archived_events": len(ids),
            "missing": missing, "doubled": doubled, "routing_unaffected": unaffected,
        }  # fmt: skip
    finally:
        client.close()
        stop_replicas(procs)
        local.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--agents", type=int, default=500)
    p.add_argument("--handle", type=float, default=2.0)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--before", type=float, default=60.0)
    p.add_argument("--outage", type=float, default=120.0)
    p.add_argument("--after", type=float, default=60.0)
    p.add_argument("--tolerance", type=float, default=0.5, help="p99 growth allowed (share)")
    a = p.parse_args(argv)
    with private_postgres("outage-pg-") as pg:
        res = outage(a, pg)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "outage.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k not in ("machine", "args")}, indent=1))
    good = res["caught_up"] and not res["missing"] and not res["doubled"]
    return 0 if good and res["routing_unaffected"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
