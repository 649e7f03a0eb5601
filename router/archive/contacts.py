"""Finished contacts and their SLA clocks as archive rows; then out of Redis.

Runs inside the event archiver, on the batch it has just written: a contact
that ended, was resolved or rated in the batch (or had a clock stop) is read
back from Redis (its record, clocks included, still there) and upserted
as one `contacts` row, with one `sla_outcomes` row per stopped clock. Reading the
record rather than the events gives the row what events never carry (the
customer id, rules, stages) and makes the write idempotent: a batch written
twice, or a later event of the same contact, writes the row from the same or a
newer state.

Once a finished contact's row is written and none of its clocks still runs, its
keys get the workspace's grace (`retention.grace`, 1 hour by default) as their
expiry: long enough for late actions such as a rating, after which the contact
lives only in the archive. Until the archive has it, a contact keeps the
contact window's expiry (`retention.contacts`), so an archive that is down never
loses a row to an expiry, short of that window. A completed case whose resolve
clock still runs stays in Redis, as live work, until it is resolved.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, cast

import msgspec
from psycopg import AsyncConnection, sql

from router.routing.slaops import sla_clocks
from router.store.keys import WsKeys

TERMINAL = frozenset({"completed", "abandoned", "expired"})
# events after which a finished contact's row is written (again)
CLOSING = frozenset(
    {
        "contact.completed",
        "contact.abandoned",
        "contact.expired",
        "contact.resolved",
        "contact.rated",
        "sla.met",
        "sla.missed",
        "sla.cancelled",
    }
)
CLOCKS = ("answer", "first_response", "resolve")
STOPPED = frozenset({"met", "missed", "cancelled"})
RUNNING = frozenset({"active", "warned", "breached", "paused"})
HANDLED = ("contact.offered", "contact.assigned")
GRACE_S = 3600

_COLUMNS = (
    "ws", "id", "ended_at", "outcome", "channel", "tier", "intent", "customer_id", "gateway",
    "pools", "pool", "stages", "stage", "rules", "priority_offset_ms", "agent", "team",
    "created_at", "enqueued_at", "offered_at", "answered_at", "resolved_at", "wait_ms", "handle_ms",
    "sla_policy", "sla", "csat", "nps", "followup_of",
)  # fmt: skip


# Array types the columns are sent as (text when not named), and how the SELECT
# makes a column of a sent one: lists travel joined by commas (names have none),
# since unnest cannot take arrays of arrays of different lengths.
_TYPES = dict.fromkeys(
    ("ended_at", "created_at", "enqueued_at", "offered_at", "answered_at", "resolved_at",
     "started_at", "stopped_at"), "timestamptz",
) | dict.fromkeys(
    ("stage", "priority_offset_ms", "wait_ms", "handle_ms", "csat", "nps", "target_ms",
     "elapsed_ms", "steps"), "bigint",
)  # fmt: skip
_EXPRS = {
    "pools": "coalesce(string_to_array(pools, ','), '{}')",
    "rules": "coalesce(string_to_array(rules, ','), '{}')",
    "sla": "sla::jsonb",
}


def _upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> sql.Composed:
    """One INSERT of many rows from arrays (unnest), ON CONFLICT (key) DO UPDATE
    SET every other column: one statement per batch, not one per row."""
    return sql.SQL(
        "INSERT INTO {} ({}) SELECT {} FROM unnest({}) AS u({}) ON CONFLICT ({}) DO UPDATE SET {}"
    ).format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.SQL(_EXPRS.get(c, c)) for c in columns),
        sql.SQL(", ").join(
            sql.SQL("{}::{}[]").format(sql.Placeholder(), sql.SQL(_TYPES.get(c, "text")))
            for c in columns
        ),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(map(sql.Identifier, key)),
        sql.SQL(", ").join(
            sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
            for c in columns
            if c not in key
        ),
    )


def _arrays(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as one list per column, lists joined by commas."""
    cols = [list(c) for c in zip(*rows, strict=True)]
    return [[",".join(v) if isinstance(v, list) else v for v in col] for col in cols]


_SLA_COLUMNS = (
    "ws", "contact", "clock", "policy", "outcome", "started_at", "stopped_at", "target_ms",
    "elapsed_ms", "steps",
)  # fmt: skip
UPSERT_CONTACT = _upsert("contacts", _COLUMNS, ("ws", "ended_at", "id"))
UPSERT_SLA = _upsert("sla_outcomes", _SLA_COLUMNS, ("ws", "stopped_at", "contact", "clock"))


