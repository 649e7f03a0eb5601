"""Archive throughput: events a second the archiver writes into PostgreSQL,
against a bare COPY of the same rows measured in the same run.

A private redis-server and PostgreSQL (fsync off: the figures are CPU and
protocol, not the disk). The load-test workspace (the demo bank's routing)
with `--agents` agents; `--contacts` contacts go through full lifecycles
straight through the engine (created, offered, accepted, completed, with their
SLA clocks), so the stream holds real events and real finished contacts. Then:

- **archiver**: one `EventArchiver` drains the stream batch by batch as a
  replica does: read (XREADGROUP), INSERT ... ON CONFLICT DO NOTHING, the
  finished contacts read back from Redis and upserted as `contacts` and
  `sla_outcomes` rows, their expiry set, XACK;
- **bare COPY**: the same event rows, as the archiver built them, COPYed into
  an empty copy of `events` in batches of the same size: no deduplication, no
  contact rows, no Redis; the ceiling of getting rows into PostgreSQL.

Prints events/s for both and their ratio, and CPU seconds of the router
process (this one) and of PostgreSQL per 1,000 events.

    .venv/bin/python -m benchmarks.archive_throughput [--contacts 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import uvloop
from psycopg import AsyncConnection
from redis.asyncio import Redis

from benchmarks.capacity import setup
from benchmarks.e2e.procs import machine
from loadtest.workspace import WORKSPACE
from router.archive.events import EventArchiver
from router.archive.rows import Row, event_rows
from router.archive.schema import migrate
from router.routing.engine import Engine
from router.routing.model import ContactIn, Customer
from router.store.keys import WsKeys
from router.store.local import LocalRedis
from router.store.shards import Shards
from router.store.workspaces import Workspaces
from tests.support.postgres import PostgresServer, private_postgres


async def lifecycles(url: str, contacts: int, agents: int) -> int:
    """Full lifecycles through the engine; returns the events the stream holds."""
    client = Redis.from_url(url, decode_responses=True, max_connections=512)
    engine = Engine(Shards(client))
    try:
        await engine.scripts.load_all(client)
        channels, intents = ["voice", "chat", "app"], ["card", "loan", "wealth", "complaint"]

        async def one(i: int) -> None:
            body = ContactIn(
                id=f"tp-{i:07d}", channel=channels[i % 3], intent=intents[i % 4],
                customer=Customer(id=f"cu-{i % 50_000}", tier="standard"),
            )  # fmt: skip
            c = await engine.create_contact(WORKSPACE, body, "gateway:bench")
            if c.agent is None:  # no agent free at once: the caller hangs up
                await engine.contact_action(WORKSPACE, c.id, "abandon", [""], "gateway:bench")
                return
            if c.state == "offered":
                await engine.contact_action(WORKSPACE, c.id, "accept", [c.agent], "agent:bench")
            await engine.contact_action(WORKSPACE, c.id, "complete", [c.agent], "agent:bench")

        step = agents // 2  # half the agents busy at a time: most contacts find one free
        for start in range(0, contacts, step):
            await asyncio.gather(*(one(i) for i in range(start, min(contacts, start + step))))
        return int(await client.xlen(WsKeys(WORKSPACE).events))
    finally:
        await engine.close()
        await client.aclose()


def pg_cpu(pg: PostgresServer) -> float:
    return pg.cpu_seconds()


async def archive(url: str, pg: PostgresServer) -> tuple[dict[str, Any], list[Row]]:
    client = Redis.from_url(url, decode_responses=True)
    shards = Shards(client)
    keys = WsKeys(WORKSPACE)
    rows = event_rows(WORKSPACE, await client.xrange(keys.events))
    archiver = EventArchiver(shards, Workspaces(shards), pg.url)
    try:
        async with await AsyncConnection.connect(pg.url, autocommit=True) as conn:
            c0, s0, t0 = time.process_time(), pg_cpu(pg), time.perf_counter()
            n = 0
            while moved := await archiver.archive_once(conn, WORKSPACE):
                n += moved
            t1, c1, s1 = time.perf_counter(), time.process_time(), pg_cpu(pg)
    finally:
        await client.aclose()
    return {
        "events": n, "contacts": archiver.contact_rows.written, "seconds": round(t1 - t0, 2),
        "events_per_s": round(n / (t1 - t0)),
        "router_cpu_s_per_1000": round((c1 - c0) / n * 1000, 4),
        "postgres_cpu_s_per_1000": round((s1 - s0) / n * 1000, 4),
    }, rows  # fmt: skip


async def bare_copy(pg: PostgresServer, rows: list[Row], batch: int) -> dict[str, Any]:
    async with await AsyncConnection.connect(pg.url, autocommit=True) as conn:
        # the same keys and indexes as `events`, so both pay for the same index upkeep
        await conn.execute(
            "CREATE TABLE events_copy (LIKE events INCLUDING ALL) PARTITION BY RANGE (at)"
        )
        for day in sorted({r[2].date() for r in rows}):
            await conn.execute(
                f"CREATE TABLE events_copy_{day:%Y%m%d} PARTITION OF events_copy FOR VALUES"
                f" FROM ('{day}') TO ('{day}'::date + 1)"
            )
        c0, s0, t0 = time.process_time(), pg_cpu(pg), time.perf_counter()
        for i in range(0, len(rows), batch):
            async with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy("COPY events_copy (ws, id, at, type, contact, doc) FROM STDIN") as copy,
            ):
                for row in rows[i : i + batch]:
                    await copy.write_row(row)
        t1, c1, s1 = time.perf_counter(), time.process_time(), pg_cpu(pg)
    n = len(rows)
    return {
        "events": n, "seconds": round(t1 - t0, 2), "events_per_s": round(n / (t1 - t0)),
        "router_cpu_s_per_1000": round((c1 - c0) / n * 1000, 4),
        "postgres_cpu_s_per_1000": round((s1 - s0) / n * 1000, 4),
    }  # fmt: skip


async def run(a: argparse.Namespace, pg: PostgresServer) -> dict[str, Any]:
    local = LocalRedis()
    try:
        await setup(local.url, a.agents)
        async with await AsyncConnection.connect(pg.url, autocommit=True) as conn:
            await migrate(conn)
        stream = await lifecycles(local.url, a.contacts, a.agents)
        arch, rows = await archive(local.url, pg)
        copy = await bare_copy(pg, rows, 1000)
        return {
            "machine": machine(), "contacts": a.contacts, "stream_events": stream,
            "archiver": arch, "bare_copy": copy,
            "ratio": round(arch["events_per_s"] / copy["events_per_s"], 3),
        }  # fmt: skip
    finally:
        local.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--contacts", type=int, default=20_000)
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--json", help="write the result here too")
    a = p.parse_args(argv)
    uvloop.install()
    with private_postgres("archive-tp-") as pg:
        res = asyncio.run(run(a, pg))
    arch, copy = res["archiver"], res["bare_copy"]
    print(json.dumps(res, indent=1))
    print(f"archiver {arch['events_per_s']:,} events/s ({arch['contacts']:,} contact rows), "
          f"bare COPY {copy['events_per_s']:,} events/s: ratio {res['ratio']:.2f}")  # fmt: skip
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
