"""History reports from the archive: service, SLA and survey figures per interval.

Every report buckets by local time in the workspace's timezone (PostgreSQL's
`date_trunc(unit, at AT TIME ZONE tz)`, `date_bin` for 15 minutes), so a day
is the workspace's day, DST included; each row's `start` is that local
interval's first instant, with its UTC offset.

- **service**: contacts by the interval they entered the queue (`enqueued_at`),
  finished ones only (a contact still live has no row yet). A contact counts
  once, under the pool it was offered from (`pool`) or, never offered, the last
  pool it reached (`pools[-1]`: the stage or SLA expansion it waited in last),
  and against that pool's `service_level.seconds` (20 s for a pool the config
  no longer has, or a contact queued for one agent).
- **sla**: each clock's outcome by the interval it stopped in (`sla_outcomes`),
  and the SLA steps the timers fired (`sla.warning`, `sla.breached`,
  `sla.escalated` events, with what each did) by the interval they fired in.
- **surveys**: ratings on contacts by the interval the contact ended in.

Values reach PostgreSQL as parameters; identifiers and the fixed interval
units are composed with `psycopg.sql`, never formatted in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import msgspec
from psycopg import AsyncConnection, sql

Interval = Literal["15m", "hour", "day", "month"]
INTERVALS: Final[tuple[str, ...]] = ("15m", "hour", "day", "month")
DIMENSIONS: Final[tuple[str, ...]] = ("pool", "channel", "tier", "intent", "team")
DEFAULT_SL_SECONDS: Final = 20.0  # the config's default `service_level.seconds`
STATEMENT_TIMEOUT: Final = "30s"  # a report must not hold a connection for long
SLA_STEPS: Final = ("sla.warning", "sla.breached", "sla.escalated")

# What each dimension is, in a contacts row `c`: the pool it was offered from,
# else the last pool reached (NULL for a contact queued for one agent), and the
# team of the agent who held it last.
_DIMENSION_SQL: Final[dict[str, sql.Composable]] = {
    "pool": sql.SQL("coalesce(c.pool, c.pools[cardinality(c.pools)])"),
    **{d: sql.SQL("c.{}").format(sql.Identifier(d)) for d in ("channel", "tier", "intent", "team")},
}


@dataclass(frozen=True)
class ReportQuery:
    ws: str
    start: dt.datetime  # aware, inclusive
    end: dt.datetime  # aware, exclusive
    interval: Interval
    timezone: str
    by: tuple[str, ...] = ()
    # None: every contact; else only contacts whose archived team is one of these
    teams: frozenset[str] | None = None


class ServiceRow(msgspec.Struct, frozen=True):
    start: str
    group: dict[str, str | None]
    offered: int
    answered: int
    answered_within: int  # answered with wait <= the pool's threshold
    abandoned: int  # unanswered, ended by the customer
    short_abandoned: int  # of those, within the pool's threshold
    expired: int  # unanswered, ended by the channel's max_wait
    service_level: float | None  # % answered_within / offered
    service_level_answered: float | None  # % answered_within / answered
    service_level_short_excluded: float | None  # % answered_within / (offered - short_abandoned)
    asa_seconds: float | None  # mean wait of answered contacts
    aht_seconds: float | None  # mean handle time (answer to end) of completed contacts
    longest_wait_seconds: float | None  # longest wait of any contact, answered or not


class SlaRow(msgspec.Struct, frozen=True):
    start: str
    policy: str
    clock: str
    met: int
    missed: int  # breached, then reached or ended
    cancelled: int
    compliance: float | None  # % met / (met + missed)
    warnings: int
    breaches: int
    escalations: int
    boosts: int
    expansions: int
    reassignments: int
    notifications: int
    followups: int


class SurveyRow(msgspec.Struct, frozen=True):
    start: str
    group: dict[str, str | None]
    csat_responses: int
    csat_mean: float | None  # 1..5
    csat_satisfied: float | None  # % of responses scoring 4 or 5
    nps_responses: int
    promoters: int  # 9..10
    passives: int  # 7..8
    detractors: int  # 0..6
    nps: float | None  # % promoters - % detractors, -100..100


def _bucket(column: sql.Composable, interval: str) -> sql.Composable:
    """The local interval `column` falls in, as a local timestamp."""
    local = sql.SQL("({} AT TIME ZONE %(tz)s)").format(column)
    if interval == "15m":
        # date_bin from a local midnight: quarter hours of the local clock
        return sql.SQL("date_bin('15 minutes', {}, timestamp '2000-01-01')").format(local)
    return sql.SQL("date_trunc({}, {})").format(sql.Literal(interval), local)


def _dims(by: Sequence[str]) -> list[sql.Composable]:
    return [sql.SQL("{} AS {}").format(_DIMENSION_SQL[d], sql.Identifier(d)) for d in by]


def _group(by: Sequence[str]) -> sql.Composable:
    return sql.SQL("").join(sql.SQL(", {}").format(sql.Identifier(d)) for d in by)


def _scope(q: ReportQuery, team: sql.Composable) -> sql.Composable:
    if q.teams is None:
        return sql.SQL("")
    return sql.SQL(" AND {} = ANY(%(teams)s)").format(team)


def _params(q: ReportQuery, **more: Any) -> dict[str, Any]:
    teams = sorted(q.teams) if q.teams is not None else None
    return {"ws": q.ws, "tz": q.timezone, "start": q.start, "end": q.end, "teams": teams, **more}


SERVICE: Final = """
WITH sl(pool, secs) AS (SELECT * FROM unnest(%(pools)s::text[], %(secs)s::float8[])),
x AS (
  SELECT {bucket} AS bucket{dims}, c.outcome, c.answered_at IS NOT NULL AS answered,
         c.wait_ms, c.handle_ms, coalesce(sl.secs, %(default_secs)s) * 1000 AS threshold_ms
  FROM contacts c LEFT JOIN sl ON sl.pool = coalesce(c.pool, c.pools[cardinality(c.pools)])
  WHERE c.ws = %(ws)s AND c.ended_at >= %(start)s
    AND c.enqueued_at >= %(start)s AND c.enqueued_at < %(end)s{scope}
)
SELECT bucket AT TIME ZONE %(tz)s{group},
  count(*),
  count(*) FILTER (WHERE answered),
  count(*) FILTER (WHERE answered AND wait_ms <= threshold_ms),
  count(*) FILTER (WHERE NOT answered AND outcome = 'abandoned'),
  count(*) FILTER (WHERE NOT answered AND outcome = 'abandoned' AND wait_ms <= threshold_ms),
  count(*) FILTER (WHERE NOT answered AND outcome = 'expired'),
  avg(wait_ms) FILTER (WHERE answered),
  avg(handle_ms) FILTER (WHERE answered AND outcome = 'completed'),
  max(wait_ms)
