"""History reports without a database: the window, interval and grouping read
from the query (in the workspace's local time), and the CSV rendering."""

from __future__ import annotations

import csv
import datetime as dt
import io

import msgspec
import pytest
from aiohttp.test_utils import make_mocked_request

from router.api.appkeys import TOKEN
from router.api.reports import csv_body, report_query
from router.archive.reports import ReportQuery, ServiceRow, SlaRow
from router.routing.config import RoutingConfig
from router.runtime.errors import InvalidInput
from router.runtime.settings import Token
from tests.support.client import small_config


def _query(qs: str, tz: str = "Asia/Tokyo", token: Token | None = None) -> ReportQuery:
    cfg = msgspec.convert({**small_config(), "timezone": tz}, RoutingConfig)
    request = make_mocked_request("GET", "/r?" + qs)
    request[TOKEN] = token or Token("sup", "supervisor")
    return report_query(request, "w", cfg)


def test_dates_are_local_days_and_to_includes_its_day() -> None:
    q = _query("from=2026-03-01&to=2026-03-02&interval=hour&by=team,pool,team")
    assert q.start.isoformat() == "2026-03-01T00:00:00+09:00"
    assert q.end.isoformat() == "2026-03-03T00:00:00+09:00"
    assert q.by == ("team", "pool") and q.interval == "hour"
    # a datetime without an offset is local, with one it is that instant; `to` exclusive
    q = _query("from=2026-03-01T09:30&to=2026-03-01T10:00:00%2B00:00")
    assert q.start.isoformat() == "2026-03-01T09:30:00+09:00"
    assert q.end.isoformat() == "2026-03-01T10:00:00+00:00"
    # default: today's local day, whoever sees every team
    q = _query("", token=Token("adm", "admin"))
    assert q.end - q.start == dt.timedelta(days=1)
    assert q.teams is None
    scoped = Token("s", "supervisor", teams=frozenset({"north"}))
    assert _query("", token=scoped).teams == frozenset({"north"})


@pytest.mark.parametrize(
    ("qs", "field"),
    [
        ("from=2026-3-1", "from"),
        ("from=2026-02-29", "from"),
        ("to=2026-03-01T25:00", "to"),
        ("from=1969-12-31", "from"),
        ("from=2026-03-02&to=2026-03-01", "to"),
        ("from=2025-01-01&to=2026-03-01", "to"),
        ("interval=minute", "interval"),
        ("from=2026-01-01&to=2026-12-31&interval=15m", "interval"),
        ("by=pool,agent", "by"),
        ("by=", None),  # empty: not grouped
    ],
)
def test_bad_values_name_their_parameter(qs: str, field: str | None) -> None:
    if field is None:
        assert _query(qs).by == ()
        return
    with pytest.raises(InvalidInput) as info:
        _query(qs)
    assert info.value.field == field


def test_csv_has_a_header_and_one_line_per_row_with_names_kept_as_text() -> None:
    row = ServiceRow(
        "2026-03-01T00:00:00+09:00", {"pool": "-A1", "team": None}, 2, 1, 1, 1, 0, 0,
        50.0, 100.0, 50.0, 1.5, None, 3.0,
    )  # fmt: skip
    text = csv_body(["pool", "team"], ServiceRow, [row])
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0][:4] == ["start", "pool", "team", "offered"]
    assert lines[1][:4] == ["2026-03-01T00:00:00+09:00", "'-A1", "", "2"]
    assert len(lines) == 2 and lines[0][-1] == "longest_wait_seconds" and lines[1][-2] == ""
    # an empty report still names its columns
    assert csv_body([], SlaRow, []).startswith("start,policy,clock,met,missed,cancelled,")
