"""Retention of the history archive: whole daily partitions are dropped once
they are entirely older than their class's window.

Windows come from the workspaces' configs (`retention` block, read from each
workspace's runtime hash as the audit retention reads them): `contacts` and
`sla_outcomes` follow the contacts window, `events` the events window,
`audit_records` the audit window ("keep", the default: never dropped).
A partition holds one day of every workspace, so the longest window any
workspace asks for applies, and one that keeps ("keep") keeps the table: the
same rule as the shared `access` stream (router/security/audit/retention.py).
A workspace without a config asks for nothing (it holds no data); no
workspace at all drops nothing.

The writer role may not drop tables: the SECURITY DEFINER function
`archive_drop_partitions` of migration 0003 does it, refusing what the owner's
floor (`archive_retention_floor`) keeps, so the writer can never erase the
audit trail early; `archive_drop_limit` tells the round how far it may go.
Dropping a whole partition deletes no row one by one (no vacuum, no bloat)
and fires no trigger, which the append-only audit table relies on.

One replica at a time holds the Redis lease `router:archive:retention` and
runs a round every hour (at once when it takes the lease over); the SQL
function also serialises callers, so an overlap drops nothing twice.
`router_archive_partitions_dropped_total{table}` counts what was dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter
from psycopg import AsyncConnection

from router.runtime.aio import cancel_requested, worker_name
from router.store.keys import WsKeys
from router.store.leases import LEASE_LUA, RELEASE_LUA
from router.store.scripts import Script
from router.store.shards import Shards
from router.store.workspaces import Workspaces

log = logging.getLogger(__name__)

# archive table -> the runtime hash field holding its window (seconds, 0: keep)
TABLES: dict[str, str] = {
    "contacts": "retention_s",
    "sla_outcomes": "retention_s",
    "events": "ret_events_s",
    "audit_records": "ret_audit_s",
}
LEASE_KEY = "router:archive:retention"
LEASE_MS = 120_000  # far longer than a round: connect (10 s) + 4 drops (5 s lock wait each)
RENEW_EVERY = 30.0
INTERVAL = 3600.0  # a day's partition goes within the hour after it is due
RETRY = 300.0  # after a failed round (PostgreSQL away)


def longest(windows: list[int]) -> int:
    """The longest window, 0 (keep) when any keeps or there is none."""
    return 0 if not windows or 0 in windows else max(windows)


async def windows(shards: Shards, workspaces: Workspaces) -> dict[str, int]:
    """Archive table -> the window in seconds that applies to it (0: keep)."""
    fields = sorted(set(TABLES.values()))
    asked: dict[str, list[int]] = {f: [] for f in fields}
    for ws in await workspaces.names():  # rare: once a round
        rt = WsKeys(ws).runtime
        got = await shards.of(rt).hmget(rt, fields)
        if all(v is None for v in got):
            continue  # registered, no config yet: no data, no say
        for f, v in zip(fields, got, strict=True):
            asked[f].append(int(v or 0))
    return {table: longest(asked[f]) for table, f in TABLES.items()}


async def prune(conn: AsyncConnection, table_windows: Mapping[str, int]) -> list[tuple[str, str]]:
    """One round on an autocommit connection: for each table with a window,
    drops its partitions entirely older than now (PostgreSQL's clock) minus the
    window, never past what the connection's role may (the owner's floor);
    returns (table, partition) dropped."""
    dropped: list[tuple[str, str]] = []
    for table, window in table_windows.items():
        if window <= 0:
            continue  # keep
        # a partition is one UTC day: those ending by the midnight on or before
        # `now - window` hold nothing inside the window
        cur = await conn.execute(
            "SELECT (now() AT TIME ZONE 'UTC' - make_interval(secs => %s))::date,"
            " archive_drop_limit(%s::regclass)",
            (window, table),
        )
        row = await cur.fetchone()
        assert row is not None
        before, limit = row
        if limit is None:  # the owner's floor: this role never drops these
            log.info("archive retention: %s kept (only its owner may drop them)", table)
            continue
        if before > limit:
            log.info(
                "archive retention: %s kept from %s on (the owner's floor; the window "
                "would drop to %s)", table, limit, before,
            )  # fmt: skip
            before = limit
        cur = await conn.execute(
            "SELECT archive_drop_partitions(%s::regclass, %s)", (table, before)
        )
        dropped += [(table, str(r[0])) for r in await cur.fetchall()]
    return dropped


class ArchiveRetention:
    """The hourly round, on the replica holding the lease."""

    def __init__(
        self,
        shards: Shards,
        workspaces: Workspaces,
        url: str,
        registry: CollectorRegistry | None = None,
        interval: float = INTERVAL,
        renew: float = RENEW_EVERY,
        lease_ms: int = LEASE_MS,
    ) -> None:
        self._shards = shards
        self._workspaces = workspaces
        self._url = url
        self._interval = interval
        self._renew = renew
        self._lease_ms = lease_ms
        self._lease = Script(LEASE_LUA)
        self._release = Script(RELEASE_LUA)
        self.owner = worker_name()
        self._next_round = 0.0  # monotonic; 0: at once
        self.rounds = 0
        self.dropped = Counter(
            "router_archive_partitions_dropped_total",
            "Daily archive partitions dropped by retention",
            ["table"],
            registry=registry,
        )

    async def hold(self) -> bool:
        """Takes or renews the lease; True while this replica holds it."""
        client = self._shards.of(LEASE_KEY)
        held = bool(
            await self._lease(keys=[LEASE_KEY], args=[self.owner, self._lease_ms], client=client)
        )
        if not held:
            self._next_round = 0.0  # another replica runs the rounds; ours at once on takeover
        return held

    async def release(self) -> None:
        """On shutdown: another replica takes over at its next renewal."""
        client = self._shards.of(LEASE_KEY)
        await self._release(keys=[LEASE_KEY], args=[self.owner], client=client)

    async def tick(self) -> list[tuple[str, str]] | None:
        """Renews the lease and, holding it with a round due, runs one; returns
        what it dropped ([] when no round was due), None when another replica
        holds the lease."""
        if not await self.hold():
            return None
        if time.monotonic() < self._next_round:
            return []
        self._next_round = time.monotonic() + RETRY  # until this round succeeds
        dropped = await self.round()
        self._next_round = time.monotonic() + self._interval
        return dropped

    async def round(self) -> list[tuple[str, str]]:
        table_windows = await windows(self._shards, self._workspaces)
        dropped: list[tuple[str, str]] = []
        if any(table_windows.values()):
            async with await AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=10
            ) as conn:
                dropped = await prune(conn, table_windows)
        self.rounds += 1
        for table, partition in dropped:
            self.dropped.labels(table).inc()
            log.info(
                "archive retention: dropped %s (%s window %s)",
                partition, table, dt.timedelta(seconds=table_windows[table]),
            )  # fmt: skip
        return dropped

    async def run(self) -> None:
        """Until cancelled; gives the lease back on the way out."""
        try:
            while not cancel_requested():
                try:
                    await self.tick()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # PostgreSQL or Redis away: the next tick retries
                    self._shards.suspect(exc)
                    # the type and SQLSTATE only: a driver's message may quote the URL
                    state = getattr(exc, "sqlstate", None) or "-"
                    log.warning("archive retention round failed (%s, %s)",
                                type(exc).__name__, state)  # fmt: skip
                await asyncio.sleep(self._renew)
        finally:
            with contextlib.suppress(Exception):
                await self.release()