async def upsert_contacts(conn: AsyncConnection, rows: Sequence[tuple[Any, ...]]) -> None:
    """`contacts` rows as contact_row builds them, in one statement."""
    if rows:
        await conn.execute(UPSERT_CONTACT, _arrays(rows))


async def upsert_outcomes(conn: AsyncConnection, rows: Sequence[tuple[Any, ...]]) -> None:
    """`sla_outcomes` rows as sla_rows builds them, in one statement."""
    if rows:
        await conn.execute(UPSERT_SLA, _arrays(rows))


# a late rating of a contact restored from the archive (router/routing/lua/restore.lua)
RATINGS = (
    "UPDATE contacts SET csat = coalesce(%s, csat), nps = coalesce(%s, nps) "
    "WHERE ws = %s AND id = %s"
)
FIRST_OFFERS = (
    "SELECT contact, min(at) FROM events WHERE ws = %s AND contact = ANY(%s) "
    "AND type = ANY(%s) GROUP BY contact"
)
_attrs = msgspec.json.Decoder(dict[str, Any])


def ms_time(ms: str | int | None) -> dt.datetime | None:
    """A Redis TIME millisecond value as a UTC time (None for an empty field)."""
    if ms is None or ms == "":
        return None
    return dt.datetime.fromtimestamp(int(float(ms)) / 1000, dt.UTC)


def _int(v: str | None) -> int | None:
    return int(float(v)) if v not in (None, "") else None


def closing_contacts(events: Iterable[tuple[str, str | None]]) -> list[str]:
    """Contacts whose row a batch's events (type, contact) may have changed, in order."""
    seen: dict[str, None] = {}
    for typ, contact in events:
        if contact and typ in CLOSING:
            seen.setdefault(contact, None)
    return list(seen)


def reached_pools(raw: dict[str, str]) -> list[str]:
    """The pools of the stages the contact reached (or its one targeted agent queue)."""
    if raw.get("tgt"):
        return []
    out: list[str] = []
    for i, part in enumerate(filter(None, raw.get("stages", "").split("|"))):
        if i >= int(raw.get("stage") or 1):
            break
        out += [p for p in part.partition(":")[2].split(",") if p and p not in out]
    return out


def clocks_of(sla: dict[str, str]) -> dict[str, dict[str, str]]:
    """A clocks hash (`<clock>.<field>`) by clock."""
    out: dict[str, dict[str, str]] = {}
    for key, value in sla.items():
        clock, dot, field = key.partition(".")
        if dot and clock in CLOCKS:
            out.setdefault(clock, {})[field] = value
    return out


def still_running(sla: dict[str, str]) -> bool:
    return any(c.get("st") in RUNNING for c in clocks_of(sla).values())


def contact_row(
    ws: str,
    raw: dict[str, str],
    sla: dict[str, str],
    team: str | None,
    offered_at: dt.datetime | None,
) -> tuple[Any, ...]:
    """The `contacts` row of a finished contact's record (no personal fields)."""
    enq, ans, done = _int(raw.get("enq")), _int(raw.get("ans")), _int(raw.get("done"))
    end = done if done is not None else _int(raw.get("created")) or 0
    wait = (ans if ans is not None else end) - enq if enq is not None else None
    try:
        followup = _attrs.decode(raw.get("attrs") or "{}").get("followup_of")
    except msgspec.DecodeError:
        followup = None
    # each clock as GET /contacts/{id} shows it (`sla_clocks`), so the archived
    # contact answers in the same shape; reports read `sla_outcomes`
    clocks = sla_clocks(sla)
    return (
        ws, raw["id"], ms_time(end), raw.get("st", ""), raw.get("ch", ""),
        raw.get("tier") or None, raw.get("intent") or None, raw.get("cust") or None,
        raw.get("gw") or None, reached_pools(raw), raw.get("pool") or None,
        raw.get("stages") or None,
        _int(raw.get("stage")), [r for r in raw.get("rules", "").split(",") if r],
        _int(raw.get("off")), raw.get("agent") or None, team, ms_time(raw.get("created")),
        ms_time(raw.get("enq")), offered_at, ms_time(ans), ms_time(raw.get("resolved")),
        wait, end - ans if ans is not None else None, raw.get("sla") or None,
        msgspec.json.encode(clocks).decode(), _int(raw.get("rating:csat")),
        _int(raw.get("rating:nps")), str(followup) if followup else None,
    )  # fmt: skip


def ratings_of(ws: str, raw: dict[str, str]) -> tuple[Any, ...]:
    return (_int(raw.get("rating:csat")), _int(raw.get("rating:nps")), ws, raw["id"])


