"""Sealed audit records appended to the history archive (PostgreSQL), then
dropped from Redis.

With `ROUTER_ARCHIVE_URL` set, the sealer runs an `AuditArchive` beside its
sealing loop, for the sources whose lease it holds. Each round, per source:

1. read the sealed records Redis still holds after the last one known to be in
   the archive, and check them with `ChainChecker` from the archive's head:
   the table is append-only, so a record that does not verify (edited in
   Redis, or a chain that restarted after Redis lost its data) is never
   written; the source stops there and the error is logged and counted;
2. in one transaction, move the source's row of `audit_heads` from the
   record before the batch to its last record (compare-and-set on seq and
   hash), then INSERT the batch. Zero rows moved means another writer got
   there first (a lease that moved while this replica was paused, or this
   batch written before a crash): nothing is inserted, the head is read
   again and the records it covers are skipped. So the chain in the database
   never forks and no record is written twice, whoever races;
3. note the archived position in the Redis chain head and trim the sealed
   stream through the last archived record (never past the last exported to
   segment files, when export is on too). Redis then holds the chain head and
   the records not archived yet, nothing more.

A crash between 2 and 3 leaves records in Redis that are in the archive too:
the next round (of any replica) finds them at or below the archive's head and
only trims them. PostgreSQL down or slow: this loop waits and retries on its
own (each round bounded by `timeout`), while sealing in Redis goes on in the
sealer's loop and routing never waits for either; the sealed stream grows
until the archive is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

import msgspec
from psycopg import AsyncConnection, errors
from redis.exceptions import RedisError

from router.runtime.aio import cancel_requested
from router.security.audit.metrics import AuditMetrics
from router.security.audit.records import GENESIS, ChainChecker, Source, id_tuple, stream_ms
from router.security.audit.segments import Exporter
from router.store.scripts import Script, read_lua
from router.store.shards import Shards

log = logging.getLogger(__name__)

BATCH = 500
TIMEOUT = 30.0  # seconds one source's round may take before the connection is dropped
POLL = 0.5
IDLE_MAX = 5.0  # seconds between reads of a source with nothing new to archive
RETRY = 2.0

ENSURE_HEAD = (
    "INSERT INTO audit_heads (source, seq, hash) VALUES (%s, 0, %s) ON CONFLICT (source) DO NOTHING"
)
READ_HEAD = "SELECT seq, hash FROM audit_heads WHERE source = %s"
# The compare-and-set: from the record before the batch to its last one; a
# head at 0 (nothing of this source archived yet) takes a chain whose start
# Redis no longer holds (archiving switched on after retention trimmed it).
MOVE_HEAD = (
    "UPDATE audit_heads SET seq = %s, hash = %s, updated_at = now() "
    "WHERE source = %s AND ((seq = %s AND hash = %s) OR seq = 0)"
)
INSERT = (
    "INSERT INTO audit_records (source, seq, at, record, hash) "
    "SELECT %s, seq, at, record, hash FROM unnest("
    "%b::bigint[], %b::timestamptz[], %b::text[], %b::text[]) AS u(seq, at, record, hash)"
)
ARCHIVED_LUA = read_lua("router.security.audit", "archived")


class _Fields(msgspec.Struct):
    seq: int
    prev: str
    hash: str
    src: str


_fields = msgspec.json.Decoder(_Fields)


class ChainMismatch(Exception):
    """A sealed record in Redis does not continue the archived chain."""


class _Refused(Exception):
    """The archive's head moved: another writer appended first."""


@dataclass
class ArchiveHead:
    """What this replica knows of one source's chain in the archive."""

    loaded: bool = False
    seq: int = 0
    hash: str = GENESIS
    after: str = ""  # sealed-stream id of the last record known to be archived
    # An idle source is read less and less often, up to IDLE_MAX apart, so the
    # sources of a quiet replica cost Redis next to nothing (as in the sealer).
    idle: int = 0
    next_read: float = 0.0
    marked: tuple[int, str] = (0, "")  # (seq, MINID) last noted in Redis
    failing_since: float | None = field(default=None)


@dataclass
class _Row:
    sealed_id: str
    seq: int
    prev: str
    hash: str
    at: dt.datetime
    line: str


