"""Retention of an audit source: the source stream and the sealed records are
trimmed by the windows the workspaces' configs give, never past what must stay.

A source entry is trimmed only once it is sealed, older than the window, and
written by the history archive when there is one (its consumer group's oldest
pending entry, else the first entry it has not read, bounds the trim). A sealed
record is trimmed only past the audit window, never the newest (the head is
checked against it) and never past the last one exported to segment files.

With a history archive configured (`archive=True`) a workspace's events also
go as soon as they are both sealed and archived, whatever the `events` window:
PostgreSQL holds them from then on. That trim keeps the last `tail_s` seconds
(`EVENTS_TAIL_S`) for `GET /events` pages and SSE clients resuming after
`Last-Event-ID`, and never passes an entry any consumer group of the stream
(the webhook dispatcher's, a CRM's or warehouse's own) has not read, or read
and not acknowledged. The sealed records themselves are then dropped by the
archive writer (`archiving.py`) once they are in PostgreSQL, so the audit
window trims no records from Redis (segment files still are pruned by it).
"""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import Redis

from router.security.audit.records import Source, id_tuple
from router.security.audit.segments import Exporter
from router.store.groups import group_info, groups_info
from router.store.keys import ARCHIVE_GROUP, WsKeys
from router.store.shards import Shards
from router.store.workspaces import Workspaces

# Recent events kept in Redis once archived, in seconds: an SSE client that
# lost its connection resumes from Last-Event-ID within seconds (EventSource
# retries after ~3 s; a proxy or a laptop waking may take minutes), and a
# wallboard's first page of `GET /events` shows the last minutes. The tail is
# Redis memory that grows with the event rate (about 350 bytes an entry: two
# minutes at 500 events/s are ~21 MB, ten minutes were ~105 MB), so it is kept
# short; older history is read from the archive.
EVENTS_TAIL_S = 120.0


class Retention:
    def __init__(
        self,
        shards: Shards,
        workspaces: Workspaces,
        exporter: Exporter | None,
        *,
        archive: bool = False,
        tail_s: float = EVENTS_TAIL_S,
    ) -> None:
        self._shards = shards
        self._workspaces = workspaces
        self.exporter = exporter
        self.archive = archive
        self.tail_s = tail_s

    async def windows(self, source: Source) -> tuple[int, int]:
        """(source window, audit window) in seconds, 0 = keep. A workspace's
        come from its config; the shared access streams keep the longest any
        workspace asks for."""
        if not source.is_access:
            rt = WsKeys(source.label).runtime
            got = await self._shards.of(rt).hmget(rt, ["ret_events_s", "ret_audit_s"])
            return int(got[0] or 0), int(got[1] or 0)
        rows = []
        for n in await self._workspaces.names():  # rare (retention runs once a minute)
            rt = WsKeys(n).runtime
            rows.append(await self._shards.of(rt).hmget(rt, ["ret_access_s", "ret_audit_s"]))
        return (_longest([int(r[0] or 0) for r in rows]),
                _longest([int(r[1] or 0) for r in rows]))  # fmt: skip

    async def apply(self, s: Source, sealed_through: str) -> None:
        """Trims `s` by its windows; `sealed_through`: the last source id sealed."""
        src_window, audit_window = await self.windows(s)
        secs, micros = await self._shards.of(s.stream).time()
        now_ms = int(secs) * 1000 + int(micros) // 1000
        if sealed_through:
            ms, n = id_tuple(sealed_through)  # never past the last sealed entry
            if src_window:
                bound = min((now_ms - src_window * 1000, 0), (ms, n + 1))
                archived = await self.archived_below(s)  # nor past what is not archived
                await self._trim(s.stream, bound if archived is None else min(bound, archived))
            if self.archive and not s.is_access:
                await self.trim_archived(s, (ms, n + 1), now_ms)
        if audit_window:
            cutoff = now_ms - audit_window * 1000
            if self.exporter is not None:
                await self.exporter.prune(s, cutoff)
            if self.archive:
                return  # the archive writer drops sealed records once they are in PostgreSQL
            bound = (cutoff, 0)
            # the newest record stays, so the head can always be checked against it
            got = await self._shards.of(s.sealed).xrevrange(s.sealed, "+", "-", count=1)
            newest = cast(list[tuple[str, dict[str, str]]], got)
            if not newest:
                return
            bound = min(bound, id_tuple(newest[0][0]))
            if self.exporter is not None:  # never past the last exported record
                done = self.exporter.exported_id.get(s.name)
                ms, n = id_tuple(done) if done else (0, 0)
                bound = min(bound, (ms, n + 1))
            await self._trim(s.sealed, bound)

    async def trim_archived(self, s: Source, sealed: tuple[int, int], now_ms: int) -> None:
        """Trims the events that are sealed (before `sealed`) and archived, but
        not the recent tail nor anything a consumer group has yet to read or
        acknowledge."""
        client = self._shards.of(s.stream)
        groups = await groups_info(client, s.stream)
        if not any(g.get("name") == ARCHIVE_GROUP for g in groups):
            return  # the archiver has not started on this stream: nothing is archived
        bound = min(sealed, (now_ms - int(self.tail_s * 1000), 0))
        for group in groups:  # the archive's group among them
            bound = min(bound, await _unread_from(client, s.stream, group))
        await self._trim(s.stream, bound)

    async def archived_below(self, source: Source) -> tuple[int, int] | None:
        """The first entry the history archive has not written yet (its group's
        oldest pending entry, else the one after its last delivered); None when
        the stream has no archive group (no archive configured)."""
        if source.is_access:
            return None
        client = self._shards.of(source.stream)
        group = await group_info(client, source.stream, ARCHIVE_GROUP)
        return None if group is None else await _unread_from(client, source.stream, group)

    async def _trim(self, key: str, minid: tuple[int, int]) -> None:
        if minid > (0, 0):
            # exact, not `~`: what is past the bound must stay
            await self._shards.of(key).xtrim(key, minid=f"{minid[0]}-{minid[1]}", approximate=False)


def _longest(windows: list[int]) -> int:
    """The longest window, 0 (keep) when any keeps or there is none."""
    return 0 if not windows or 0 in windows else max(windows)


async def _unread_from(client: Redis, stream: str, group: dict[str, Any]) -> tuple[int, int]:
    """The first entry a consumer group still needs: its oldest pending entry
    (read, not acknowledged), else the one after the last it was given."""
    if int(group.get("pending", 0)):
        summary = await client.xpending(stream, group["name"])
        return id_tuple(str(summary["min"]))
    ms, n = id_tuple(str(group.get("last-delivered-id", "0-0")))
    return (ms, n + 1)
