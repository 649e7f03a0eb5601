"""Agents' state intervals as archive rows: one per state an agent left.

An `agent.state_changed` event carries the state left (`previous`), its reason
(`previous_reason`) and when it began (`previous_since`, Redis TIME ms); the
event's own time ends it. So the interval is written from the batch alone, with
no lookup, in one statement per batch; keyed by (ws, agent, start, the closing
event's stream id), a batch written again adds nothing. The start alone is no
key: a state that lasted under a millisecond starts where the next one starts
(migration 0006). An event without `previous_since` (an agent last changed
before it was recorded) closes no interval.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import msgspec
from psycopg import AsyncConnection

from router.archive.rows import Row

INSERT = (
    "INSERT INTO agent_state_intervals"
    " (ws, agent, team, state, reason, started, ended, seconds, event) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::timestamptz[], %s::timestamptz[], %s::float8[], %s::text[]) ON CONFLICT DO NOTHING"
)
# ws, agent, team, state, reason, started, ended, seconds, closing event's stream id
Interval = tuple[str, str, str | None, str, str | None, dt.datetime, dt.datetime, float, str]
_decode = msgspec.json.Decoder(dict[str, Any])


def _time(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def interval_rows(rows: Sequence[Row]) -> list[Interval]:
    """The intervals the batch's `agent.state_changed` events close."""
    out: list[Interval] = []
    for ws, sid, _, kind, _, doc in rows:
        if kind != "agent.state_changed":
            continue
        ev = _decode.decode(doc)
        start, end = ev.get("previous_since"), ev.get("at")
        if not isinstance(start, int) or not isinstance(end, int) or not ev.get("previous"):
            continue
        reason = ev.get("previous_reason") if ev["previous"] == "break" else None
        seconds = max(end - start, 0) / 1000
        who = (ws, str(ev["agent"]), ev.get("team"), str(ev["previous"]), reason)
        out.append((*who, _time(start), _time(end), seconds, sid))
    return out


async def write_intervals(conn: AsyncConnection, rows: Sequence[Row]) -> int:
    """Writes the batch's intervals in one statement; returns how many."""
    intervals = interval_rows(rows)
    if intervals:
        await conn.execute(INSERT, [list(c) for c in zip(*intervals, strict=True)])
    return len(intervals)
