"""Retention of an audit source: the source stream and the sealed records are
trimmed by the windows the workspaces' configs give, never past what must stay.

A source entry is trimmed only once it is sealed, older than the window, and
written by the history archive when there is one (its consumer group's oldest
pending entry, else the first entry it has not read, bounds the trim). A sealed
record is trimmed only past the audit window, never the newest (the head is
checked against it) and never past the last one exported to segment files.
"""

from __future__ import annotations

from typing import cast

from router.security.audit.records import Source, id_tuple
from router.security.audit.segments import Exporter
from router.store.groups import group_info
from router.store.keys import ARCHIVE_GROUP, WsKeys
from router.store.shards import Shards
from router.store.workspaces import Workspaces


class Retention:
    def __init__(self, shards: Shards, workspaces: Workspaces, exporter: Exporter | None) -> None:
        self._shards = shards
        self._workspaces = workspaces
        self.exporter = exporter

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
        if src_window and sealed_through:
            ms, n = id_tuple(sealed_through)  # never past the last sealed entry
            bound = min((now_ms - src_window * 1000, 0), (ms, n + 1))
            archived = await self.archived_below(s)  # nor past what is not archived
            await self._trim(s.stream, bound if archived is None else min(bound, archived))
        if audit_window:
            cutoff = now_ms - audit_window * 1000
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
                await self.exporter.prune(s, cutoff)
            await self._trim(s.sealed, bound)

    async def archived_below(self, source: Source) -> tuple[int, int] | None:
        """The first entry the history archive has not written yet (its group's
        oldest pending entry, else the one after its last delivered); None when
        the stream has no archive group (no archive configured)."""
        if source.is_access:
            return None
        client = self._shards.of(source.stream)
        group = await group_info(client, source.stream, ARCHIVE_GROUP)
        if group is None:
            return None
        if int(group.get("pending", 0)):
            summary = await client.xpending(source.stream, ARCHIVE_GROUP)
            return id_tuple(str(summary["min"]))
        ms, n = id_tuple(str(group.get("last-delivered-id", "0-0")))
        return (ms, n + 1)

    async def _trim(self, key: str, minid: tuple[int, int]) -> None:
        if minid > (0, 0):
            # exact, not `~`: what is past the bound must stay
            await self._shards.of(key).xtrim(key, minid=f"{minid[0]}-{minid[1]}", approximate=False)


def _longest(windows: list[int]) -> int:
    """The longest window, 0 (keep) when any keeps or there is none."""
    return 0 if not windows or 0 in windows else max(windows)
