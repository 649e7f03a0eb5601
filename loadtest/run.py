"""One command: a peak day against a local stack, then the reconciliation.

Starts a private redis-server (or uses REDIS_URL) and `--replicas` router
processes, sets up the load-test workspace (the demo bank's routing, day
compressed `--compress` times, `--agents` agents), runs Locust headless with
the peak-day shape, writes Locust's HTML and CSV reports to `--reports`, ends
what the day left open (agents finish their contacts, callers still queued
hang up), and reconciles from the engine's event stream. Exits 1 when a gate
fails: error rate, p99 latency of contact creation, a lost contact, a contact
held twice, an agent over capacity, or SLA events disagreeing with the waits.

    .venv/bin/python -m loadtest.run                          # 20,000 contacts in 14 minutes
    .venv/bin/python -m loadtest.run --smoke                  # 1,200 contacts in 40 s
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from loadtest import archive as archived
from loadtest.promises import accuracy
from loadtest.reconcile import read_events, reconcile
from loadtest.workspace import REFUSED, WORKSPACE
from loadtest.workspace import setup as setup_workspace
from router.archive.local import LocalPostgres
from router.runtime.settings import DEMO_JWT_SECRET
from router.store.client import make_client
from router.store.keys import WsKeys
from router.store.local import LocalRedis, free_port
from tests.support.procs import Replica, start_replicas, stop_replicas, wait_ready

ROOT = Path(__file__).resolve().parent.parent
ADM = {"Authorization": "Bearer demo-admin"}
GW = {"Authorization": "Bearer demo-gateway"}


async def setup(url: str, a: argparse.Namespace) -> None:
    # with W workers the agent ids are interleaved; a worker can get one more
    await setup_workspace(url, a.agents + a.workers, a.compress, ADM["Authorization"][7:])


async def drain(url: str, prefix: str, client: Any) -> dict[str, int]:
    """Ends what the day left open: held contacts are completed by their agent
    (wrap-ups run out by timer), waiting callers hang up."""
    ws = WsKeys(WORKSPACE)
    done = {"completed": 0, "abandoned": 0}
    async with aiohttp.ClientSession() as http:
        base = f"{url}/v1/workspaces/{WORKSPACE}"
        for _ in range(60):
            open_: list[tuple[str, str, str]] = []
            for e in await read_events(client, ws.events):
                cid = e.get("contact", "")
                if e["type"] == "contact.created" and cid.startswith(prefix):
                    open_.append((cid, "", ""))
            pipe = client.pipeline(transaction=False)
            for cid, _, _ in open_:
                pipe.hmget(ws.contact(cid), "st", "agent")
            states = await pipe.execute()
            todo = [(cid, st, agent) for (cid, _, _), (st, agent) in zip(open_, states, strict=True)
                    if st in ("queued", "offered", "assigned")]  # fmt: skip
            wrapping = sum(1 for st, _ in states if st == "wrap_up")
            if not todo and not wrapping:
                return done
            for cid, st, agent in todo:
                if st == "offered":
                    await http.post(f"{base}/contacts/{cid}/accept", json={"agent_id": agent},
                                    headers=ADM)  # fmt: skip
                if st in ("offered", "assigned"):
                    r = await http.post(f"{base}/contacts/{cid}/complete",
                                        json={"agent_id": agent}, headers=ADM)  # fmt: skip
                    done["completed"] += r.status == 200
                else:
                    body = {"reason": "end of the test day"}
                    r = await http.post(f"{base}/contacts/{cid}/abandon", json=body, headers=GW)
                    done["abandoned"] += r.status == 200
            await asyncio.sleep(1)
    return done


def size_agents(a: argparse.Namespace) -> tuple[int, str]:
    """Agents for the bill-day hour: Erlang C at the spike's rate and the compressed
    handle time (talk + wrap-up), 80% answered within 20 s of the compressed day,
    plus a quarter for the skill split (the pools do not share one queue)."""
    from loadtest.day import rate_at
    from router.wfm.queueing import ServiceTarget
    from router.wfm.staffing import agents_needed

    spike_fraction = (10 - 7 + 0.5) / 17  # the middle of the 10:00 hour
    rate = rate_at(spike_fraction, a.daily, a.day_seconds, a.spike)
    aht = 180.0 / a.compress + 20.0 / a.compress  # mean talk + a mean wrap-up
    plan = agents_needed(rate, aht, ServiceTarget(80.0, 20.0 / a.compress))
    n = int(plan.agents * 1.25) + 1
    why = (f"Erlang C for the bill-day hour ({rate:.1f} contacts/s, AHT {aht:.2f} s): "
           f"{plan.agents} agents, +25% for the skill split = {n}")  # fmt: skip
    return n, why


def locust(a: argparse.Namespace, hosts: list[str], run_id: str) -> int:
    """Headless Locust: one process, or a master with `--workers` worker processes."""
    a.reports.mkdir(parents=True, exist_ok=True)
    (a.reports / "promises.jsonl").unlink(missing_ok=True)  # this run's sample only
    env = dict(
        os.environ,
        LT_RUN=run_id,
        LT_JWT_SECRET=DEMO_JWT_SECRET,  # one signed token per agent desktop
        LT_HOSTS=",".join(hosts),
        LT_AGENTS=str(a.agents),
        LT_WORKERS=str(max(1, a.workers)),
        LT_DAILY=str(a.daily),
        LT_DAY_SECONDS=str(a.day_seconds),
        LT_COMPRESS=str(a.compress),
        LT_SPIKE=str(a.spike),
        LT_PROMISES=str(a.reports / "promises.jsonl"),
        PYTHONPATH=str(ROOT),
    )
    if a.replay:
        env["LT_DAY"] = a.replay
    script = str(ROOT / "loadtest" / ("replay.py" if a.replay else "locustfile.py"))
    cmd = [sys.executable, "-m", "locust", "-f", script,
           "--headless", "--host", hosts[0], "--csv", str(a.reports / "peakday"),
           "--html", str(a.reports / "peakday.html"), "--only-summary",
           "--stop-timeout", "10", "--loglevel", "WARNING"]  # fmt: skip
    if not a.workers:
        return subprocess.run(cmd, env=env, cwd=ROOT, check=False).returncode
    port = str(free_port())
    master = subprocess.Popen([*cmd, "--master", "--expect-workers", str(a.workers),
                               "--master-bind-port", port], env=env, cwd=ROOT)  # fmt: skip
    workers = [subprocess.Popen([sys.executable, "-m", "locust", "-f", script, "--worker",
                                 "--master-port", port, "--loglevel", "WARNING"],
                                env=env, cwd=ROOT)
               for _ in range(a.workers)]  # fmt: skip
    try:
        return master.wait()
    finally:
        for w in workers:
            try:
                w.wait(30)  # workers quit when the master tells them to
            except subprocess.TimeoutExpired:
                w.kill()


def locust_stats(reports: Path) -> dict[str, Any]:
    with (reports / "peakday_stats.csv").open() as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    agg, create = rows["Aggregated"], rows.get("POST /contacts", {})
    refused = int(rows.get(REFUSED, {}).get("Request Count", 0))
    return {
        "requests": int(agg["Request Count"]), "failures": int(agg["Failure Count"]),
        "refused_queue_full": refused,
        "create_requests": int(create.get("Request Count", 0)),
        "create_p99_ms": float(create.get("99%", 0) or 0),
        "create_p50_ms": float(create.get("50%", 0) or 0),
    }  # fmt: skip


def gates(a: argparse.Namespace, stats: dict[str, Any], rec: dict[str, Any]) -> list[str]:
    failed = []
    rate = stats["failures"] / max(1, stats["requests"])
    if rate > a.max_error_rate:
        failed.append(f"error rate {rate:.2%} over {a.max_error_rate:.2%}")
    # Refusals are the pools' max_queue at work, not errors: judged on their own.
    offered = stats["create_requests"] + stats["refused_queue_full"]
    refused = stats["refused_queue_full"] / max(1, offered)
    if refused > a.max_refused:
        failed.append(f"{refused:.2%} of contacts refused (queue full), over {a.max_refused:.2%}:"
                      " the day needs more agents")  # fmt: skip
    if stats["create_p99_ms"] > a.max_p99_ms:
        failed.append(f"p99 of contact creation {stats['create_p99_ms']} ms over {a.max_p99_ms}")
    if rec["never_ended"]:
        failed.append(f"{len(rec['never_ended'])} contacts never reached a terminal state")
    if rec["problems"]:
        failed.append(f"{len(rec['problems'])} reconciliation problems: {rec['problems'][:5]}")
    if rec["contacts"] == 0:
        failed.append("no contact was created")
    return failed


async def main_async(a: argparse.Namespace) -> int:
    local = None if os.environ.get("REDIS_URL") else LocalRedis()
    url = os.environ.get("REDIS_URL") or local.url  # type: ignore[union-attr]
    log_dir = Path(tempfile.mkdtemp(prefix="loadtest-"))
    # the harness's admin token sets up and drains the whole day: no per-token limit
    env = {"ROUTER_RATE_LIMIT_OVERRIDES": "admin=off"}
    pg = None
    if a.archive:  # the history archive on, as in production: a private one unless given
        archive_url = os.environ.get("ROUTER_ARCHIVE_URL")
        if not archive_url:
            pg = await asyncio.to_thread(LocalPostgres)
            archive_url = pg.url
        env["ROUTER_ARCHIVE_URL"] = archive_url
    replicas: list[Replica] = start_replicas(url, log_dir, a.replicas, env)
    client = make_client(url, 30)
    run_id = uuid.uuid4().hex[:8]
    try:
        await wait_ready(replicas)
        hosts = [r.url for r in replicas]
        await setup(hosts[0], a)
        await asyncio.sleep(1.2)  # every replica's config cache
        t0 = time.monotonic()
        code = await asyncio.to_thread(locust, a, hosts, run_id)
        elapsed = time.monotonic() - t0
        prefix = f"lt-{run_id}-"
        drained = await drain(hosts[0], prefix, client)
        archive: dict[str, object] | None = None
        if a.archive:
            # the stream keeps only a recent tail: the day is read from the archive
            if not await archived.caught_up(client, WORKSPACE):
                raise RuntimeError("the archive did not catch up with the stream")
            events = await archived.archived_events(env["ROUTER_ARCHIVE_URL"], WORKSPACE)
        else:
            events = await read_events(client, WsKeys(WORKSPACE).events)
        rec = reconcile(events, prefix)
        promises = accuracy(a.reports / "promises.jsonl", events)
        stats = locust_stats(a.reports)
        failed = gates(a, stats, rec)
        if a.archive:
            archive = await archived.check(env["ROUTER_ARCHIVE_URL"], WORKSPACE, prefix, rec)
            failed += [f"archive: {p}" for p in archive["problems"]]  # type: ignore[attr-defined]
        if code not in (0, 1):  # 1: locust saw failures, judged by the gates
            failed.append(f"locust exited {code}")
        summary = {"seconds": round(elapsed, 1), "agents": a.agents, "sizing": a.sizing,
                   "replicas": a.replicas, "locust_workers": a.workers,
                   "locust": stats, "drained": drained,
                   "reconciliation": {k: v for k, v in rec.items() if k != "never_ended"}
                   | {"never_ended": len(rec["never_ended"])},
                   "archive": archive, "promised_wait": promises,
                   "gates_failed": failed}  # fmt: skip
        (a.reports / "reconciliation.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary, indent=1))
        print("PASS" if not failed else "FAIL: " + "; ".join(failed))
        return 0 if not failed else 1
    finally:
        await client.aclose()
        stop_replicas(replicas)
        if local:
            local.stop()
        if pg is not None:
            await asyncio.to_thread(pg.close)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument(
        "--agents",
        type=int,
        default=0,
        help="agent desktops (default: sized by Erlang C for the bill-day hour)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="distributed Locust: a master and this many worker processes",
    )
    p.add_argument("--daily", type=float, default=20_000, help="contacts in the day")
    p.add_argument("--day-seconds", type=float, default=840, help="length of the compressed day")
    p.add_argument("--compress", type=float, default=60, help="time compression of handling")
    p.add_argument("--spike", type=float, default=2.5, help="bill-day factor at 10:00")
    p.add_argument("--max-error-rate", type=float, default=0.01)
    p.add_argument("--max-p99-ms", type=float, default=1000)
    p.add_argument(
        "--max-refused",
        type=float,
        default=0.01,
        help="share of contacts the pools may refuse as queue full",
    )
    p.add_argument("--reports", type=Path, default=ROOT / "reports" / "loadtest")
    p.add_argument("--smoke", action="store_true", help="1,200 contacts in 40 s, 40 agents")
    p.add_argument("--replay", metavar="DAY", help="replay a recorded day (1999-07-04) instead")
    p.add_argument(
        "--no-archive",
        dest="archive",
        action="store_false",
        help="no history archive (default: one, a private PostgreSQL unless ROUTER_ARCHIVE_URL)",
    )
    a = p.parse_args(argv)
    if a.smoke:
        a.daily, a.day_seconds, a.compress = 1200, 40, 120
        a.agents = a.agents or 40
    a.sizing = "given"
    if not a.agents:
        a.agents, a.sizing = size_agents(a)
    return asyncio.run(main_async(a))


if __name__ == "__main__":
    sys.exit(main())
