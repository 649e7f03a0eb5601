"""`router archive migrate`: brings the history archive's schema up to date;
`router archive prune`: one retention round now.

    ROUTER_ARCHIVE_URL=postgresql://router@db.bank/router python -m router archive migrate
    REDIS_URL=... python -m router archive prune --url postgresql://owner@db.bank/router

`migrate` applies the missing versioned SQL files of `router/archive/migrations/`
in one transaction (`router/archive/schema.py`); prints the versions applied, or
that the schema was up to date. `prune` drops the daily partitions past the
windows the workspaces' configs in REDIS_URL give (`router/archive/retention.py`)
with the URL's role: run with the tables' owner, the owner's floor does not hold
it back (the audit trail's partitions included). Exit 2 when a URL is missing,
1 when the schema cannot be migrated or the round failed (the message says why).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

URL_VARIABLE = "ROUTER_ARCHIVE_URL"


def add_cli(sub: Any) -> None:
    a = sub.add_parser("archive", help="history archive (PostgreSQL): schema migrations")
    asub = a.add_subparsers(dest="archive_cmd", required=True)
    m = asub.add_parser("migrate", help="apply the schema versions the archive lacks")
    m.add_argument("--url", help=f"PostgreSQL URL (default: ${URL_VARIABLE})")
    m.set_defaults(fn=_migrate)
    p = asub.add_parser(
        "prune", help="drop the daily partitions past the workspaces' retention windows, now"
    )
    p.add_argument("--url", help=f"PostgreSQL URL (default: ${URL_VARIABLE})")
    p.set_defaults(fn=_prune)


def _migrate(args: argparse.Namespace) -> int:
    from psycopg import AsyncConnection, Error

    from router.archive.schema import SchemaError, migrate, migrations

    url = args.url or os.environ.get(URL_VARIABLE)
    if not url:
        print(f"{URL_VARIABLE} is not set: give the archive's PostgreSQL URL", file=sys.stderr)
        return 2

    async def run() -> list[int]:
        async with await AsyncConnection.connect(url, connect_timeout=10) as conn:
            return await migrate(conn)

    try:
        done = asyncio.run(run())
    except (SchemaError, Error) as exc:
        print(f"archive migration failed: {exc}", file=sys.stderr)
        return 1
    latest = len(migrations())
    if done:
        print(f"archive schema: applied {', '.join(map(str, done))}; now at version {latest}")
    else:
        print(f"archive schema: up to date at version {latest}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    from psycopg import AsyncConnection, Error

    from router.archive.retention import prune, windows
    from router.store.client import open_shards
    from router.store.workspaces import Workspaces

    url = args.url or os.environ.get(URL_VARIABLE)
    redis_url = os.environ.get("REDIS_URL")
    if not url or not redis_url:
        print(f"give {URL_VARIABLE} (or --url) and REDIS_URL (the workspaces' windows)",
              file=sys.stderr)  # fmt: skip
        return 2

    async def run() -> tuple[dict[str, int], list[tuple[str, str]]]:
        shards = await open_shards(redis_url, 10.0)
        try:
            table_windows = await windows(shards, Workspaces(shards))
        finally:
            await shards.aclose()
        async with await AsyncConnection.connect(url, autocommit=True, connect_timeout=10) as conn:
            return table_windows, await prune(conn, table_windows)

    try:
        table_windows, dropped = asyncio.run(run())
    except Error as exc:
        print(f"archive prune failed: {exc}", file=sys.stderr)
        return 1
    for table, seconds in table_windows.items():
        print(f"{table}: " + (f"window {seconds} s" if seconds else "kept"))
    for table, partition in dropped:
        print(f"dropped {partition} ({table})")
    print(f"{len(dropped)} partition(s) dropped")
    return 0
