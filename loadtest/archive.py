"""The peak day with the history archive on: where its events are read back
from, and the archive checked against the reconciliation.

With an archive the event stream keeps only a recent tail (entries leave once
sealed and archived), so a day longer than that tail is reconciled from the
archive's `events` table, which must hold every event once. The archive's own
figures are checked against the reconciliation: one `contacts` row per contact
that ended, by outcome, and no gap. Its lag (the archiver's write time minus
the event's time) is reported as percentiles.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import msgspec
from psycopg import AsyncConnection
from redis.asyncio import Redis

from router.store.groups import group_info
from router.store.keys import ARCHIVE_GROUP, WsKeys

# stream order: milliseconds, then sequence (the id's text would put -10 before -9)
_EVENTS = (
    "SELECT doc::text FROM events WHERE ws = %s AND type <> 'archive.gap' "
    "ORDER BY split_part(id, '-', 1)::bigint, split_part(id, '-', 2)::bigint"
)
_LAG = (
    "SELECT count(*), percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY lag),"
    " max(lag) FROM (SELECT extract(epoch FROM archived_at - at) * 1000 AS lag"
    " FROM events WHERE ws = %s AND type <> 'archive.gap') l"
)
_OUTCOMES = (
    "SELECT outcome, count(*), count(DISTINCT id) FROM contacts "
    "WHERE ws = %s AND starts_with(id, %s) GROUP BY outcome"
)
_GAPS = "SELECT count(*) FROM events WHERE ws = %s AND type = 'archive.gap'"


async def caught_up(client: Redis, ws: str, within: float = 120.0) -> bool:
    """Waits until the archive group has read the whole stream and acknowledged it."""
    stream = WsKeys(ws).events
    for _ in range(int(within / 0.5)):
        group = await group_info(client, stream, ARCHIVE_GROUP)
        last = await client.xrevrange(stream, count=1)
        if group and last and group["last-delivered-id"] == last[0][0] and not group["pending"]:
            return True
        await asyncio.sleep(0.5)
    return False


async def archived_events(url: str, ws: str) -> list[dict[str, Any]]:
    dec = msgspec.json.Decoder()
    async with await AsyncConnection.connect(url) as conn:
        cur = await conn.execute(_EVENTS, (ws,))
        return [dec.decode(r[0]) for r in await cur.fetchall()]


async def check(url: str, ws: str, prefix: str, rec: dict[str, Any]) -> dict[str, Any]:
    """The archive's rows against the reconciliation `rec`, and its lag."""
    async with await AsyncConnection.connect(url) as conn:
        cur = await conn.execute(_OUTCOMES, (ws, prefix))
        rows = await cur.fetchall()
        cur = await conn.execute(_LAG, (ws,))
        n, (p50, p99), worst = await cur.fetchone() or (0, (None, None), None)
        cur = await conn.execute(_GAPS, (ws,))
        (gaps,) = await cur.fetchone() or (0,)
    by_outcome = {str(o): int(c) for o, c, _ in rows}
    expected = Counter({t.removeprefix("contact."): n for t, n in rec["outcomes"].items()})
    problems = []
    if any(c != d for _, c, d in rows):
        problems.append("a contact has more than one row")
    if Counter(by_outcome) != expected:
        problems.append(f"contact rows {by_outcome} differ from the events' {dict(expected)}")
    if gaps:
        problems.append(f"{gaps} archive gap(s): events trimmed before they were archived")
    return {
        "events": int(n),
        "contact_rows": by_outcome,
        "lag_ms": {
            "p50": round(p50 or 0, 1),
            "p99": round(p99 or 0, 1),
            "max": round(float(worst or 0), 1),
        },
        "gaps": int(gaps),
        "problems": problems,
    }