def record_time(src: str) -> dt.datetime:
    """A record's partition time: the source entry's stream id (Redis TIME when
    it was added), so a batch written again lands on the same day and key."""
    return dt.datetime.fromtimestamp(stream_ms(src) / 1000, dt.UTC)


class AuditArchive:
    def __init__(
        self,
        shards: Shards,
        url: str,
        *,
        exporter: Exporter | None = None,
        metrics: AuditMetrics | None = None,
        batch: int = BATCH,
        timeout: float = TIMEOUT,
        poll: float = POLL,
        retry: float = RETRY,
    ) -> None:
        self._shards = shards
        self._url = url
        self.exporter = exporter
        self.metrics = metrics
        self.batch = batch
        self.timeout = timeout
        self.poll = poll
        self.retry = retry
        self._script = Script(ARCHIVED_LUA)
        self._days: set[dt.date] = set()  # partitions known to exist
        self.heads: dict[str, ArchiveHead] = {}
        self.archived = 0

    # --- loop -------------------------------------------------------------------

    async def run(self, sources: Callable[[], Iterable[Source]]) -> None:
        """Until cancelled: archives the sources `sources()` names (the ones
        whose sealing lease this replica holds), reconnecting after errors."""
        failing = False
        while not cancel_requested():
            try:
                async with await AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=10
                ) as conn:
                    while not cancel_requested():
                        moved = await self.round(conn, list(sources()))
                        if failing:
                            log.info("audit archiving resumed")
                        failing = False
                        await asyncio.sleep(0 if moved >= self.batch else self.poll)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # PostgreSQL or Redis away: records wait in Redis
                if not failing:  # once per outage; the type only (a message may quote the URL)
                    log.warning("audit archiving paused (%s, %s); retrying", type(exc).__name__,
                                getattr(exc, "sqlstate", None) or "-")  # fmt: skip
                failing = True
                self._shards.suspect(exc)
                for head in self.heads.values():
                    head.loaded = False  # re-read after reconnecting: it may have moved
                await asyncio.sleep(self.retry)

    async def round(self, conn: AsyncConnection, sources: list[Source]) -> int:
        """One batch per source; the most records any source moved."""
        most = 0
        for name in set(self.heads) - {s.name for s in sources}:
            del self.heads[name]  # lease gone: when it comes back, the archive has moved on
        for source in sources:
            head = self.heads.get(source.name)
            if head is not None and time.monotonic() < head.next_read:
                continue
            try:
                async with asyncio.timeout(self.timeout):
                    moved = await self.archive_once(conn, source)
            except (ChainMismatch, RedisError) as exc:  # this source only; the others go on
                self._failed(source, exc)
                continue
            most = max(most, moved)
            head = self.heads[source.name]
            head.idle = 0 if moved else min(head.idle + 1, 8)
            wait = min(self.poll * 2 ** (head.idle - 1), IDLE_MAX) if head.idle else 0.0
            head.next_read = time.monotonic() + wait
        return most

    def _failed(self, source: Source, exc: Exception) -> None:
        if self.metrics:
            self.metrics.errors.labels(source.label).inc()
        head = self.heads.setdefault(source.name, ArchiveHead())
        head.loaded = False
        now = time.monotonic()
        if head.failing_since is None or now - head.failing_since > 60:
            head.failing_since = now
            detail = str(exc) if isinstance(exc, ChainMismatch) else type(exc).__name__
            log.error("audit %s: not archived: %s", source.name, detail)

    # --- one source ---------------------------------------------------------------

    async def archive_once(self, conn: AsyncConnection, source: Source) -> int:
        """Archives the next batch of one source's sealed records; returns how
        many it wrote or found archived already (0: none waiting, or another
        writer was first)."""
        head = self.heads.setdefault(source.name, ArchiveHead())
        fresh = not head.loaded
        if fresh:
            await self._load(conn, source, head)
        rows, archived_through, skipped, problem = await self._pending(source, head)
        if problem is not None and not rows and not fresh:
            # another writer may have archived (and trimmed) past what this one
            # knew: only a mismatch against the head as it is now is reported
            head.loaded = False
            return skipped
        written = 0
        if rows:
            try:
                await self._append(conn, source, head, rows)
            except _Refused:
                head.loaded = False  # read the head again next round, and skip what it covers
                return 0
            written = len(rows)
            archived_through = rows[-1].sealed_id
            head.seq, head.hash = rows[-1].seq, rows[-1].hash
            self.archived += written
            if self.metrics:
                self.metrics.archived.labels(source.label).inc(written)
        if archived_through:
            head.after = archived_through
        await self._trim(source, head)
        if problem is not None:
            raise ChainMismatch(problem)
        head.failing_since = None
        return written + skipped

    async def _load(self, conn: AsyncConnection, source: Source, head: ArchiveHead) -> None:
        await conn.execute(ENSURE_HEAD, (source.name, GENESIS))
        cur = await conn.execute(READ_HEAD, (source.name,))
        row = await cur.fetchone()
        assert row is not None  # ensured just above; heads are never deleted
        head.seq, head.hash = int(row[0]), str(row[1])
        head.after, head.loaded = "", True  # read Redis from its first sealed record

    async def _pending(
        self, source: Source, head: ArchiveHead
    ) -> tuple[list[_Row], str, int, str | None]:
        """The next records to write (checked), the sealed id of the last record
        found archived already ('') and how many were, and why the batch stops
        early (None)."""
        start = "(" + head.after if head.after else "-"
        got = await self._shards.of(source.sealed).xrange(
            source.sealed, start, "+", count=self.batch
        )
        entries = cast(list[tuple[str, dict[str, str]]], got)
        checker = ChainChecker(source.name, head.seq + 1, head.hash) if head.seq else None
        rows: list[_Row] = []
        already, skipped = "", 0
        for i, (eid, fields) in enumerate(entries):
            line = fields.get("r", "")
            try:
                rec = _fields.decode(line)
            except msgspec.DecodeError:
                return rows, already, skipped, f"sealed record {eid} is unreadable"
            if rec.seq <= head.seq:  # archived before a crash kept it from being trimmed
                already, skipped = eid, skipped + 1
                continue
            if checker is None:  # nothing archived yet: the first record Redis holds anchors
                checker = ChainChecker(source.name)
            problem = checker.check(line)
            if problem is not None:
                return rows, already, skipped, f"sealed record seq {problem.seq}: {problem.reason}"
            rows.append(_Row(eid, rec.seq, rec.prev, rec.hash, record_time(rec.src), line))
            if i % 100 == 99:
                await asyncio.sleep(0)  # hashing a batch must not hold the loop
        return rows, already, skipped, None

    async def _append(
        self, conn: AsyncConnection, source: Source, head: ArchiveHead, rows: list[_Row]
    ) -> None:
        # Partitions first, outside the transaction: creating one takes a lock on
        # the parent table that the append should not hold longer than it must.
        for day in sorted({r.at.date() for r in rows} - self._days):
            # another writer may make it at the same moment: IF NOT EXISTS races
            with contextlib.suppress(errors.DuplicateTable, errors.UniqueViolation):
                await conn.execute("SELECT archive_day_partition('audit_records', %s)", (day,))
            self._days.add(day)
        first, last = rows[0], rows[-1]
        async with conn.transaction():
            cur = await conn.execute(
                MOVE_HEAD, (last.seq, last.hash, source.name, first.seq - 1, first.prev)
            )
            if cur.rowcount != 1:
                raise _Refused  # rolls the transaction back: nothing was written
            columns = ([r.seq for r in rows], [r.at for r in rows], [r.line for r in rows],
                       [r.hash for r in rows])  # fmt: skip
            await conn.execute(INSERT, (source.name, *columns))

    async def _trim(self, source: Source, head: ArchiveHead) -> None:
        """Marks the archived position in the Redis chain head and drops the
        sealed records through it (and through the last exported, with export)."""
        if not head.after:
            return
        bound = id_tuple(head.after)
        if self.exporter is not None:
            done = self.exporter.exported_id.get(source.name)
            bound = min(bound, id_tuple(done)) if done else (0, 0)
        minid = f"{bound[0]}-{bound[1] + 1}" if bound > (0, 0) else ""
        if (head.seq, minid) == head.marked:
            return
        await self._script(keys=[source.head, source.sealed], args=[head.seq, head.hash, minid],
                           client=self._shards.of(source.head))  # fmt: skip
        head.marked = (head.seq, minid)