FROM x GROUP BY bucket{group} ORDER BY bucket{group}
"""

SLA: Final = """
WITH o AS (
  SELECT {bucket_o} AS bucket, s.policy, s.clock,
    count(*) FILTER (WHERE s.outcome = 'met') AS met,
    count(*) FILTER (WHERE s.outcome = 'missed') AS missed,
    count(*) FILTER (WHERE s.outcome = 'cancelled') AS cancelled
  FROM sla_outcomes s
  WHERE s.ws = %(ws)s AND s.stopped_at >= %(start)s AND s.stopped_at < %(end)s{scope_o}
  GROUP BY 1, 2, 3
), e AS (
  SELECT {bucket_e} AS bucket, e.doc->>'policy' AS policy, e.doc->>'clock' AS clock,
    count(*) FILTER (WHERE e.type = 'sla.warning') AS warnings,
    count(*) FILTER (WHERE e.type = 'sla.breached') AS breaches,
    count(*) FILTER (WHERE e.type = 'sla.escalated') AS escalations,
    count(*) FILTER (WHERE e.doc ? 'boost_ms') AS boosts,
    count(*) FILTER (WHERE e.doc ? 'expand') AS expansions,
    count(*) FILTER (WHERE e.doc ? 'reassign') AS reassignments,
    count(*) FILTER (WHERE e.doc ? 'notify') AS notifications,
    count(*) FILTER (WHERE e.doc ? 'followups') AS followups
  FROM events e
  WHERE e.ws = %(ws)s AND e.at >= %(start)s AND e.at < %(end)s
    AND e.type = ANY(%(steps)s){scope_e}
  GROUP BY 1, 2, 3
)
SELECT coalesce(o.bucket, e.bucket) AT TIME ZONE %(tz)s, coalesce(o.policy, e.policy, ''),
  coalesce(o.clock, e.clock, ''), coalesce(o.met, 0), coalesce(o.missed, 0),
  coalesce(o.cancelled, 0), coalesce(e.warnings, 0), coalesce(e.breaches, 0),
  coalesce(e.escalations, 0), coalesce(e.boosts, 0), coalesce(e.expansions, 0),
  coalesce(e.reassignments, 0), coalesce(e.notifications, 0), coalesce(e.followups, 0)
FROM o FULL JOIN e ON o.bucket = e.bucket AND o.policy = e.policy AND o.clock = e.clock
ORDER BY 1, 2, 3
"""

SURVEYS: Final = """
SELECT {bucket} AT TIME ZONE %(tz)s AS start{dims},
  count(*) FILTER (WHERE c.csat BETWEEN 1 AND 5),
  avg(c.csat) FILTER (WHERE c.csat BETWEEN 1 AND 5),
  count(*) FILTER (WHERE c.csat BETWEEN 4 AND 5),
  count(*) FILTER (WHERE c.nps BETWEEN 0 AND 10),
  count(*) FILTER (WHERE c.nps BETWEEN 9 AND 10),
  count(*) FILTER (WHERE c.nps BETWEEN 7 AND 8),
  count(*) FILTER (WHERE c.nps BETWEEN 0 AND 6)
FROM contacts c
WHERE c.ws = %(ws)s AND c.ended_at >= %(start)s AND c.ended_at < %(end)s
  AND (c.csat IS NOT NULL OR c.nps IS NOT NULL){scope}
