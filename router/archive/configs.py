"""Config versions in the archive: written from the batch, read back when Redis
no longer keeps them.

Redis keeps a workspace's latest config versions only (`config_put.lua`). The
event archiver, on each batch, reads the document and metadata of every version
whose `config.updated` event the batch holds from `{ws:<name>}:config:versions`
(one HMGET) and writes them as `config_versions` rows in one statement, ON
CONFLICT DO NOTHING: a batch written twice adds nothing. A version no longer
in Redis (the archive was down for more config writes than Redis keeps) is
recorded from its event with no document, logged, and counted; the batch goes
on.

The config history (`router/routing/confighistory.py`) reads versions older
than Redis keeps through `ArchivedConfigs`; an archive that cannot be read is
a 503 the client may retry.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg

from router.archive.history import History
from router.archive.rows import Row
from router.routing.confighistory import VersionMeta
from router.runtime.errors import Unavailable
from router.store.keys import WsKeys

log = logging.getLogger(__name__)

INSERT = (
    "INSERT INTO config_versions "
    "(workspace, version, updated_at, actor, description, rollback_of, document) "
    "SELECT w, v, t, a, d, r, doc::jsonb FROM unnest(%s::text[], %s::bigint[], "
    "%s::timestamptz[], %s::text[], %s::text[], %s::bigint[], %s::text[]) "
    "AS u(w, v, t, a, d, r, doc) ON CONFLICT DO NOTHING"
)
_OLDER = (
    "SELECT version, updated_at, actor, description, rollback_of FROM config_versions "
    "WHERE workspace = %s AND version < %s ORDER BY version DESC LIMIT %s"
)
_ONE = (
    "SELECT version, updated_at, actor, description, rollback_of, document::text "
    "FROM config_versions WHERE workspace = %s AND version = %s"
)

ConfigRow = tuple[str, int, dt.datetime, str, str, int | None, str | None]
_event = msgspec.json.Decoder(dict[str, Any])
_meta = msgspec.json.Decoder(VersionMeta)


def _time(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


async def write_versions(conn: Any, client: Any, ws: str, rows: Sequence[Row]) -> int:
    """Writes the versions the batch's `config.updated` events name; returns how
    many were missing from Redis (recorded without their document)."""
    events = [_event.decode(doc) for _, _, _, kind, _, doc in rows if kind == "config.updated"]
    events = [e for e in events if isinstance(e.get("version"), int)]
    if not events:
        return 0
    fields = [f for e in events for f in (str(e["version"]), f"{e['version']}:meta")]
    got = await client.hmget(WsKeys(ws).config_versions, fields)
    out: list[ConfigRow] = []
    missing = 0
    for i, ev in enumerate(events):
        doc, meta = got[2 * i], got[2 * i + 1]
        if doc is not None and meta is not None:
            m = _meta.decode(meta)
            out.append(
                (ws, m.version, _time(m.updated_at), m.actor, m.description, m.rollback_of, doc)
            )
            continue
        missing += 1  # fell out of Redis before the archive read it: on record, empty
        rb = ev.get("rollback_of")
        at = ev.get("at")
        when = _time(at) if isinstance(at, int) else dt.datetime.now(dt.UTC)
        actor = str(ev.get("actor", ""))
        out.append((ws, ev["version"], when, actor, "", rb if isinstance(rb, int) else None, None))
        log.error(
            "config version %s of workspace %s left Redis before it was archived", ev["version"], ws
        )
    await conn.execute(INSERT, [list(c) for c in zip(*out, strict=True)])
    return missing


def _meta_of(row: Sequence[Any]) -> VersionMeta:
    version, at, actor, description, rollback_of = row[:5]
    ms = round(at.timestamp() * 1000)
    return VersionMeta(int(version), ms, str(actor), str(description or ""), rollback_of)


class ArchivedConfigs:
    """The config history's `Archive` (router/routing/confighistory.py) over the
    app's archive connection pool."""

    def __init__(self, history: History) -> None:
        self._history = history

    async def _rows(self, query: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            async with self._history.connection() as conn:
                cur = await conn.execute(query, args)
                return [tuple(r) for r in await cur.fetchall()]
        except (psycopg.OperationalError, psycopg.errors.UndefinedTable, OSError) as exc:
            # down, unreachable or too slow, or its schema not made yet: retry later
            log.warning("archive unavailable for config history (%s)", type(exc).__name__)
            raise Unavailable("the history archive is unavailable; retry shortly") from None

    async def older(self, ws_name: str, below: int, limit: int) -> list[VersionMeta]:
        return [_meta_of(r) for r in await self._rows(_OLDER, (ws_name, below, limit))]

    async def one(self, ws_name: str, version: int) -> tuple[VersionMeta, bytes | None] | None:
        found = await self._rows(_ONE, (ws_name, version))
        if not found:
            return None
        doc = found[0][5]
        return _meta_of(found[0]), doc.encode() if doc is not None else None
