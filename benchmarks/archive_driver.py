"""Which PostgreSQL driver, and which way of writing, for the history archive:
asyncpg against psycopg 3 (async), writing the engine's events in batches.

A private PostgreSQL (tests/support/postgres.py, fsync off: the figures are CPU
and protocol, not the disk; autovacuum off so no variant pays for another's
vacuum) with `events` partitioned by day. For each driver and method, on a fresh
table: `--rows` events in batches of `--batch`, one transaction per batch, over
one connection (the archive has one writer per stream), then `--resend` batches
sent again as after a crash, the row count checked unchanged.

  copy+stage   COPY into a temporary staging table, then INSERT ... SELECT ...
               ON CONFLICT DO NOTHING (exactly once by id)
  executemany  INSERT ... VALUES ... ON CONFLICT DO NOTHING per row, pipelined
  unnest       one INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING
  copy         COPY straight into events: no dedup, the ceiling (a re-sent
               batch fails on the primary key, nothing is written twice)

Client CPU is this process's (`time.process_time`), server CPU the postgres
process tree's from /proc; both per row written.

    uv sync --group archive-bench   # asyncpg and psycopg are not main dependencies
    .venv/bin/python -m benchmarks.archive_driver [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no py.typed; see the diary
import msgspec
import psycopg
import uvloop
from psycopg.adapt import Dumper
from psycopg.pq import Format

from tests.support.postgres import PostgresServer

Row = tuple[str, str, datetime, str, str | None, str]
Write = Callable[[Sequence[Row]], Awaitable[None]]

BASE_MS = 1_733_300_000_000  # 2024-12-04 08:13:20 UTC
STEP_MS = 2_160  # 200,000 rows span five days: six daily partitions
COLS = "ws, id, at, type, contact, doc"
DDL = """
CREATE TABLE events (ws text NOT NULL, id text NOT NULL, at timestamptz NOT NULL,
  type text NOT NULL, contact text, doc jsonb NOT NULL, PRIMARY KEY (ws, at, id))
  PARTITION BY RANGE (at)"""
# ON COMMIT DELETE ROWS: the staging table is empty again at each batch's commit
STAGE = (
    "CREATE TEMP TABLE stage (ws text, id text, at timestamptz, type text, contact text, "
    "doc jsonb) ON COMMIT DELETE ROWS"
)
FROM_STAGE = f"INSERT INTO events SELECT {COLS} FROM stage ON CONFLICT DO NOTHING"
# the documents go as text[], each cast in the SELECT: psycopg sends str lists as
# text[], and casting a whole text[] to jsonb[] cost the server ~4.5 µs more a row
UNNEST = (
    f"INSERT INTO events ({COLS}) SELECT ws, id, at, type, contact, doc::jsonb FROM "
    "unnest({}::text[], {}::text[], {}::timestamptz[], {}::text[], {}::text[], {}::text[]) "
    "AS u(ws, id, at, type, contact, doc) ON CONFLICT DO NOTHING"
)
VALUES = f"INSERT INTO events ({COLS}) VALUES ({{}}) ON CONFLICT DO NOTHING"
TYPES = (
    "contact.created", "contact.offered", "contact.assigned", "contact.completed",
    "agent.state", "sla.warning",
)  # fmt: skip


def make_rows(n: int) -> list[Row]:
    """Events shaped like the engine's (router/routing/lua/lib/20_events.lua):
    no customer data, ~400 bytes of JSON each, ids as Redis stream ids."""
    rows = []
    for i in range(n):
        ms = BASE_MS + i * STEP_MS
        kind = TYPES[i % len(TYPES)]
        contact = None if kind == "agent.state" else f"c-{i // 4:08x}{i * 7919 % 65536:04x}"
        ev: dict[str, Any] = {
            "type": kind, "at": ms, "actor": f"gateway:web-{i % 5:02d}", "contact": contact,
            "pool": f"cards-{('premium', 'standard', 'business')[i % 3]}",
            "agent": f"agent-{i % 1666:05d}", "channel": ("voice", "chat", "email")[i % 3],
            "tier": ("gold", "silver", "basic")[i % 3], "wait_ms": i * 37 % 90_000,
            "skills": ["cards", "fraud", "english"], "labels": {"region": "eu-west"},
            "policy": "first-response", "clock": "business-hours", "reason": None,
            "attempt": i % 3, "seq": i, "note": "routed by score; offer accepted on first try",
        }  # fmt: skip
        ws = f"bank-{i % 8}"
        at = datetime.fromtimestamp(ms / 1000, UTC)
        rows.append((ws, f"{ms}-0", at, kind, contact, msgspec.json.encode(ev).decode()))
    return rows


def partitions(rows: Sequence[Row]) -> list[str]:
    first, last = rows[0][2].date(), rows[-1][2].date()
    out = []
    for k in range((last - first).days + 1):
        d: date = first + timedelta(days=k)
        out.append(
            f"CREATE TABLE events_{d:%Y%m%d} PARTITION OF events "
            f"FOR VALUES FROM ('{d}') TO ('{d + timedelta(days=1)}')"
        )
    return out


async def asyncpg_writers(conn: asyncpg.Connection) -> dict[str, Write]:
    await conn.execute(STAGE)
    values = VALUES.format(", ".join(f"${i}" for i in range(1, 7)))
    unnest = UNNEST.format(*(f"${i}" for i in range(1, 7)))

    async def copy_stage(batch: Sequence[Row]) -> None:
        async with conn.transaction():
            await conn.copy_records_to_table("stage", records=batch)
            await conn.execute(FROM_STAGE)

    async def executemany(batch: Sequence[Row]) -> None:
        # atomic by itself (one Sync for the whole batch): no BEGIN/COMMIT round trips
        await conn.executemany(values, batch)

    async def unnest_(batch: Sequence[Row]) -> None:
        await conn.execute(unnest, *zip(*batch, strict=True))

    async def copy(batch: Sequence[Row]) -> None:
        await conn.copy_records_to_table("events", records=batch)

    return {"copy+stage": copy_stage, "executemany": executemany, "unnest": unnest_, "copy": copy}


class JsonbText(Dumper):
    """Our JSON text as a binary jsonb value (version byte 1, then the text):
    psycopg's own jsonb dumper takes Python objects and would encode the
    string a second time; the archive receives events from Redis as JSON text."""

    format = Format.BINARY
    oid = 3802  # jsonb, a built-in type's fixed oid

    def dump(self, obj: str) -> bytes:
        return b"\x01" + obj.encode()


async def psycopg_writers(conn: psycopg.AsyncConnection[Any], fmt: str) -> dict[str, Write]:
    """`fmt`: COPY in binary (with `JsonbText`) or text format."""
    await conn.execute(STAGE)
    conn.adapters.register_dumper(None, JsonbText)  # by oid only: for COPY's set_types
    values = VALUES.format(", ".join(["%s"] * 6))
    # %b: arrays as binary parameters; in text format psycopg quotes each JSON
    # string of the array in Python (~45 µs a row, measured), binary costs ~2
    unnest = UNNEST.format(*["%b"] * 6)

    options = " (FORMAT BINARY)" if fmt == "binary" else ""

    async def copy_into(table: str, batch: Sequence[Row]) -> None:
        sql = f"COPY {table} ({COLS}) FROM STDIN{options}"
        async with conn.cursor() as cur, cur.copy(sql) as cp:
            if fmt == "binary":
                cp.set_types(["text", "text", "timestamptz", "text", "text", "jsonb"])
            for row in batch:
                await cp.write_row(row)

    async def copy_stage(batch: Sequence[Row]) -> None:
        async with conn.transaction():
            await copy_into("stage", batch)
            await conn.execute(FROM_STAGE)

    async def executemany(batch: Sequence[Row]) -> None:
        # psycopg runs executemany in pipeline mode: one round trip per batch; in
        # autocommit mode each row would commit alone, hence the transaction
        async with conn.transaction(), conn.cursor() as cur:
            await cur.executemany(values, batch)

    # one statement in autocommit mode is one transaction: no BEGIN/COMMIT round trips
    async def unnest_(batch: Sequence[Row]) -> None:
        await conn.execute(unnest, [list(c) for c in zip(*batch, strict=True)])

    async def copy(batch: Sequence[Row]) -> None:
        await copy_into("events", batch)

    return {"copy+stage": copy_stage, "executemany": executemany, "unnest": unnest_, "copy": copy}


async def measure(
    server: PostgresServer, write: Write, rows: Sequence[Row], args: argparse.Namespace
) -> dict[str, Any]:
    batches = [rows[i : i + args.batch] for i in range(0, len(rows), args.batch)]
    lat = []
    srv0, cpu0, t0 = server.cpu_seconds(), time.process_time(), time.perf_counter()
    for batch in batches:
        b0 = time.perf_counter()
        await write(batch)
        lat.append(time.perf_counter() - b0)
    wall = time.perf_counter() - t0
    cpu, srv = time.process_time() - cpu0, server.cpu_seconds() - srv0
    qs = statistics.quantiles(lat, n=100, method="inclusive")
    return {
        "rows_per_s": round(len(rows) / wall),
        "seconds": round(wall, 2),
        "client_us_per_row": round(cpu / len(rows) * 1e6, 2),
        "server_us_per_row": round(srv / len(rows) * 1e6, 2),
        "p50_ms": round(qs[49] * 1e3, 2),
        "p99_ms": round(qs[98] * 1e3, 2),
        "batches": len(batches),
    }


async def resend(write: Write, rows: Sequence[Row], args: argparse.Namespace) -> str:
    """Sends `--resend` batches from across the run again; returns what happened."""
    step = max(1, len(rows) // args.resend)
    rejected = 0
    for start in range(0, step * args.resend, step):
        try:
            await write(rows[start : start + args.batch])
        except (asyncpg.UniqueViolationError, psycopg.errors.UniqueViolation):
            rejected += 1  # plain COPY: the whole batch refused, nothing written
    return f"{args.resend} re-sent, 0 new rows" + (
        f", {rejected} refused (key)" if rejected else ""
    )


async def variant(
    server: PostgresServer,
    apg: asyncpg.Connection,
    write: Write,
    rows: list[Row],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One driver and method on a fresh table: the timed write, then the re-sends."""
    # rows whose JSON reads back as an object with the row's type: a document
    # encoded twice (a JSON string) or mangled would not count
    count = "SELECT count(*) FROM events WHERE doc->>'type' = type"
    server.psql("DROP TABLE IF EXISTS events; " + ";".join([DDL, *partitions(rows)]))
    server.psql("CHECKPOINT")  # each variant starts from the same clean state
    res = await measure(server, write, rows, args)
    assert await apg.fetchval(count) == len(rows), "rows missing or mangled"
    res["resend"] = await resend(write, rows, args)
    assert await apg.fetchval(count) == len(rows), "a re-sent batch doubled rows"
    return res


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rows = make_rows(args.rows)
    results = []
    with tempfile.TemporaryDirectory(prefix="archive-bench-") as tmp:
        server = PostgresServer(Path(tmp), settings={"autovacuum": "off"})
        try:
            apg = await asyncpg.connect(server.url)
            pg = await psycopg.AsyncConnection.connect(server.url, autocommit=True)
            writers = {
                "asyncpg": await asyncpg_writers(apg),
                "psycopg": await psycopg_writers(pg, args.psycopg_copy),
            }
            # a pass on `--warmup` rows first, unreported: otherwise the first variant
            # alone pays for the server's cold caches and both drivers' first statements
            warm = argparse.Namespace(**{**vars(args), "resend": 1})
            for method in args.methods:
                for driver in args.drivers:
                    await variant(server, apg, writers[driver][method], rows[: args.warmup], warm)
            # interleaved (each method by one driver, then the other), so a drift
            # of the machine over the run does not land on one driver only
            for method in args.methods:
                for driver in args.drivers:
                    res = await variant(server, apg, writers[driver][method], rows, args)
                    res |= {"driver": driver, "method": method}
                    print(json.dumps(res), file=sys.stderr, flush=True)
                    results.append(res)
            await apg.close()
            await pg.close()
            pg_version = server.psql("SHOW server_version")
        finally:
            server.stop()
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} vCPUs, Python {sys.version.split()[0]}",
        "postgresql": pg_version,
        "asyncpg": version("asyncpg"),
        "psycopg": f"{version('psycopg')} ({psycopg.pq.__impl__}, COPY {args.psycopg_copy})",
        "rows": args.rows,
        "batch": args.batch,
        "doc_bytes_mean": round(statistics.mean(len(r[5]) for r in rows)),
        "results": results,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=1_000)
    p.add_argument("--warmup", type=int, default=10_000, help="rows per unreported pass")
    p.add_argument("--resend", type=int, default=10, help="batches sent a second time")
    p.add_argument("--drivers", nargs="+", default=["asyncpg", "psycopg"])
    p.add_argument("--methods", nargs="+", default=["copy+stage", "executemany", "unnest", "copy"])
    p.add_argument("--psycopg-copy", choices=["binary", "text"], default="binary")
    p.add_argument("--json", type=Path, help="also write the results to this file")
    args = p.parse_args()
    res = uvloop.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    print(f"{res['machine']}; PostgreSQL {res['postgresql']}; asyncpg {res['asyncpg']}; "
          f"psycopg {res['psycopg']}; {res['rows']:,} rows of ~{res['doc_bytes_mean']} B JSON, "
          f"batches of {res['batch']:,}")  # fmt: skip
    print("| driver | method | rows/s | client µs/row | server µs/row | batch p50 ms "
          "| batch p99 ms | re-sent batches |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in res["results"]:
        print(
            f"| {r['driver']} | {r['method']} | {r['rows_per_s']:,} | {r['client_us_per_row']} "
            f"| {r['server_us_per_row']} | {r['p50_ms']} | {r['p99_ms']} | {r['resend']} |"
        )


if __name__ == "__main__":
    main()
