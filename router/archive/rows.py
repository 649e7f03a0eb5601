"""Stream entries as `events` rows, and the write that stores them once.

The insert sends its columns as binary arrays and casts each document to jsonb
in the SELECT: the cheapest exactly-once write measured for psycopg 3
(benchmarks/archive_driver.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

import msgspec

INSERT = (
    "INSERT INTO events (ws, id, at, type, contact, doc) "
    "SELECT ws, id, at, type, contact, doc::jsonb FROM unnest("
    "%b::text[], %b::text[], %b::timestamptz[], %b::text[], %b::text[], %b::text[]"
    ") AS u(ws, id, at, type, contact, doc) ON CONFLICT DO NOTHING"
)
Row = tuple[str, str, dt.datetime, str, str | None, str]
_decode = msgspec.json.Decoder()
_encode = msgspec.json.Encoder()


def stream_time(sid: str) -> dt.datetime:
    """The time a Redis stream id carries (its milliseconds), in UTC."""
    return dt.datetime.fromtimestamp(int(sid.partition("-")[0]) / 1000, dt.UTC)


def event_rows(ws: str, entries: Sequence[tuple[str, Any]]) -> list[Row]:
    """Archive rows of stream entries; an entry that is not an event JSON object is
    kept too (as `unparsable`, its text inside), so nothing is skipped silently."""
    rows: list[Row] = []
    for sid, fields in entries:
        raw = fields.get("e") if isinstance(fields, dict) else None
        try:
            ev = _decode.decode(raw) if isinstance(raw, str) else None
        except msgspec.DecodeError:
            ev = None
        if isinstance(ev, dict):
            contact = ev.get("contact")
            who = str(contact) if contact is not None else None
            rows.append((ws, sid, stream_time(sid), str(ev.get("type", "")), who, cast(str, raw)))
        else:
            doc = _encode.encode({"unparsable": raw if isinstance(raw, str) else None}).decode()
            rows.append((ws, sid, stream_time(sid), "unparsable", None, doc))
    return rows