GROUP BY 1{group} ORDER BY 1{group}
"""

# sla_outcomes and events carry no team: a team-scoped caller counts only the
# clocks and steps of contacts archived with one of its teams.
_SCOPED_CONTACT = (
    " AND EXISTS (SELECT 1 FROM contacts c WHERE c.ws = {0}.ws AND c.id = {0}.{1}"
    " AND c.team = ANY(%(teams)s))"
)


def _contacts_sql(template: str, at: str, q: ReportQuery) -> sql.Composed:
    """A report over `contacts` rows, bucketed by the time column `at`, grouped
    by the asked dimensions, limited to the caller's teams."""
    return sql.SQL(template).format(
        bucket=_bucket(sql.SQL(at), q.interval),
        dims=sql.SQL("").join(sql.SQL(", ") + d for d in _dims(q.by)),
        group=_group(q.by),
        scope=_scope(q, sql.SQL("c.team")),
    )


def service_sql(q: ReportQuery) -> sql.Composed:
    return _contacts_sql(SERVICE, "c.enqueued_at", q)


def sla_sql(q: ReportQuery) -> sql.Composed:
    def scope(alias: str, column: str) -> sql.Composable:
        if q.teams is None:
            return sql.SQL("")
        return sql.SQL(_SCOPED_CONTACT).format(sql.Identifier(alias), sql.Identifier(column))

    return sql.SQL(SLA).format(
        bucket_o=_bucket(sql.SQL("s.stopped_at"), q.interval),
        bucket_e=_bucket(sql.SQL("e.at"), q.interval),
        scope_o=scope("s", "contact"),
        scope_e=scope("e", "contact"),
    )


def surveys_sql(q: ReportQuery) -> sql.Composed:
    return _contacts_sql(SURVEYS, "c.ended_at", q)


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def _secs(ms: Decimal | float | int | None) -> float | None:
    return round(float(ms) / 1000, 3) if ms is not None else None


def _iso(start: dt.datetime, tz: str) -> str:
    return start.astimezone(ZoneInfo(tz)).isoformat()


async def _fetch(
    conn: AsyncConnection, query: sql.Composed, params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    # one read-only transaction with a time limit: a report is never a write,
    # and a runaway range must not pin one of the few pooled connections
    async with conn.transaction():
        await conn.execute("SET TRANSACTION READ ONLY")
        await conn.execute(
            sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(STATEMENT_TIMEOUT))
        )
        cur = await conn.execute(query, params)
        return list(await cur.fetchall())


async def service_report(
    conn: AsyncConnection, q: ReportQuery, thresholds: dict[str, float]
) -> list[ServiceRow]:
    """`thresholds`: pool -> service-level seconds from the workspace's config."""
    pools = sorted(thresholds)
    params = _params(
        q, pools=pools, secs=[thresholds[p] for p in pools], default_secs=DEFAULT_SL_SECONDS
    )
    rows = await _fetch(conn, service_sql(q), params)
    out = []
    n = len(q.by)
    for row in rows:
        start, dims = row[0], row[1 : 1 + n]
        offered, answered, within, abandoned, short, expired, asa, aht, longest = row[1 + n :]
        out.append(
            ServiceRow(
                start=_iso(start, q.timezone),
                group=dict(zip(q.by, dims, strict=True)),
                offered=offered,
                answered=answered,
                answered_within=within,
                abandoned=abandoned,
                short_abandoned=short,
                expired=expired,
                service_level=_pct(within, offered),
                service_level_answered=_pct(within, answered),
                service_level_short_excluded=_pct(within, offered - short),
                asa_seconds=_secs(asa),
                aht_seconds=_secs(aht),
                longest_wait_seconds=_secs(longest),
            )
        )
    return out


async def sla_report(conn: AsyncConnection, q: ReportQuery) -> list[SlaRow]:
    rows = await _fetch(conn, sla_sql(q), _params(q, steps=list(SLA_STEPS)))
    out = []
    for start, policy, clock, met, missed, cancelled, *steps in rows:
        compliance = _pct(met, met + missed)
        head = (_iso(start, q.timezone), policy, clock, met, missed, cancelled, compliance)
        out.append(SlaRow(*head, *steps))
    return out


async def surveys_report(conn: AsyncConnection, q: ReportQuery) -> list[SurveyRow]:
    rows = await _fetch(conn, surveys_sql(q), _params(q))
    out = []
    n = len(q.by)
    for row in rows:
        start, dims = row[0], row[1 : 1 + n]
        csat_n, csat_mean, satisfied, nps_n, promoters, passives, detractors = row[1 + n :]
        out.append(
            SurveyRow(
                start=_iso(start, q.timezone),
                group=dict(zip(q.by, dims, strict=True)),
                csat_responses=csat_n,
                csat_mean=round(float(csat_mean), 3) if csat_mean is not None else None,
                csat_satisfied=_pct(satisfied, csat_n),
                nps_responses=nps_n,
                promoters=promoters,
                passives=passives,
                detractors=detractors,
                nps=round(100.0 * (promoters - detractors) / nps_n, 2) if nps_n else None,
            )
        )
    return out
