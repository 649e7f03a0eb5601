"""History reports (supervisors, admins): service, SLA and surveys from the archive.

Query parameters, shared by the three reports:

- `from`, `to`: ISO dates or datetimes; without an offset they are local
  times in the workspace's `timezone`. A date `from` is that day's start; a
  date `to` includes that whole day (it ends at the next local midnight); a
  datetime `to` is exclusive. Default: today, local.
- `interval`: `15m`, `hour`, `day` (default) or `month`, of local time.
- `by` (service, surveys): a comma list of `pool,channel,tier,intent,team`.

JSON by default; `Accept: text/csv` gives a header row and one line per row.
Without an archive (`ROUTER_ARCHIVE_URL`) the reports answer 404, since no
retry will help; an archive that is down or too slow answers 503 with
Retry-After. A supervisor token limited to teams sees only contacts archived
with one of its teams (the team of the agent who held the contact last):
contacts abandoned or expired in queue belong to no team and count only for
callers that see every team.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar, cast
from zoneinfo import ZoneInfo

import msgspec
import psycopg
from aiohttp import web
from msgspec import Struct

from router.api.appkeys import ENGINE, HISTORY, TOKEN
from router.api.common import error_response, json_response, path_id, roles
from router.archive.reports import (
    DIMENSIONS,
    INTERVALS,
    ReportQuery,
    ServiceRow,
    SlaRow,
    SurveyRow,
    service_report,
    sla_report,
    surveys_report,
)
from router.routing.config import RoutingConfig
from router.runtime.errors import FieldProblem, InvalidInput, NotFound, Unavailable

log = logging.getLogger(__name__)

# A date, or a datetime to the microsecond with an optional offset; the OpenAPI
# document carries the same pattern.
MOMENT: Final = (
    r"^\d{4}-\d{2}-\d{2}"
    r"([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?$"
)
BY: Final = r"^(pool|channel|tier|intent|team)(,(pool|channel|tier|intent|team)){0,4}$"
_MOMENT, _BY = re.compile(MOMENT), re.compile(BY)
MAX_DAYS: Final = 366
MAX_BUCKETS: Final = 10_000
_STEP: Final = {"15m": 900, "hour": 3600, "day": 86_400, "month": 28 * 86_400}
RETRY_AFTER_S: Final = 5
EARLIEST, LATEST = 1970, 9998  # years a report may start or end in

R = TypeVar("R", bound=Struct)


class Report(Struct, frozen=True):
    """What every report answers: its window, in the workspace's time."""

    workspace: str
    timezone: str
    interval: str
    from_: str = msgspec.field(name="from")
    to: str
    by: list[str]


class ServiceReport(Report, frozen=True):
    rows: list[ServiceRow]


class SlaReport(Report, frozen=True):
    rows: list[SlaRow]


class SurveyReport(Report, frozen=True):
    rows: list[SurveyRow]


def _bad(name: str, message: str) -> InvalidInput:
    return InvalidInput([FieldProblem(name, message)])


