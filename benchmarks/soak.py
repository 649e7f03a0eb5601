"""Soak: constant full lifecycles for a long run, with the history archive on;
Redis memory must stay flat once finished contacts leave it.

Starts a private redis-server, a private PostgreSQL and one router with
ROUTER_ARCHIVE_URL, sets up the load-test workspace (the demo bank's routing)
with a short `retention.grace` (and the customer-continuity window as long, so
no per-customer key outlives it), then runs `benchmarks/lifecycle.py` at
`--rate` for `--duration` seconds while sampling Redis `used_memory`, the key
count and the archive's backlog every `--every` seconds. After the load it
abandons what is left, waits the grace out and counts what finished contacts
still hold in Redis.

Verdicts:
- flat: `used_memory` grows at most 2% over the last half of the load (mean of
  the first and of the last `--every`*6 seconds of that half);
- retained: finished contact records left in Redis after the grace: 0 (open
  cases, ended with a resolve clock still running, are live work and counted
  apart), and the bytes Redis holds beyond its state before the load, per
  finished contact, once the stream's tail has gone too;
- archived: every finished contact has its row, every event its row.

Writes reports/soak/soak.json and benchmarks/soak.png (the memory curve).

    .venv/bin/python -m benchmarks.soak                        # 10 minutes at 100/s
    .venv/bin/python -m benchmarks.soak --duration 120 --rate 50 --grace 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

from benchmarks.capacity import AGENT_FORMAT, clear_backlog, setup
from benchmarks.e2e.procs import machine
from loadtest.workspace import WORKSPACE
from router.runtime.settings import DEMO_JWT_SECRET
from router.store.keys import ARCHIVE_GROUP, WsKeys
from router.store.local import LocalRedis
from tests.support.postgres import PostgresServer, private_postgres
from tests.support.procs import ROOT, start_replicas, stop_replicas, wait_ready

OUT = ROOT / "reports" / "soak"


class Sampler(threading.Thread):
    """Samples Redis memory, keys and the archive backlog every `every` seconds."""

    def __init__(self, url: str, every: float) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.every = every
        self.rows: list[dict[str, float]] = []
        self.t0 = time.monotonic()
        self.stop_flag = threading.Event()

    def sample(self) -> dict[str, float]:
        mem = self.client.info("memory")
        groups = self.client.xinfo_groups(WsKeys(WORKSPACE).events)
        archive = next((g for g in groups if g["name"] == ARCHIVE_GROUP), {})
        return {
            "t": round(time.monotonic() - self.t0, 1),
            "used_memory": float(mem["used_memory"]),  # type: ignore[index]
            "keys": float(self.client.dbsize()),  # type: ignore[arg-type]
            "stream": float(self.client.xlen(WsKeys(WORKSPACE).events)),  # type: ignore[arg-type]
            "archive_pending": float(archive.get("pending", 0)),
        }

    def run(self) -> None:
        while not self.stop_flag.wait(self.every):
            self.rows.append(self.sample())


RUNNING = ("active", "warned", "breached", "paused")


def contact_keys(client: redis.Redis) -> dict[str, int]:
    """Contact records left in Redis: finished ones (which should have left after
    the grace), open cases (ended, a clock still running: live work) and the rest."""
    tag = WsKeys(WORKSPACE).tag
    out = {"finished": 0, "open_cases": 0, "live": 0, "other_keys": 0}
    for key in client.scan_iter(match=tag + ":c:*", count=1000):
        if key.count(":") != 3:  # a timeline list, not a record
            out["other_keys"] += 1
            continue
        raw = client.hgetall(key)
        running = any(k.endswith(".st") and v in RUNNING for k, v in raw.items())  # type: ignore[union-attr]
        if raw.get("st") not in ("completed", "abandoned", "expired"):  # type: ignore[union-attr]
            out["live"] += 1
        else:
            out["open_cases" if running else "finished"] += 1
    return out


def archived(pg: PostgresServer) -> dict[str, int]:
    out = pg.psql(
        f"SELECT (SELECT count(*) FROM events WHERE ws = '{WORKSPACE}'),"
        f" (SELECT count(*) FROM contacts WHERE ws = '{WORKSPACE}')"
    )
    events, contacts = out.strip().split("|")
    return {"events": int(events), "contacts": int(contacts)}


def mean(rows: list[dict[str, float]], key: str) -> float:
    return sum(r[key] for r in rows) / max(1, len(rows))


def verdicts(
    a: argparse.Namespace, rows: list[dict[str, float]], load_end: float
) -> dict[str, Any]:
    start = a.warmup + a.grace + 30  # contacts leave Redis from then on
    half = max(start, (a.warmup + load_end) / 2)
    steady = [r for r in rows if half <= r["t"] <= load_end]
    n = max(1, min(6, len(steady) // 3))
    first, last = mean(steady[:n], "used_memory"), mean(steady[-n:], "used_memory")
    growth = (last - first) / first if first else 0.0
    return {"last_half_from_s": half, "first_bytes": first, "last_bytes": last,
            "growth": round(growth, 4), "flat": growth <= 0.02}  # fmt: skip


def plot(rows: list[dict[str, float]], marks: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, mem = plt.subplots(figsize=(10, 4.5))
    t = [r["t"] / 60 for r in rows]
    mem.plot(t, [r["used_memory"] / 2**20 for r in rows], label="Redis used_memory (MiB)")
    mem.set_xlabel("minutes")
    mem.set_ylabel("MiB")
    keys = mem.twinx()
    keys.plot(t, [r["keys"] for r in rows], color="tab:orange", lw=0.8, label="keys")
    keys.set_ylabel("keys")
    for name, at in marks.items():
        mem.axvline(at / 60, color="grey", ls="--", lw=0.8)
        mem.text(at / 60, mem.get_ylim()[1], " " + name, fontsize=8, va="top")
    mem.legend(loc="upper left", fontsize=8)
    keys.legend(loc="upper right", fontsize=8)
    mem.grid(True, alpha=0.3)
    fig.suptitle("Soak: Redis memory under constant full lifecycles, archive on")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def soak(a: argparse.Namespace) -> dict[str, Any]:
    with private_postgres("soak-pg-") as pg:
        return soak_with(a, pg)


def soak_with(a: argparse.Namespace, pg: PostgresServer) -> dict[str, Any]:
    local = LocalRedis()
    log_dir = Path(tempfile.mkdtemp(prefix="soak-"))
    # rate limits off: the soak measures memory, not the limiter's refusals
    env = {"ROUTER_LOG_LEVEL": "WARNING", "ROUTER_ARCHIVE_URL": pg.url, "ROUTER_RATE_LIMITS": "off"}
    procs = start_replicas(local.url, log_dir, a.replicas, env)
    client = redis.Redis.from_url(local.url, decode_responses=True)
    try:
        asyncio.run(wait_ready(procs))

        def short_grace(doc: dict[str, Any]) -> None:
            doc["retention"] = {"grace": f"{a.grace}s"}
            doc.setdefault("defaults", {})["continuity_window"] = a.grace

        asyncio.run(setup(local.url, a.agents, tweak=short_grace))
        deadline = time.monotonic() + 30
        while client.hget(WsKeys(WORKSPACE).runtime, "arch") != "1":  # archived
            if time.monotonic() > deadline:
                raise RuntimeError(f"the archive never started:\n{procs[0].log_tail()}")
            time.sleep(0.2)
        time.sleep(2)
        before = float(client.info("memory")["used_memory"])  # type: ignore[index]
        sampler = Sampler(local.url, a.every)
        sampler.start()
        cmd = [sys.executable, "-m", "benchmarks.lifecycle",
               "--urls", ",".join(r.url for r in procs), "--ws", WORKSPACE,
               "--rate", str(a.rate), "--agents", str(a.agents), "--agent-prefix", AGENT_FORMAT,
               "--prefix", "soak", "--duration", str(a.duration), "--warmup", str(a.warmup),
               "--handle", str(a.handle), "--jwt-secret", DEMO_JWT_SECRET,
               "--resolve-after", str(a.resolve_after)]  # fmt: skip
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"load generator failed:\n{out.stderr[-3000:]}")
        load = json.loads(out.stdout.strip().splitlines()[-1])
        load_end = time.monotonic() - sampler.t0
        left = asyncio.run(clear_backlog(local.url))
        # the last finished contacts' grace, and the stream's 2-minute tail trimmed
        time.sleep(max(a.grace, 120) + 20)
        sampler.stop_flag.set()
        sampler.join()
        rows = sampler.rows
        after = float(client.info("memory")["used_memory"])  # type: ignore[index]
        finished = load.get("status", {}).get("complete 200", 0) + left
        remaining = contact_keys(client)
        rows_in_pg = archived(pg)
        # every event the stream ever held is archived (the stream keeps a tail)
        rows_in_pg["stream_events_ever"] = int(
            client.xinfo_stream(WsKeys(WORKSPACE).events)["entries-added"]  # type: ignore[index]
        )
        flat = verdicts(a, rows, load_end)
        marks = {"load": a.warmup, "grace passed": a.warmup + a.grace, "load ends": load_end}
        plot(rows, marks, ROOT / "benchmarks" / "soak.png")
        return {
            "machine": machine(), "args": vars(a), "load": load, "samples": rows,
            "flat": flat, "abandoned_after_load": left,
            "finished_contacts": finished, "contact_keys_after_grace": remaining,
            "redis_bytes_before": before, "redis_bytes_after": after,
            "bytes_retained_per_finished_contact": round((after - before) / max(1, finished), 2),
            "archive": rows_in_pg,
            "stream_after": client.xlen(WsKeys(WORKSPACE).events),
        }  # fmt: skip
    finally:
        client.close()
        stop_replicas(procs)
        local.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    p.add_argument("--warmup", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=100.0, help="contacts offered per second")
    p.add_argument("--agents", type=int, default=500)
    p.add_argument("--handle", type=float, default=2.0, help="mean handle time, seconds")
    p.add_argument("--grace", type=int, default=60, help="retention.grace, seconds")
    p.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    p.add_argument(
        "--resolve-after",
        type=float,
        default=5.0,
        help="seconds until a complaint's case is resolved: an open case (its resolve "
        "clock running) is live work and stays in Redis",
    )
    p.add_argument("--replicas", type=int, default=1)
    a = p.parse_args(argv)
    res = soak(a)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "soak.json").write_text(json.dumps(res, indent=1))
    f = res["flat"]
    rate = res["load"].get("lifecycles_per_s")
    print(f"lifecycles/s {rate}, finished {res['finished_contacts']}")
    print(f"used_memory over the last half: {f['first_bytes'] / 2**20:.2f} -> "
          f"{f['last_bytes'] / 2**20:.2f} MiB ({f['growth']:+.2%}; flat: {f['flat']})")  # fmt: skip
    print(
        f"contact records left after the grace: {res['contact_keys_after_grace']}; "
        f"bytes retained per finished contact: {res['bytes_retained_per_finished_contact']}"
    )
    print(f"archive: {res['archive']}; stream entries left: {res['stream_after']}")
    return 0 if f["flat"] and res["contact_keys_after_grace"]["finished"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
