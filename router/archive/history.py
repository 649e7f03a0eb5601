"""Reading history back: a contact that has left Redis, and timelines.

`GET .../contacts/{id}` answers from Redis while the contact is there and from
the archive afterwards, in the same shape (personal fields never reach the
archive, so an archived contact has none). In an archived workspace a live
contact keeps no timeline copy in Redis: its timeline is its archived events
followed by those the archiver has not written yet (the stream from the
archive group's oldest unacknowledged entry, or from the last it read).

Reads go through a small psycopg connection pool; a PostgreSQL that is down
makes the timeline unavailable (`None`), never the live contact.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import msgspec
import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from router.routing.model import ContactOut, SlaClockOut, TimelineEntry
from router.routing.records import timeline_entry
from router.store.keys import ARCHIVE_GROUP, WsKeys

log = logging.getLogger(__name__)

TAIL_MAX = 2000  # stream entries looked at past the archive's position
_CONTACT = (
    "SELECT id, outcome, channel, tier, intent, customer_id, gateway, pools, stages, stage, "
    "rules, priority_offset_ms, agent, created_at, enqueued_at, sla_policy, sla "
    "FROM contacts WHERE ws = %s AND id = %s ORDER BY ended_at DESC LIMIT 1"
)
_SHELL = (
    "SELECT id, outcome, channel, tier, intent, customer_id, gateway, agent, pool, sla_policy, "
    "stages, stage, rules, priority_offset_ms, created_at, enqueued_at, answered_at, ended_at, "
    "resolved_at, csat, nps FROM contacts WHERE ws = %s AND id = %s ORDER BY ended_at DESC LIMIT 1"
)
_EVENTS = "SELECT id, doc::text FROM events WHERE ws = %s AND contact = %s ORDER BY at, id"
_clocks = msgspec.json.Decoder(dict[str, SlaClockOut])


def _ms(t: dt.datetime | None) -> int | None:
    return round(t.timestamp() * 1000) if t is not None else None


def shell_fields(row: tuple[Any, ...]) -> dict[str, str]:
    """A `contacts` row as the record fields late actions read (restore.lua)."""
    (cid, outcome, channel, tier, intent, cust, gw, agent, pool, policy, stages, stage, rules,
     off, created, enqueued, answered, ended, resolved, csat, nps) = row  # fmt: skip
    enq = _ms(enqueued) or 0
    fields: dict[str, object] = {
        "id": cid, "st": outcome, "ch": channel, "tier": tier, "intent": intent, "cust": cust,
        "gw": gw, "agent": agent or "", "hd": agent, "pool": pool, "sla": policy or "",
        "stages": stages, "stage": stage, "rules": ",".join(rules or []), "off": off or 0,
        "created": _ms(created), "enq": enq, "rank": enq - (off or 0), "ans": _ms(answered),
        "done": _ms(ended), "resolved": _ms(resolved), "rating:csat": csat, "rating:nps": nps,
    }  # fmt: skip
    return {k: str(v) for k, v in fields.items() if v is not None and v != ""}


def _secs(t: dt.datetime | None) -> float:
    return t.timestamp() if t is not None else 0.0


def _stages(text: str | None) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for part in filter(None, (text or "").split("|")):
        after, _, pools = part.partition(":")
        out.append({"after": int(after) / 1000, "pools": pools.split(",")})
    return out


def archived_contact(row: tuple[Any, ...], timeline: list[TimelineEntry]) -> ContactOut:
    """A `contacts` row in the shape of `GET /contacts/{id}`."""
    (cid, outcome, channel, tier, intent, cust, gw, pools, stages, stage, rules, off, agent,
     created, enqueued, policy, sla) = row  # fmt: skip
    enq = _secs(enqueued)
    offset = (off or 0) / 1000
    clocks = _clocks.decode(sla if isinstance(sla, str | bytes) else msgspec.json.encode(sla))
    return ContactOut(
        id=cid,
        state=outcome,
        channel=channel,
        tier=tier or "",
        intent=intent,
        customer_id=cust or "",
        agent=agent,
        pools=list(pools or []),
        stages=_stages(stages),
        stage=stage or 1,
        rank=enq - offset,
        priority_offset=offset,
        enqueued_at=enq,
        created_at=_secs(created),
        offer_expires_at=None,
        sla=policy,
        rules=list(rules or []),
        created=False,
        timeline=timeline,
        sla_clocks=clocks or None,
        gateway=gw,
    )


class History:
    """The archive, read: contacts that left Redis and timelines."""

    def __init__(self, url: str, max_size: int = 4) -> None:
        # Opened lazily and never waited for at start: routing does not need it.
        self.pool = AsyncConnectionPool(
            url, min_size=0, max_size=max_size, open=False, timeout=5.0,
            kwargs={"autocommit": True, "connect_timeout": 5},
        )  # fmt: skip
        self._opened = False

    async def _conn_pool(self) -> AsyncConnectionPool:
        if not self._opened:
            await self.pool.open(wait=False)
            self._opened = True
        return self.pool

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection (autocommit) for other reads, such as reports."""
        async with (await self._conn_pool()).connection() as conn:
            yield conn

    async def close(self) -> None:
        if self._opened:
            await self.pool.close()

    async def events(self, ws: str, cid: str) -> list[tuple[str, str]] | None:
        """(stream id, event JSON) of the contact's archived events; None when the
        archive cannot be read."""
        try:
            async with (await self._conn_pool()).connection() as conn:
                cur = await conn.execute(_EVENTS, (ws, cid))
                return [(r[0], r[1]) for r in await cur.fetchall()]
        except (psycopg.Error, OSError) as exc:
            log.warning("archive unavailable for a timeline (%s)", type(exc).__name__)
            return None

    async def contact(self, ws: str, cid: str) -> ContactOut | None:
        """The archived contact with its archived timeline; None if not archived."""
        try:
            async with (await self._conn_pool()).connection() as conn:
                cur = await conn.execute(_CONTACT, (ws, cid))
                row = await cur.fetchone()
                if row is None:
                    return None
                cur = await conn.execute(_EVENTS, (ws, cid))
                events = await cur.fetchall()
        except (psycopg.Error, OSError) as exc:
            log.warning("archive unavailable for a contact (%s)", type(exc).__name__)
            return None
        return archived_contact(tuple(row), [timeline_entry(doc) for _, doc in events])

    async def shell(self, ws: str, cid: str) -> dict[str, str] | None:
        """The record fields to restore an archived contact with; None if not archived."""
        try:
            async with (await self._conn_pool()).connection() as conn:
                cur = await conn.execute(_SHELL, (ws, cid))
                row = await cur.fetchone()
        except (psycopg.Error, OSError) as exc:
            log.warning("archive unavailable for a late action (%s)", type(exc).__name__)
            return None
        return shell_fields(tuple(row)) if row is not None else None

    async def live_timeline(self, client: Redis, ws: str, cid: str) -> list[TimelineEntry] | None:
        """A live contact's timeline in an archived workspace: archived events, then
        those still waiting in the stream for the archiver."""
        archived = await self.events(ws, cid)
        if archived is None:
            return None
        seen = {sid for sid, _ in archived}
        docs = [doc for _, doc in archived]
        for sid, doc in await unarchived(client, ws):
            if sid not in seen and _about(doc, cid):
                docs.append(doc)
        return [timeline_entry(d) for d in docs]


def _about(doc: str, cid: str) -> bool:
    # cheap pre-check before decoding: most tail entries are other contacts'
    return f'"contact":"{cid}"' in doc


async def unarchived(client: Redis, ws: str) -> list[tuple[str, str]]:
    """Stream entries the archive may not hold yet (at most TAIL_MAX)."""
    keys = WsKeys(ws)
    pipe = client.pipeline(transaction=False)
    pipe.xpending(keys.events, ARCHIVE_GROUP)
    pipe.xinfo_groups(keys.events)
    try:
        pending, groups = await pipe.execute()
    except Exception:  # no stream or group yet: nothing archived, nothing waits
        return []
    group = next((g for g in groups if g.get("name") == ARCHIVE_GROUP), None)
    if group is None:
        return []
    start = "(" + str(group.get("last-delivered-id") or "0-0")
    if pending and pending.get("pending") and pending.get("min"):
        start = str(pending["min"])
    entries = cast(
        list[tuple[str, dict[str, str]]],
        await client.xrange(keys.events, min=start, count=TAIL_MAX),
    )
    return [(sid, f.get("e", "")) for sid, f in entries if f]
