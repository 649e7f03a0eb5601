"""Business calendars of SLA policies: the wire form and its checks. Pure code, no I/O.

A `Calendar` is the wire form embedded in the routing config: a timezone,
weekly hours, holidays and per-date exceptions. `calendar_problems` lists
everything wrong with one, each at its path; `compile_calendar`
(`sla/business_time.py`) checks it and turns it into a `BusinessCalendar`,
which does the arithmetic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from typing import Annotated, Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import Meta, Struct

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: Final[tuple[str, ...]] = get_args(Weekday)
# The patterns put the shape into the JSON Schema, so the config validator
# reports a malformed value at its path; `calendar_problems` adds what a
# pattern cannot say (start >= end, overlaps, unknown zone, 2025-02-30).
Interval = Annotated[str, Meta(pattern=r"^\d\d:\d\d-\d\d:\d\d$", examples=["09:00-12:00"])]
DateText = Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}$", examples=["2025-12-25"])]
TimezoneName = Annotated[str, Meta(min_length=1, max_length=64, examples=["Asia/Shanghai"])]


class Calendar(Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """Business hours of a contact center, in local time of `timezone`.

    `hours` maps a weekday ("mon".."sun"; a day left out is closed) to its
    intervals "HH:MM-HH:MM" (end may be "24:00"); split shifts are several
    intervals. `holidays` are closed dates "YYYY-MM-DD"; `exceptions` give a
    date its own intervals in place of its weekday's (empty: closed).
    """

    timezone: TimezoneName
    hours: dict[Weekday, list[Interval]]
    holidays: list[DateText] = []
    exceptions: dict[DateText, list[Interval]] = {}


INTERVAL_RE: Final = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")
DATE_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")

PathPart = str | int
Problem = tuple[tuple[PathPart, ...], str]
# Minutes since local midnight, [start, end), end <= 1440.
Span = tuple[int, int]


class CalendarError(ValueError):
    """Base of the calendar errors."""


class InvalidCalendar(CalendarError):
    def __init__(self, problems: list[Problem]) -> None:
        shown = "; ".join(f"{dotted(path)}: {msg}" for path, msg in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"invalid calendar: {shown}{more}")
        self.problems = problems


class NoBusinessTime(CalendarError):
    """The calendar has too little open time within `HORIZON_DAYS` of the start."""


# --- validation ---------------------------------------------------------------


def calendar_problems(cal: Calendar | object, base: Sequence[PathPart] = ()) -> list[Problem]:
    """Every problem of a calendar as (path, message), path parts below `base`.

    Takes a `Calendar` or its plain JSON value, so the config validator can run
    it on a document that failed the schema elsewhere; shape problems a schema
    also reports are reported here too (the validator drops such echoes).
    """
    doc = msgspec.to_builtins(cal) if isinstance(cal, Calendar) else cal
    at = tuple(base)
    if not isinstance(doc, dict):
        return [(at, "expected a calendar object")]
    problems: list[Problem] = []
    zone = doc.get("timezone")
    if not isinstance(zone, str) or zone_of(zone) is None:
        problems.append(((*at, "timezone"), f"unknown IANA timezone {zone!r}"))
    problems += _hours_problems((*at, "hours"), doc.get("hours"))
    holidays = doc.get("holidays", [])
    if not isinstance(holidays, list):
        problems.append(((*at, "holidays"), "expected a list of dates"))
        holidays = []
    for i, text in enumerate(holidays):
        if parse_date(text) is None:
            problems.append(((*at, "holidays", i), f"expected a date YYYY-MM-DD, got {text!r}"))
    exceptions = doc.get("exceptions", {})
    if not isinstance(exceptions, dict):
        return [*problems, ((*at, "exceptions"), "expected an object of date -> intervals")]
    for text, intervals in exceptions.items():
        where = (*at, "exceptions", str(text))
        if parse_date(text) is None:
            problems.append((where, f"expected a date YYYY-MM-DD, got {text!r}"))
        elif text in holidays:
            # Which one wins would be a guess; the operator decides.
            problems.append((where, "date is also a holiday; keep one of them"))
        problems += _intervals_problems(where, intervals)
    return problems


def _hours_problems(at: tuple[PathPart, ...], hours: object) -> list[Problem]:
    if not isinstance(hours, dict):
        return [(at, "expected an object of weekday -> intervals")]
    problems: list[Problem] = []
    for day, intervals in hours.items():
        if day not in WEEKDAYS:
            problems.append(((*at, str(day)), f"unknown weekday; use one of {', '.join(WEEKDAYS)}"))
        problems += _intervals_problems((*at, str(day)), intervals)
    if not any(isinstance(v, list) and v for v in hours.values()):
        problems.append((at, "open on no weekday; business time would never pass"))
    return problems


def _intervals_problems(at: tuple[PathPart, ...], intervals: object) -> list[Problem]:
    if not isinstance(intervals, list):
        return [(at, "expected a list of intervals 'HH:MM-HH:MM'")]
    problems: list[Problem] = []
    parsed: list[tuple[int, int, int]] = []
    for i, text in enumerate(intervals):
        span = parse_interval(text)
        if isinstance(span, str):
            problems.append(((*at, i), span))
        else:
            parsed.append((*span, i))
    # Sorted by start, an interval overlaps an earlier one iff it starts
    # before the latest end seen so far (not just the previous interval's).
    parsed.sort()
    reach, reach_i = -1, -1
    for start, end, i in parsed:
        if start < reach:
            problems.append(((*at, i), f"overlaps {intervals[reach_i]!r} at index {reach_i}"))
        if end > reach:
            reach, reach_i = end, i
    problems.sort(key=lambda p: p[0][-1] if isinstance(p[0][-1], int) else -1)
    return problems


def parse_interval(text: object) -> Span | str:
    """Minutes (start, end) of "HH:MM-HH:MM", or the reason it is not valid."""
    match = INTERVAL_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return f"expected an interval 'HH:MM-HH:MM', got {text!r}"
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        return f"times run from 00:00 to 24:00, got {text!r}"
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start >= end:
        return f"start must be before end, got {text!r} (an overnight shift is two intervals)"
    return start, end


def parse_date(text: object) -> date | None:
    # fromisoformat alone also takes "2025-W01-1"; only the documented form
    # may pass, so a date string means one thing everywhere (holiday lookups).
    if not isinstance(text, str) or DATE_RE.fullmatch(text) is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def zone_of(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError: a key that is not a relative path ("", "/etc/x", "a/../b").
        return None


def dotted(path: tuple[PathPart, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
