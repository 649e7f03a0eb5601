"""The sealer: hash-chains every source entry, in stream order, one replica at a time.

Every replica runs one `Sealer`. For each source stream (each workspace's
events, and the global `router:access` stream of denied requests) it tries to
hold a Redis lease (`<chain>:lease`, SET NX PX, renewed every third of its
life); only the holder seals that source. A dead holder's lease runs out and
another replica carries on from the chain head kept in Redis.

Sealing one batch (up to `batch` entries) is: read the entries after the
head's source id, build and hash the records here (SHA-256; Redis Lua has no
SHA-256), then one script (`lua/seal.lua`) appends them and moves the head,
but only if the head is still where this replica read it. So even two
replicas that both believe they hold the lease (a paused process whose lease
ran out) can never fork the chain: the second one's write is refused and it
re-reads.

The holder also exports sealed records to segment files (`ROUTER_AUDIT_DIR`,
see `segments.py`) and applies retention: source entries older than the
`events` (or `access`) window are trimmed (XTRIM MINID), never past the last
sealed one; sealed records and segments older than the `audit` window
(default: kept) likewise, never past the last exported one.

With a history archive (`ROUTER_ARCHIVE_URL`), a second loop of the holder
appends the sealed records to PostgreSQL and drops them from Redis once they
are there (`archiving.py`); it runs beside the sealing loop, so a slow or
absent PostgreSQL never holds sealing up. Events then also leave the stream
once sealed and archived (`retention.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, cast

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from router.runtime.aio import cancel_requested, worker_name
from router.runtime.settings import Settings
from router.security.audit.archiving import AuditArchive
from router.security.audit.metrics import AuditMetrics
from router.security.audit.records import (
    GENESIS,
    Source,
    event_json,
    gap_event,
    id_tuple,
    seal_record,
    stream_ms,
)
from router.security.audit.retention import Retention
from router.security.audit.segments import Exporter, ExportError
from router.store.batch import call_once, pack_command, send_packed
from router.store.leases import LEASE_LUA, RELEASE_LUA
from router.store.scripts import Script
from router.store.shards import Shards
from router.store.workspaces import Workspaces

log = logging.getLogger(__name__)

LEASE_MS = 10_000
# Longest pause between rounds while nothing new comes in (seconds).
IDLE_POLL_MAX = 2.0


def _lua(name: str) -> str:
    return (
        resources.files("router.security.audit").joinpath("lua", name + ".lua").read_text("utf-8")
    )


# Read once at import; loaded into each Redis on first use (NOSCRIPT).
SEAL_LUA = _lua("seal")


@dataclass
class Chain:
    """What this replica knows of one source's chain while it holds the lease."""

    source: Source
    loaded: bool = False
    seq: int = 0
    hash: str = GENESIS
    src: str = ""  # last source entry id sealed
    # Ordinal of `src` among all entries ever added to the source (XINFO
    # entries-added counts them), to tell how many were deleted unsealed.
    ord: int | None = None
    last_id: str = ""  # id of the newest sealed record (to skip idle exports)
    next_trim: float = 0.0
    next_roll: float = 0.0
    failing_since: float | None = field(default=None)


