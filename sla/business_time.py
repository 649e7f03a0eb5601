"""Business-time arithmetic for SLA clocks: pure code, no I/O.

`compile_calendar` checks a `Calendar` (`sla/calendar.py`) and turns it into a
`BusinessCalendar`, which answers the questions the SLA engine asks, all in
POSIX epoch milliseconds (the engine's clock is Redis TIME):

- `add_business(cal, start_ms, duration_ms)`: when `duration_ms` of business
  time has elapsed counting from `start_ms`;
- `business_between(cal, a_ms, b_ms)`: business time between two instants
  (remaining budget when a paused clock resumes);
- `is_open(cal, t_ms)`, `next_open(cal, t_ms)`.

Every function takes `None` for a 24x7 calendar: wall-clock time, so policies
in plain seconds use the same call sites.

Semantics:
- Intervals are half-open, `[start, end)` in local wall time; an end of `24:00`
  is midnight of the next day, so `22:00-24:00` on Monday and `00:00-06:00` on
  Tuesday are one continuous overnight shift.
- Business time is REAL elapsed time inside open intervals: on a spring-forward
  day `01:00-05:00` is 3 hours, on a fall-back day 5 hours.
- Local wall times map to instants by one monotone rule, so a day's intervals
  never overlap or reorder after conversion: an ambiguous time (fall-back
  repeat) is its first occurrence (fold=0); a nonexistent time (spring-forward
  gap) is the instant of the transition, i.e. the first real instant after the
  gap (`02:30` on a New York spring-forward day is 03:00 EDT; an interval lying
  wholly in the gap is empty).
- A date listed in `exceptions` uses those intervals instead of its weekday's
  (an empty list closes it); a date in `holidays` is closed.
- `add_business` with a zero duration returns `start_ms` when open, else the
  next opening; a duration that ends exactly at a closing returns the closing.
- Searches are bounded: a due time or opening not found within `HORIZON_DAYS`
  of the start raises `NoBusinessTime` instead of looping forever.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from sla.calendar import (
    WEEKDAYS,
    Calendar,
    InvalidCalendar,
    NoBusinessTime,
    Span,
    calendar_problems,
    parse_interval,
    zone_of,
)

# Far enough for any real SLA (30 business days is ~6 weeks), near enough that
# a calendar that never opens fails in milliseconds.
HORIZON_DAYS: Final = 3 * 366
_DAY_MS: Final = 86_400_000
_CACHE_DAYS: Final = 4096
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


# --- compiled form ------------------------------------------------------------


def compile_calendar(cal: Calendar) -> BusinessCalendar:
    """Check `cal` and parse it once; raises `InvalidCalendar` listing every problem."""
    return BusinessCalendar(cal)


def _spans(intervals: Sequence[str]) -> tuple[Span, ...]:
    """Sorted spans, touching ones merged (12:00-13:00 + 13:00-14:00 is one)."""
    out: list[Span] = []
    for text in intervals:
        span = parse_interval(text)
        assert not isinstance(span, str), "validated by BusinessCalendar()"
        out.append(span)
    out.sort()
    merged: list[Span] = []
    for start, end in out:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return tuple(merged)


class BusinessCalendar:
    """A validated calendar, parsed once; open spans per local date are cached."""

    __slots__ = ("_cache", "_exceptions", "_holidays", "_weekly", "tz")

    def __init__(self, cal: Calendar) -> None:
        # Checked here rather than by callers, so no instance holds a calendar
        # the arithmetic below would misread.
        problems = calendar_problems(cal)
        zone = zone_of(cal.timezone)
        if problems or zone is None:
            raise InvalidCalendar(problems)
        self.tz: Final = zone
        hours = {str(day): intervals for day, intervals in cal.hours.items()}
        self._weekly: Final = tuple(_spans(hours.get(day, [])) for day in WEEKDAYS)
        self._holidays: Final = frozenset(date.fromisoformat(d).toordinal() for d in cal.holidays)
        self._exceptions: Final = {
            date.fromisoformat(d).toordinal(): _spans(v) for d, v in cal.exceptions.items()
        }
        # local date ordinal -> open instants [start_ms, end_ms) of that date
        self._cache: dict[int, tuple[tuple[int, int], ...]] = {}

    def add_business(self, start_ms: int, duration_ms: int) -> int:
        if duration_ms < 0:
            raise ValueError(f"duration must be >= 0, got {duration_ms}")
        left = duration_ms
        for start, end in self._open_from(start_ms):
            if left <= end - start:
                return start + left
            left -= end - start
        raise NoBusinessTime(
            f"{duration_ms} ms of business time not reached within {HORIZON_DAYS} days "
            f"of {start_ms} ({duration_ms - left} ms found): the calendar is open too little"
        )

    def next_open(self, t_ms: int) -> int:
        for start, _ in self._open_from(t_ms):
            return start
        raise NoBusinessTime(f"calendar not open within {HORIZON_DAYS} days of {t_ms}")

    def is_open(self, t_ms: int) -> bool:
        day = self._local_ordinal(t_ms)
        return any(s <= t_ms < e for d in (day - 1, day) for s, e in self._day(d))

    def business_between(self, a_ms: int, b_ms: int) -> int:
        if b_ms < a_ms:
            return -self.business_between(b_ms, a_ms)
        total = 0
        # Linear in the calendar days between a and b, with no horizon: the
        # range itself bounds the work.
        for day in range(self._local_ordinal(a_ms) - 1, self._local_ordinal(b_ms) + 1):
            for start, end in self._day(day):
                total += max(0, min(end, b_ms) - max(start, a_ms))
        return total

    def _open_from(self, t_ms: int) -> Iterator[tuple[int, int]]:
        """Open spans clipped to start at `t_ms`, in order, up to the horizon."""
        # The previous local date is cheap insurance: its spans end by local
        # midnight, which no instant of the current date precedes, but a
        # zone's odd history should not make us miss an open span.
        first = self._local_ordinal(t_ms) - 1
        for day in range(first, first + HORIZON_DAYS + 1):
            for start, end in self._day(day):
                if end > t_ms:
                    yield max(start, t_ms), end

    def _local_ordinal(self, t_ms: int) -> int:
        return datetime.fromtimestamp(t_ms // 1000, self.tz).toordinal()

    def _day(self, ordinal: int) -> tuple[tuple[int, int], ...]:
        spans = self._cache.get(ordinal)
        if spans is None:
            if len(self._cache) >= _CACHE_DAYS:
                # Lookups cluster around "now"; starting over is simpler than
                # LRU bookkeeping and still bounds memory.
                self._cache.clear()
            spans = self._cache[ordinal] = self._compute_day(ordinal)
        return spans

    def _compute_day(self, ordinal: int) -> tuple[tuple[int, int], ...]:
        if ordinal in self._holidays:
            return ()
        day = date.fromordinal(ordinal)
        local = self._exceptions.get(ordinal, self._weekly[day.weekday()])
        midnight = datetime(day.year, day.month, day.day)
        out: list[tuple[int, int]] = []
        for start, end in local:
            s = self._wall_to_ms(midnight + timedelta(minutes=start))
            e = self._wall_to_ms(midnight + timedelta(minutes=end))
            if e > s:  # an interval wholly inside a DST gap has no real time
                out.append((s, e))
        return tuple(out)

    def _wall_to_ms(self, wall: datetime) -> int:
        """Instant of naive local `wall`: first occurrence, or the end of a gap."""
        first = _ms(wall.replace(tzinfo=self.tz))  # fold=0: earlier offset
        if _naive(first, self.tz) == wall:
            return first
        # `wall` falls in a gap. With the later offset (fold=1) it maps before
        # the transition and with the earlier one (fold=0) at or after it;
        # bisect whole seconds (zone offsets are whole seconds) for the switch.
        lo = _ms(wall.replace(tzinfo=self.tz, fold=1)) // 1000
        hi = first // 1000
        before = _offset(lo, self.tz)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _offset(mid, self.tz) == before:
                lo = mid
            else:
                hi = mid
        return hi * 1000


def _ms(aware: datetime) -> int:
    return (aware - _EPOCH) // timedelta(milliseconds=1)


def _naive(t_ms: int, tz: ZoneInfo) -> datetime:
    return (_EPOCH + timedelta(milliseconds=t_ms)).astimezone(tz).replace(tzinfo=None)


def _offset(t_s: int, tz: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(t_s, tz).utcoffset()


# --- call sites: `None` is a 24x7 (wall-clock) calendar --------------------------


def add_business(cal: BusinessCalendar | None, start_ms: int, duration_ms: int) -> int:
    """The instant at which `duration_ms` of business time has elapsed from `start_ms`."""
    if cal is None:
        if duration_ms < 0:
            raise ValueError(f"duration must be >= 0, got {duration_ms}")
        return start_ms + duration_ms
    return cal.add_business(start_ms, duration_ms)


def business_between(cal: BusinessCalendar | None, a_ms: int, b_ms: int) -> int:
    """Business ms from `a_ms` to `b_ms`; negative when `b_ms` is earlier."""
    return b_ms - a_ms if cal is None else cal.business_between(a_ms, b_ms)


def is_open(cal: BusinessCalendar | None, t_ms: int) -> bool:
    """Whether `t_ms` is inside an open interval (intervals are [start, end))."""
    return True if cal is None else cal.is_open(t_ms)


def next_open(cal: BusinessCalendar | None, t_ms: int) -> int:
    """`t_ms` when open, else the next opening; `NoBusinessTime` past the horizon."""
    return t_ms if cal is None else cal.next_open(t_ms)