def sla_rows(ws: str, cid: str, sla: dict[str, str]) -> list[tuple[Any, ...]]:
    """One `sla_outcomes` row per stopped clock."""
    rows: list[tuple[Any, ...]] = []
    for clock, c in clocks_of(sla).items():
        if c.get("st") not in STOPPED or not c.get("end"):
            continue
        start, end, due = _int(c.get("start")), _int(c.get("end")), _int(c.get("due"))
        steps = sum(1 for k in c if k.startswith("f") and k[1:].isdigit())
        target = due - start if due is not None and start is not None else None
        elapsed = end - start if end is not None and start is not None else None
        row = (ws, cid, clock, sla.get("sla", ""), c["st"], ms_time(start), ms_time(end))
        rows.append((*row, target, elapsed, steps))
    return rows


class ContactRows:
    """Writes the rows of a batch's finished contacts, then lets them leave Redis."""

    def __init__(self) -> None:
        self.days: set[tuple[str, dt.date]] = set()
        self.written = 0
        self.missing = 0  # closing events whose contact had already left Redis

    async def _partitions(self, conn: AsyncConnection, table: str, days: set[dt.date]) -> None:
        for day in sorted(d for d in days if (table, d) not in self.days):
            await conn.execute("SELECT archive_day_partition(%s, %s)", (table, day))
            self.days.add((table, day))

    @staticmethod
    async def _teams(client: Any, keys: WsKeys, ended: list[dict[str, str]]) -> dict[str, Any]:
        """The team of each agent holding one of the contacts (as it is now)."""
        agents = sorted({r["agent"] for r in ended if r.get("agent")})
        if not agents:
            return {}
        pipe = client.pipeline(transaction=False)
        for aid in agents:
            pipe.hget(keys.agent(aid), "team")
        return dict(zip(agents, await pipe.execute(), strict=True))

    async def write(self, conn: AsyncConnection, client: Any, ws: str, cids: Sequence[str]) -> int:
        """Upserts the rows of those of `cids` that have ended; returns how many."""
        if not cids:
            return 0
        keys = WsKeys(ws)
        ended, late, grace = await self._read(client, keys, cids)
        if late:  # a restored record carries late ratings, nothing else of the row
            async with conn.cursor() as cur:
                await cur.executemany(RATINGS, [ratings_of(ws, r) for r in late])
        if not ended:
            return len(late)
        rows, outcomes = await self._rows(conn, client, ws, ended)
        await self._partitions(conn, "contacts", {row[2].date() for row in rows})
        await self._partitions(conn, "sla_outcomes", {row[6].date() for row in outcomes})
        async with conn.transaction():
            await upsert_contacts(conn, rows)
            await upsert_outcomes(conn, outcomes)
        # Archived: the contact may leave Redis after the grace (never later than
        # the expiry it already has: LT), unless a clock of it still runs.
        pipe = client.pipeline(transaction=False)
        for raw in ended:
            if not still_running(raw):
                for key in (keys.contact(raw["id"]), keys.timeline(raw["id"])):
                    pipe.expire(key, grace, lt=True)
        await pipe.execute()
        self.written += len(rows)
        return len(rows) + len(late)

    async def _read(
        self, client: Any, keys: WsKeys, cids: Sequence[str]
    ) -> tuple[list[dict[str, str]], list[dict[str, str]], int]:
        """(ended records, restored records, the workspace's grace in seconds)."""
        pipe = client.pipeline(transaction=False)
        for cid in cids:
            pipe.hgetall(keys.contact(cid))  # its clocks included (`<clock>.<field>`)
        pipe.hget(keys.runtime, "grace_s")
        got = await pipe.execute()
        ended: list[dict[str, str]] = []
        late: list[dict[str, str]] = []
        for raw in got[:-1]:
            if not raw:
                self.missing += 1
            elif raw.get("restored"):
                late.append(raw)
            elif raw.get("st") in TERMINAL:
                ended.append(raw)
        return ended, late, _int(cast(str | None, got[-1])) or GRACE_S

    async def _rows(
        self, conn: AsyncConnection, client: Any, ws: str, ended: list[dict[str, str]]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        teams = await self._teams(client, WsKeys(ws), ended)
        cur = await conn.execute(FIRST_OFFERS, (ws, [r["id"] for r in ended], list(HANDLED)))
        offered = {row[0]: row[1] for row in await cur.fetchall()}
        rows = [
            contact_row(ws, r, r, teams.get(r.get("agent", "")) or None, offered.get(r["id"]))
            for r in ended
        ]
        return rows, [row for r in ended for row in sla_rows(ws, r["id"], r)]