class Sealer:
    def __init__(
        self,
        shards: Shards,
        *,
        metrics: AuditMetrics | None = None,
        exporter: Exporter | None = None,
        lease_ms: int = LEASE_MS,
        poll: float = 0.25,
        # One seal script call per batch: 1,000 records held Redis ~5 ms at a
        # time (SLOWLOG, 500 lifecycles/s), and every request waited behind it.
        batch: int = 250,
        chunk: int = 250,
        # With an archive the stream is trimmed to a 2-minute tail: trimming every
        # 10 s keeps it within 10 s of that (every 60 s it swung by half again,
        # ~17% of a soak's Redis memory); each trim is one exact XTRIM MINID.
        trim_every: float = 10.0,
        discover_every: float = 2.0,
        workspaces: Workspaces | None = None,
        archive: AuditArchive | None = None,
    ) -> None:
        self._shards = shards
        self._workspaces = workspaces or Workspaces(shards)
        self.metrics = metrics
        self.exporter = exporter
        self.lease_ms = lease_ms
        self.poll = poll
        self.batch = batch
        self.chunk = chunk
        self.trim_every = trim_every
        self.discover_every = discover_every
        self.owner = worker_name()
        self._seal = Script(SEAL_LUA)
        self._lease = Script(LEASE_LUA)
        self._release = Script(RELEASE_LUA)
        self.archive = archive
        self.retention = Retention(shards, self._workspaces, exporter, archive=archive is not None)
        self.sources: dict[str, Source] = {}
        self.held: dict[str, Chain] = {}
        self._next_discover = 0.0
        self._next_renew = 0.0
        self._moved = False  # the last round sealed or exported something

    # --- loop -------------------------------------------------------------------

    async def run(self) -> None:
        archiving = None
        if self.archive is not None:  # its own task: PostgreSQL never holds sealing up
            archiving = asyncio.create_task(self.archive.run(self._held_sources),
                                            name="audit-archive")  # fmt: skip
        try:
            await self._seal_loop()
        finally:
            if archiving is not None:
                archiving.cancel()
                await asyncio.gather(archiving, return_exceptions=True)

    def _held_sources(self) -> list[Source]:
        return [c.source for c in self.held.values()]

    async def _seal_loop(self) -> None:
        failing, idle = False, 0
        while not cancel_requested():
            busy = False
            try:
                busy = await self.step()
                if failing:
                    log.info("audit sealing resumed")
                failing = False
            except Exception as exc:  # Redis down, or a bug: keep sealing when it clears
                if not failing:  # once per outage, not once per poll
                    log.warning("audit sealing paused: %s", type(exc).__name__,
                                exc_info=not isinstance(exc, RedisError | OSError))  # fmt: skip
                failing = True
            # a full batch means more is waiting: go on, but let others run first;
            # rounds that found nothing new poll less and less often, up to
            # IDLE_POLL_MAX, so idle workspaces cost Redis next to nothing
            idle = 0 if busy or self._moved else min(idle + 1, 8)
            await asyncio.sleep(
                0 if busy else min(self.poll * 2 ** max(0, idle - 1), IDLE_POLL_MAX)
            )

    async def step(self) -> bool:
        """One round over the sources: leases, then a batch per held source.
        True when some source had a full batch (more may be waiting)."""
        now = time.monotonic()
        if now >= self._next_discover:
            known = set(self.sources)
            await self._discover()
            self._next_discover = now + self.discover_every
            if set(self.sources) - known:  # a new workspace: seal it from the start
                self._next_renew = now
        if now >= self._next_renew:
            await self._renew()
            self._next_renew = now + self.lease_ms / 3000
        busy, self._moved = False, False
        for chain in list(self.held.values()):
            try:
                done = await self.advance(chain)
                busy = done >= self.batch or busy
                self._moved = self._moved or done > 0
            except (RedisError, OSError, ExportError) as exc:
                self._failed(chain, exc)
            await asyncio.sleep(0)
        return busy

    def _failed(self, chain: Chain, exc: Exception, reload: bool = True) -> None:
        if self.metrics:
            self.metrics.errors.labels(chain.source.label).inc()
        now = time.monotonic()
        # the reason once, then at most once a minute while it lasts
        if chain.failing_since is None or now - chain.failing_since > 60:
            chain.failing_since = now
            detail = str(exc) if isinstance(exc, ExportError) else type(exc).__name__
            log.error("audit %s: %s", chain.source.name, detail)
        if reload:
            chain.loaded = False  # re-read the head: it may have moved meanwhile

    async def _discover(self) -> None:
        names = await self._workspaces.names()
        found = {s.name: s for s in (Source.workspace(n) for n in names)}
        for access in Source.accesses():
            found[access.name] = access
        self.sources = found

    async def _renew(self) -> None:
        by_shard: dict[int, tuple[Redis, list[Source]]] = {}
        for s in self.sources.values():  # one pipeline per primary
            client = self._shards.of(s.lease)
            by_shard.setdefault(id(client), (client, []))[1].append(s)
        sources: list[Source] = []
        results: list[Any] = []
        for client, group in by_shard.values():
            pipe = client.pipeline(transaction=False)
            for s in group:
                self._lease.queue(pipe, [s.lease], [self.owner, self.lease_ms])
            try:
                results += await pipe.execute()
            except (RedisError, OSError) as exc:  # that shard only: held or not, as before
                self._shards.suspect(exc)
                if isinstance(exc, NoScriptError):  # a pipeline does not load it: load it now
                    with contextlib.suppress(RedisError, OSError):
                        await self._lease.load(client)
                continue
            sources += group
        for s, held in zip(sources, results, strict=True):
            if int(held) == 1:
                self.held.setdefault(s.name, Chain(s))
            elif self.held.pop(s.name, None) is not None:
                log.info("audit %s: sealing lease moved to another replica", s.name)
                if self.metrics:
                    self.metrics.lag.pop(s.label, None)

    async def release(self) -> None:
        """On shutdown: hand the leases back so another replica seals at once."""
        for chain in list(self.held.values()):
            lease = chain.source.lease
            await self._release(keys=[lease], args=[self.owner], client=self._shards.of(lease))
        self.held.clear()

    # --- sealing ----------------------------------------------------------------

    async def _load_head(self, chain: Chain) -> None:
        h = cast(list[str | None], await self._shards.of(chain.source.head).hmget(
            chain.source.head, ["seq", "hash", "src", "ord"]))  # fmt: skip
        chain.seq = int(h[0] or 0)
        chain.hash, chain.src = h[1] or GENESIS, h[2] or ""
        chain.ord = int(h[3]) if h[3] else None
        newest = await self._shards.of(chain.source.sealed).xrevrange(
            chain.source.sealed, "+", "-", count=1
        )
        chain.last_id = cast(list[tuple[str, Any]], newest)[0][0] if newest else ""
        chain.loaded = True

    async def advance(self, chain: Chain) -> int:
        """Seals one batch of a source, exports, applies retention when due;
        returns the larger of records sealed and exported."""
        if not chain.loaded:
            await self._load_head(chain)
        sealed = await self._seal_batch(chain)
        exported = 0
        if self.exporter is not None:
            try:
                exported = await self._export(chain, self.exporter)
            except (ExportError, OSError) as exc:
                # sealing goes on (and retention waits): export retries next round
                self._failed(chain, exc, reload=False)
                return sealed
        if time.monotonic() >= chain.next_trim:
            await self.apply_retention(chain)
            chain.next_trim = time.monotonic() + self.trim_every
        chain.failing_since = None
        return max(sealed, exported)

    async def _export(self, chain: Chain, exporter: Exporter) -> int:
        exported = 0
        if chain.last_id and exporter.exported_id.get(chain.source.name) != chain.last_id:
            exported = await exporter.catch_up(chain.source)
        if exported and self.metrics:
            self.metrics.exported.labels(chain.source.label).inc(exported)
        if time.monotonic() >= chain.next_roll:
            await exporter.roll_if_due(chain.source)
            chain.next_roll = time.monotonic() + 5
        return exported

    async def _read(self, chain: Chain) -> tuple[list[tuple[str, dict[str, str]]], int, int]:
        """The next entries, with how many were deleted unsealed before them and
        the ordinal of the last one (-1: unknown), from one consistent view."""
        s = chain.source
        start = "(" + chain.src if chain.src else "-"
        client = self._shards.of(s.stream)
        if not await client.xrange(s.stream, start, "+", count=1):
            return [], 0, -1  # nothing new: the usual answer, kept cheap
        # XRANGE and XINFO at one instant (MULTI), packed by hiredis and read
        # raw: redis-py's transaction pipeline and reply parsers cost more than
        # the hashing of a busy workspace's batch (benchmarks/history/2026-12.md)
        replies = await send_packed(client, [
            pack_command(("MULTI",)),
            pack_command(("XRANGE", s.stream, start, "+", "COUNT", self.batch)),
            pack_command(("XINFO", "STREAM", s.stream)),
            pack_command(("EXEC",)),
        ])  # fmt: skip
        for reply in replies:  # MULTI's OK, QUEUED, QUEUED, then EXEC's replies
            if isinstance(reply, Exception):  # e.g. EXECABORT
                raise reply
        got, raw_info = replies[-1]
        if isinstance(got, Exception):
            raise got
        entries = [(eid, dict(zip(kv[::2], kv[1::2], strict=True))) for eid, kv in got]
        if not entries or isinstance(raw_info, Exception):
            return entries, 0, -1
        info = (raw_info if isinstance(raw_info, dict)  # RESP3 answers a map
                else dict(zip(raw_info[::2], raw_info[1::2], strict=True)))  # fmt: skip
        added, length = int(info["entries-added"]), int(info["length"])
        first = info.get("recorded-first-entry-id") or entries[0][0]
        lost, base = 0, chain.ord
        if not chain.src:  # first seal: what was trimmed before is no loss
            base = added - length
        elif base is not None and id_tuple(first) > id_tuple(chain.src):
            # the length cap trimmed past the head: every entry still there is
            # unsealed, so the ones added since the head and not there are lost
            lost = max(0, added - base - length)
        if entries[-1][0] == info.get("last-generated-id"):
            return entries, lost, added  # read to the end: the ordinal is exact
        return entries, lost, -1 if base is None else base + lost + len(entries)

    async def _seal_batch(self, chain: Chain) -> int:
        s = chain.source
        entries, lost, last_ord = await self._read(chain)
        if not entries:
            if self.metrics:
                self.metrics.lag[s.label] = 0.0
            return 0
        args: list[Any] = [chain.seq, chain.hash, entries[-1][0], "" if last_ord < 0 else last_ord]
        seq, prev = chain.seq, chain.hash
        todo: list[tuple[str, str]] = []
        if lost:
            todo.append((entries[0][0], gap_event(chain.src, entries[0][0], lost)))
        todo += ((eid, event_json(fields)) for eid, fields in entries)
        for i in range(0, len(todo), self.chunk):
            for src, event in todo[i : i + self.chunk]:
                seq += 1
                line, prev = seal_record(s.name, seq, prev, src, event)
                args += (seq, prev, line)
            await asyncio.sleep(0)  # hashing a large batch must not hold the loop
        res = await call_once(self._shards.of(s.head), self._seal, [s.head, s.sealed], args)
        if int(res[0]) == 0:  # another replica sealed first: read its head next round
            chain.loaded = False
            return 0
        chain.seq, chain.hash, chain.src, chain.last_id = seq, prev, entries[-1][0], res[2]
        chain.ord = None if last_ord < 0 else last_ord
        if self.metrics:
            self.metrics.sealed.labels(s.label).inc(len(todo))
            behind = len(entries) >= self.batch
            self.metrics.lag[s.label] = (
                max(0.0, time.time() - stream_ms(chain.src) / 1000) if behind else 0.0
            )
        return len(todo)

    # --- retention ----------------------------------------------------------------

    async def apply_retention(self, chain: Chain) -> None:
        await self.retention.apply(chain.source, chain.src)


def make_sealer(
    shards: Shards,
    registry: CollectorRegistry,
    settings: Settings,
    workspaces: Workspaces | None = None,
) -> Sealer:
    """The sealer of a router replica (exporting when an audit directory is set,
    archiving to PostgreSQL when an archive URL is)."""
    exporter = None
    if settings.audit_dir:
        exporter = Exporter(shards, Path(settings.audit_dir), settings.audit_segment_records,
                            settings.audit_segment_seconds)  # fmt: skip
    metrics = AuditMetrics(registry)
    archive = None
    if settings.archive_url:
        archive = AuditArchive(shards, settings.archive_url, exporter=exporter, metrics=metrics)
    return Sealer(shards, metrics=metrics, exporter=exporter, workspaces=workspaces,
                  archive=archive)  # fmt: skip