def _moment(request: web.Request, name: str, zone: ZoneInfo) -> tuple[dt.datetime, bool] | None:
    """The parameter as an aware time, and whether it was a date; None if absent."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if not _MOMENT.match(raw):
        raise _bad(name, "expected an ISO date (2026-12-04) or datetime (2026-12-04T09:00)")
    try:
        if len(raw) == 10:
            day = dt.date.fromisoformat(raw)
            at = dt.datetime(day.year, day.month, day.day, tzinfo=zone)
            if not EARLIEST <= at.year <= LATEST:
                raise _bad(name, f"a year from {EARLIEST} to {LATEST}")
            return at, True
        at = dt.datetime.fromisoformat(raw)
    except ValueError as exc:
        raise _bad(name, f"not a valid date or time: {exc}") from None
    at = at.replace(tzinfo=zone) if at.tzinfo is None else at
    if not EARLIEST <= at.year <= LATEST:  # also keeps offsets from crossing year 1 or 9999
        raise _bad(name, f"a year from {EARLIEST} to {LATEST}")
    return at, False


def _next_midnight(at: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    day = at.astimezone(zone).date() + dt.timedelta(days=1)
    return dt.datetime(day.year, day.month, day.day, tzinfo=zone)


def report_query(
    request: web.Request, ws: str, cfg: RoutingConfig, grouped: bool = True
) -> ReportQuery:
    """The report's window, interval and grouping from the query, checked (422
    naming the parameter)."""
    zone = ZoneInfo(cfg.timezone)
    try:
        start_p, end_p = _moment(request, "from", zone), _moment(request, "to", zone)
        if start_p is None:
            now = dt.datetime.now(zone)
            start = dt.datetime(now.year, now.month, now.day, tzinfo=zone)
        else:
            start = start_p[0]
        if end_p is None:
            end = _next_midnight(start, zone)
        else:
            end = _next_midnight(end_p[0], zone) if end_p[1] else end_p[0]
    except OverflowError:  # pragma: no cover - the years above keep clear of it
        raise _bad("to", "out of range") from None
    if end <= start:
        raise _bad("to", "must be after from")
    if end - start > dt.timedelta(days=MAX_DAYS):
        raise _bad("to", f"a report covers at most {MAX_DAYS} days")
    interval = request.query.get("interval", "day")
    if interval not in INTERVALS:
        raise _bad("interval", f"one of {', '.join(INTERVALS)}")
    if (end - start).total_seconds() / _STEP[interval] > MAX_BUCKETS:
        raise _bad("interval", f"at most {MAX_BUCKETS} intervals: choose a longer one")
    by: tuple[str, ...] = ()
    raw_by = request.query.get("by")
    if raw_by:
        if not grouped:
            raise _bad("by", "this report is not grouped")
        if not _BY.match(raw_by):
            raise _bad("by", f"a comma list of {', '.join(DIMENSIONS)}")
        by = tuple(dict.fromkeys(raw_by.split(",")))  # in order, once each
    tok = request[TOKEN]
    teams = tok.teams if tok.role == "supervisor" else None
    return ReportQuery(ws, start, end, cast(Any, interval), cfg.timezone, by, teams)


def _wants_csv(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return any(part.split(";")[0].strip().lower() == "text/csv" for part in accept.split(","))


def _cell(value: object) -> object:
    return "" if value is None else value


def _name_cell(value: str | None) -> str:
    # a name may begin with "-" (names allow it): a spreadsheet would read
    # "-A1" as a formula, so such a cell is quoted as text (OWASP's advice)
    if value is None:
        return ""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def csv_body(by: Sequence[str], typ: type[Struct], rows: Sequence[Struct]) -> str:
    """A header row, then one line per row: `start`, the `by` dimensions, then
    the figures, named and ordered as in the JSON."""
    figures = [f for f in typ.__struct_fields__ if f not in ("start", "group")]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["start", *by, *figures])
    for row in rows:
        group = cast(dict[str, Any], getattr(row, "group", {}))
        cells = [_cell(getattr(row, f)) for f in ("start", *figures)]
        cells[1:1] = [_name_cell(group.get(d)) for d in by]
        w.writerow(cells)
    return out.getvalue()


def _respond(
    request: web.Request, report: Report, typ: type[Struct], rows: Sequence[Struct]
) -> web.Response:
    if _wants_csv(request):
        body = csv_body(report.by, typ, rows)
        resp = web.Response(text=body, content_type="text/csv", charset="utf-8")
    else:
        resp = json_response(report)
    resp.headers["Vary"] = "Accept"
    return resp


async def _run(
    request: web.Request,
    grouped: bool,
    run: Callable[[Any, ReportQuery, RoutingConfig], Awaitable[list[R]]],
    make: Callable[..., Report],
    typ: type[R],
) -> web.Response:
    ws = path_id(request, "ws")
    cfg = (await request.app[ENGINE].configs.get(ws)).config
    q = report_query(request, ws, cfg, grouped)
    history = request.app.get(HISTORY)
    if history is None:
        raise NotFound("reports read the history archive, which is not configured here "
                       "(ROUTER_ARCHIVE_URL)")  # fmt: skip
    try:
        async with history.connection() as conn:
            rows = await run(conn, q, cfg)
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable, OSError) as exc:
        # the archive down, unreachable or too slow, or its schema not made yet
        # (replicas migrate it at start): a retry may succeed
        log.warning("archive unavailable for a report (%s)", type(exc).__name__)
        resp = error_response(Unavailable("the history archive is unavailable; retry shortly"))
        resp.headers["Retry-After"] = str(RETRY_AFTER_S)
        return resp
    zone = ZoneInfo(cfg.timezone)
    report = make(
        workspace=ws,
        timezone=cfg.timezone,
        interval=q.interval,
        from_=q.start.astimezone(zone).isoformat(),
        to=q.end.astimezone(zone).isoformat(),
        by=list(q.by),
        rows=rows,
    )
    return _respond(request, report, typ, rows)


def _thresholds(cfg: RoutingConfig) -> dict[str, float]:
    return {name: pool.service_level.seconds for name, pool in cfg.pools.items()}


@roles("supervisor")
async def get_service_report(request: web.Request) -> web.Response:
    """Offered, answered, abandoned, service level, ASA, AHT and longest wait."""

    async def run(conn: Any, q: ReportQuery, cfg: RoutingConfig) -> list[ServiceRow]:
        return await service_report(conn, q, _thresholds(cfg))

    return await _run(request, True, run, ServiceReport, ServiceRow)


@roles("supervisor")
async def get_sla_report(request: web.Request) -> web.Response:
    """SLA outcomes and the escalation steps fired, per policy and clock."""

    async def run(conn: Any, q: ReportQuery, _: RoutingConfig) -> list[SlaRow]:
        return await sla_report(conn, q)

    return await _run(request, False, run, SlaReport, SlaRow)


@roles("supervisor")
async def get_surveys_report(request: web.Request) -> web.Response:
    """CSAT and NPS from the ratings on finished contacts."""

    async def run(conn: Any, q: ReportQuery, _: RoutingConfig) -> list[SurveyRow]:
        return await surveys_report(conn, q)

    return await _run(request, True, run, SurveyReport, SurveyRow)


def setup_report_routes(app: web.Application) -> None:
    base = "/v1/workspaces/{ws}/reports"
    app.router.add_get(base + "/service", get_service_report)
    app.router.add_get(base + "/sla", get_sla_report)
    app.router.add_get(base + "/surveys", get_surveys_report)
