"""Copies every workspace's events into the archive, each exactly once.

Any replica may run it. Each workspace's event stream has a consumer group
`archive`; a replica reads a batch with XREADGROUP (and with XAUTOCLAIM what a
replica that died had read and not acknowledged), writes it in one INSERT from
arrays (`ON CONFLICT DO NOTHING` on the event's id and time), then acknowledges
it. A crash between the two writes the batch again, which adds nothing: the key
is the Redis stream id and the time it carries, never the time of writing.
PostgreSQL down: nothing is acknowledged, the entries wait in the stream, and
the archiver catches up when it is back. Routing never waits for it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter
from psycopg import AsyncConnection
from redis.exceptions import ResponseError

from router.archive.agent_states import write_intervals
from router.archive.configs import write_versions
from router.archive.contacts import ContactRows, closing_contacts
from router.archive.gaps import gap_row
from router.archive.rows import INSERT, Row, event_rows
from router.runtime.aio import cancel_requested, worker_name
from router.store.keys import ARCHIVE_GROUP, WsKeys
from router.store.shards import Shards
from router.store.workspaces import Workspaces

log = logging.getLogger(__name__)

GROUP = ARCHIVE_GROUP
BATCH = 1000
IDLE_MAX = 5.0  # seconds between reads of a workspace with nothing new


class EventArchiver:
    def __init__(
        self,
        shards: Shards,
        workspaces: Workspaces,
        url: str,
        registry: CollectorRegistry | None = None,
        poll: float = 0.5,
        batch: int = BATCH,
        claim_idle: float = 60.0,
    ) -> None:
        self._shards = shards
        self._workspaces = workspaces
        self._url = url
        self._poll = poll
        self._batch = batch
        self._claim_idle_ms = int(claim_idle * 1000)
        self.consumer = worker_name()
        self._groups: set[str] = set()
        self._days: set[dt.date] = set()  # partitions known to exist
        self._next_claim: dict[str, float] = {}
        # An idle workspace is read less and less often, up to IDLE_MAX apart, so
        # an idle replica costs Redis next to nothing (as the timer worker and the
        # sealer); a busy one is read every round.
        self._next_read: dict[str, float] = {}
        self._idle: dict[str, int] = {}
        # Workspaces where this archiver read a batch it could not write or
        # acknowledge: it reads its own pending entries there first (XAUTOCLAIM
        # would give them back only after `claim_idle`).
        self._own_pending: set[str] = set()
        self.archived = 0
        self.contact_rows = ContactRows()
        self.events = Counter(
            "router_archive_events_total", "Events written to the history archive",
            registry=registry,
        )  # fmt: skip
        self.contacts = Counter(
            "router_archive_contacts_total",
            "Finished contacts written (or rewritten after a late action) to the history archive",
            registry=registry,
        )  # fmt: skip
        self.gaps = Counter(
            "router_archive_gaps_total",
            "Gaps recorded: events trimmed from a stream (length cap) before they were archived",
            registry=registry,
        )  # fmt: skip
        self.config_missing = Counter(
            "router_archive_config_versions_missing_total",
            "Config versions that left Redis before the archive copied them (recorded empty)",
            registry=registry,
        )  # fmt: skip
        self.errors = Counter(
            "router_archive_errors_total", "Archive rounds that failed (PostgreSQL or Redis)",
            registry=registry,
        )  # fmt: skip

    async def run(self) -> None:
        """Until cancelled: connects, archives every workspace, reconnects after errors."""
        while not cancel_requested():
            try:
                async with await AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=10
                ) as conn:
                    while not cancel_requested():
                        moved = 0
                        for ws in await self._workspaces.names():
                            if time.monotonic() >= self._next_read.get(ws, 0.0):
                                moved += await self.archive_once(conn, ws)
                        if not moved:
                            await asyncio.sleep(self._poll)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # PostgreSQL or Redis away: entries wait in the streams
                self.errors.inc()
                if isinstance(exc, psycopg.errors.CheckViolation):
                    # no partition for a row: retention dropped a day this process
                    # had made (a late row after a long outage); make them again
                    self._days.clear()
                    self.contact_rows.days.clear()
                self._shards.suspect(exc)
                log.warning("archiving events paused (%s); retrying", type(exc).__name__)
                await asyncio.sleep(1.0)

    async def archive_once(self, conn: AsyncConnection, ws: str) -> int:
        """Archives one batch of the workspace's events; returns how many."""
        keys = WsKeys(ws)
        client = self._shards.of(keys.tag)
        if ws not in self._groups:
            try:  # from the start of what the stream holds: nothing is left out
                await client.xgroup_create(keys.events, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            # The workspace is archived: its scripts stop keeping a timeline copy
            # per contact (the archive has every event), see lib/20_events.lua.
            await client.hset(keys.runtime, "arch", "1")
            self._groups.add(ws)
        entries = await self._read(conn, client, keys, ws)
        if not entries and ws in self._own_pending:
            self._own_pending.discard(ws)  # written after all: nothing of ours is pending
        if not entries:
            idle = self._idle[ws] = min(self._idle.get(ws, 0) + 1, 8)
            wait = min(self._poll * 2 ** (idle - 1), IDLE_MAX)
            self._next_read[ws] = time.monotonic() + wait
            return 0
        self._idle[ws] = 0
        self._next_read.pop(ws, None)
        rows = event_rows(ws, entries)
        self._own_pending.add(ws)  # until acknowledged
        await self._partitions(conn, rows)
        await conn.execute(INSERT, [list(c) for c in zip(*rows, strict=True)])
        await write_intervals(conn, rows)  # agents' time in each state
        self.config_missing.inc(await write_versions(conn, client, ws, rows))
        written = await self.contact_rows.write(
            conn, client, ws, closing_contacts((r[3], r[4]) for r in rows)
        )
        self.contacts.inc(written)
        await client.xack(keys.events, GROUP, *(sid for sid, _ in entries))
        if len(entries) < self._batch:
            self._own_pending.discard(ws)  # a short batch: nothing more of ours waits
        self.archived += len(rows)
        self.events.inc(len(rows))
        return len(rows)

    async def _check_gap(self, conn: AsyncConnection, client: Any, ws: str) -> None:
        """Records entries trimmed before the archive read them. It runs before
        every read of new entries (two XINFO calls in one round trip, per batch):
        that read moves the group past the hole, after which nothing shows it."""
        row = await gap_row(client, ws)
        if row is None:
            return
        await self._partitions(conn, [row])
        await conn.execute(INSERT, [list(c) for c in zip(row, strict=True)])
        self.gaps.inc()
        log.error("archive gap in workspace %s: events trimmed unarchived after %s", ws, row[1])

    async def _partitions(self, conn: AsyncConnection, rows: list[Row]) -> None:
        for day in sorted({r[2].date() for r in rows} - self._days):
            await conn.execute("SELECT archive_day_partition('events', %s)", (day,))
            self._days.add(day)

    async def _read(
        self, conn: AsyncConnection, client: Any, keys: WsKeys, ws: str
    ) -> list[tuple[str, Any]]:
        if ws in self._own_pending:  # this consumer's own unacknowledged entries, first
            res = await client.xreadgroup(
                GROUP, self.consumer, {keys.events: "0"}, count=self._batch
            )
            own = list(res[0][1]) if res else []
            gone = [sid for sid, f in own if not f]  # deleted from the stream meanwhile
            if gone:
                await client.xack(keys.events, GROUP, *gone)
            own = [(sid, f) for sid, f in own if f]
            if own:
                return own
        now = time.monotonic()
        if now >= self._next_claim.get(ws, 0.0):
            # what another replica read and never acknowledged (it died mid-batch)
            self._next_claim[ws] = now + self._claim_idle_ms / 4000
            claimed = await client.xautoclaim(
                keys.events, GROUP, self.consumer, self._claim_idle_ms, "0-0", count=self._batch
            )
            got = [(sid, f) for sid, f in claimed[1] if sid is not None]
            if got:
                return got
        await self._check_gap(conn, client, ws)
        res = await client.xreadgroup(GROUP, self.consumer, {keys.events: ">"}, count=self._batch)
        return list(res[0][1]) if res else []
