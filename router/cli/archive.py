"""`router archive migrate`: brings the history archive's schema up to date.

    ROUTER_ARCHIVE_URL=postgresql://router@db.bank/router python -m router archive migrate

Applies the missing versioned SQL files of `router/archive/migrations/` in one
transaction (`router/archive/schema.py`); prints the versions applied, or that
the schema was up to date. Exit 2 when the URL is missing, 1 when the schema
cannot be migrated (the message says why).
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
