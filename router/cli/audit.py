"""`router audit verify` and `router audit export`.

    python -m router audit verify --dir DIR [--source S]   segment files
    python -m router audit verify --archive [URL] [--source S]   the history archive
    python -m router audit verify [--workspace W | --source S]   live (REDIS_URL)
    python -m router audit export --dir DIR [--workspace W | --source S]

A source is `ws:<name>` (`--workspace W` is `--source ws:W`), `access-<n>` (one of
the access-denial streams) or `access` (where denials went before they were sharded).
`--archive` checks the chain in PostgreSQL (URL, else ROUTER_ARCHIVE_URL); with
an archive configured, the live check covers what Redis still holds (the records
not archived yet) and that it continues the archived chain.
Verify prints one line per source, OK with counts and the last hash (keep it:
it anchors the chain), or the first bad record and why; it exits 1 when any
source is bad, 2 when there is nothing to verify.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any, cast

from router.security.audit.records import Source

DEFAULT_SEGMENT_RECORDS = 100_000
DEFAULT_SEGMENT_SECONDS = 3600.0


def add_cli(sub: Any) -> None:
    a = sub.add_parser("audit", help="audit trail: verify a log, export segment files")
    asub = a.add_subparsers(dest="audit_cmd", required=True)
    v = asub.add_parser("verify", help="check segment files (--dir) or the live sealed stream")
    v.add_argument("--dir", help="export directory (segment files and manifests)")
    v.add_argument("--archive", nargs="?", const="", metavar="URL",
                   help="check the history archive in PostgreSQL (default URL: "
                        "ROUTER_ARCHIVE_URL)")  # fmt: skip
    v.add_argument("--source", help="`ws:<name>`, `access-<n>` or `access`; default: every source")
    v.add_argument("--workspace", help="a workspace (same as --source ws:<name>)")
    v.set_defaults(fn=_verify)
    e = asub.add_parser("export", help="write sealed records to segment files now, once")
    e.add_argument("--dir", required=True)
    e.add_argument("--source")
    e.add_argument("--workspace")
    e.add_argument("--segment-records", type=int, default=DEFAULT_SEGMENT_RECORDS)
    e.add_argument("--segment-seconds", type=float, default=DEFAULT_SEGMENT_SECONDS)
    e.set_defaults(fn=_export)


def _source(args: argparse.Namespace) -> Source | None:
    if args.workspace:
        return Source.workspace(args.workspace)
    return Source.parse(args.source) if args.source else None


def _redis_url() -> str | None:
    url = os.environ.get("REDIS_URL")
    if not url:
        print("REDIS_URL is not set: give the Redis holding the audit chain", file=sys.stderr)
    return url


async def _all_sources(shards: Any) -> list[Source]:
    from router.store.keys import WORKSPACES

    names = sorted(cast(set[str], await shards.of(WORKSPACES).smembers(WORKSPACES)))
    return [*(Source.workspace(n) for n in names), *Source.accesses()]


def _verify(args: argparse.Namespace) -> int:
    from router.security.audit.verify import Result, verify_dir, verify_live

    source = _source(args)
    results: list[Result]
    if args.dir:
        root = Path(args.dir)
        if not root.is_dir():
            print(f"{root}: not a directory", file=sys.stderr)
            return 2
        results = verify_dir(root, source)
    elif args.archive is not None:
        url = args.archive or os.environ.get("ROUTER_ARCHIVE_URL")
        if not url:
            print("give --archive URL or set ROUTER_ARCHIVE_URL", file=sys.stderr)
            return 2
        import psycopg

        try:
            results = asyncio.run(_verify_archive(url, source))
        except psycopg.Error as exc:  # the type and SQLSTATE: a message may quote the URL
            print(f"archive unreachable or not migrated: {type(exc).__name__} "
                  f"({exc.sqlstate or '-'})", file=sys.stderr)  # fmt: skip
            return 2
    else:
        url = _redis_url()
        if not url:
            return 2

        async def live() -> list[Result]:
            from router.store.client import open_shards

            shards = await open_shards(url, 30.0)
            try:
                sources = [source] if source else await _all_sources(shards)
                return [await verify_live(shards.of(s.head), s) for s in sources]
            finally:
                await shards.aclose()

        results = asyncio.run(live())
    if not results:
        print("nothing to verify", file=sys.stderr)
        return 2
    for r in results:
        print(r.text())
    return 0 if all(r.ok for r in results) else 1


async def _verify_archive(url: str, source: Source | None) -> list[Any]:
    from psycopg import AsyncConnection

    from router.security.audit.verify import archived_sources, verify_archive

    async with await AsyncConnection.connect(url, autocommit=True, connect_timeout=30) as conn:
        sources = [source] if source else await archived_sources(conn)
        return [await verify_archive(conn, s) for s in sources]


def _export(args: argparse.Namespace) -> int:
    from router.security.audit.segments import Exporter, ExportError
    from router.store.client import open_shards

    url = _redis_url()
    if not url:
        return 2
    source = _source(args)

    async def run() -> int:
        shards = await open_shards(url, 30.0)
        exporter = Exporter(shards, Path(args.dir), args.segment_records, args.segment_seconds)
        failed = 0
        try:
            for s in [source] if source else await _all_sources(shards):
                total = 0
                try:
                    while n := await exporter.catch_up(s):
                        total += n
                except ExportError as exc:
                    print(f"{s.name}: export failed: {exc}", file=sys.stderr)
                    failed += 1
                    continue
                print(f"{s.name}: {total} record(s) exported")
        finally:
            await shards.aclose()
        return 1 if failed else 0

    return asyncio.run(run())
