"""Business-calendar arithmetic: exact due times a supervisor would check by hand."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sla.business_time import (
    HORIZON_DAYS,
    BusinessCalendar,
    add_business,
    business_between,
    compile_calendar,
    is_open,
    next_open,
)
from sla.calendar import Calendar, InvalidCalendar, NoBusinessTime, calendar_problems

H = 3_600_000
M = 60_000
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
LDN = ZoneInfo("Europe/London")


def at(tz: ZoneInfo, y: int, mo: int, d: int, h: int = 0, mi: int = 0, fold: int = 0) -> int:
    """Epoch ms of a local wall time."""
    return int(datetime(y, mo, d, h, mi, tzinfo=tz, fold=fold).timestamp()) * 1000


def cal(
    zone: str = "Asia/Shanghai",
    hours: dict[str, list[str]] | None = None,
    holidays: list[str] | None = None,
    exceptions: dict[str, list[str]] | None = None,
) -> BusinessCalendar:
    doc = {
        "timezone": zone,
        "hours": {d: ["09:00-12:00", "13:00-18:00"] for d in WEEKDAYS} if hours is None else hours,
        "holidays": holidays or [],
        "exceptions": exceptions or {},
    }
    return compile_calendar(msgspec.convert(doc, Calendar))


BANK = cal()
# 2025-01-03 is a Friday; 2025-01-06 the Monday after.
FRI, MON, TUE, WED, THU = (
    date(2025, 1, 3),
    date(2025, 1, 6),
    date(2025, 1, 7),
    date(2025, 1, 8),
    date(2025, 1, 9),
)


def sh(day: date, h: int, mi: int = 0) -> int:
    return at(SH, day.year, day.month, day.day, h, mi)


# --- Asia/Shanghai, weekdays 09:00-18:00 with lunch 12:00-13:00 -----------------


def test_friday_evening_plus_two_hours_skips_the_weekend() -> None:
    assert add_business(BANK, sh(FRI, 17), 2 * H) == sh(MON, 10)


def test_start_during_lunch_counts_from_one_pm() -> None:
    assert add_business(BANK, sh(MON, 12, 30), 1 * H) == sh(MON, 14)
    assert add_business(BANK, sh(MON, 12), 30 * M) == sh(MON, 13, 30)


def test_start_before_opening_counts_from_nine() -> None:
    assert add_business(BANK, sh(MON, 7), 30 * M) == sh(MON, 9, 30)


def test_start_after_closing_counts_from_next_morning() -> None:
    assert add_business(BANK, sh(MON, 19), 4 * H) == sh(TUE, 14)


def test_duration_spanning_lunch_and_days() -> None:
    assert add_business(BANK, sh(MON, 11), 2 * H) == sh(MON, 14)
    # 10:00 Mon + 12 h: 7 h Monday, 3 h Tue morning, 2 h Tue afternoon.
    assert add_business(BANK, sh(MON, 10), 12 * H) == sh(TUE, 15)


def test_duration_ending_at_a_closing_returns_the_closing() -> None:
    assert add_business(BANK, sh(MON, 9), 3 * H) == sh(MON, 12)
    assert add_business(BANK, sh(MON, 9), 8 * H) == sh(MON, 18)


def test_zero_duration_is_start_when_open_else_next_opening() -> None:
    assert add_business(BANK, sh(MON, 10, 15), 0) == sh(MON, 10, 15)
    assert add_business(BANK, sh(MON, 12), 0) == sh(MON, 13)
    assert add_business(BANK, sh(MON, 18), 0) == sh(TUE, 9)
    assert add_business(BANK, sh(FRI, 18), 0) == sh(MON, 9)


def test_holiday_in_the_middle_is_skipped() -> None:
    holiday = cal(holidays=["2025-01-08"])
    assert add_business(holiday, sh(TUE, 17), 2 * H) == sh(THU, 10)
    assert not is_open(holiday, sh(WED, 10))
    assert business_between(holiday, sh(TUE, 9), sh(THU, 18)) == 16 * H


def test_exception_shortened_day_before_a_holiday() -> None:
    short = cal(exceptions={"2025-01-03": ["09:00-12:00"]})
    assert add_business(short, sh(FRI, 11), 2 * H) == sh(MON, 10)
    assert not is_open(short, sh(FRI, 14))
    assert business_between(short, sh(FRI, 0), sh(MON, 0)) == 3 * H


def test_exception_opens_a_saturday() -> None:
    saturday = cal(exceptions={"2025-01-04": ["10:00-14:00"]})
    assert add_business(saturday, sh(FRI, 17), 2 * H) == sh(date(2025, 1, 4), 11)
    assert add_business(saturday, sh(FRI, 17), 6 * H) == sh(MON, 10)


def test_exception_with_no_intervals_closes_the_day() -> None:
    closed = cal(exceptions={"2025-01-06": []})
    assert add_business(closed, sh(FRI, 17), 2 * H) == sh(TUE, 10)


def test_overnight_shift_is_continuous_across_midnight() -> None:
    night = cal(hours={"mon": ["22:00-24:00"], "tue": ["00:00-06:00"]})
    assert add_business(night, sh(MON, 23), 2 * H) == sh(TUE, 1)
    assert add_business(night, sh(MON, 20), 3 * H) == sh(TUE, 1)
    assert is_open(night, sh(TUE, 0))
    assert is_open(night, sh(MON, 23, 59))
    assert not is_open(night, sh(TUE, 6))
    assert business_between(night, sh(MON, 0), sh(WED, 0)) == 8 * H
    # The shift ends Tue 06:00; the next one starts the following Monday 22:00.
    assert add_business(night, sh(TUE, 5), 2 * H) == sh(date(2025, 1, 13), 23)


def test_touching_intervals_are_one_span() -> None:
    joined = cal(hours={"mon": ["09:00-12:00", "12:00-13:00"]})
    assert is_open(joined, sh(MON, 12))
    assert add_business(joined, sh(MON, 11), 2 * H) == sh(MON, 13)


def test_thirty_business_days_without_stepping_minutes() -> None:
    # 30 business days of 8 h from Monday 09:00 are six whole weeks.
    assert add_business(BANK, sh(MON, 9), 30 * 8 * H) == sh(date(2025, 2, 14), 18)
    assert business_between(BANK, sh(MON, 9), sh(date(2025, 2, 14), 18)) == 240 * H


def test_is_open_and_next_open_boundaries_are_half_open() -> None:
    assert is_open(BANK, sh(MON, 9))
    assert not is_open(BANK, sh(MON, 8, 59))
    assert is_open(BANK, sh(MON, 11, 59))
    assert not is_open(BANK, sh(MON, 12))
    assert is_open(BANK, sh(MON, 13))
    assert not is_open(BANK, sh(MON, 18))
    assert next_open(BANK, sh(MON, 10)) == sh(MON, 10)
    assert next_open(BANK, sh(MON, 12, 1)) == sh(MON, 13)
    assert next_open(BANK, sh(FRI, 18)) == sh(MON, 9)


def test_business_between_is_antisymmetric_and_zero_when_closed() -> None:
    assert business_between(BANK, sh(MON, 10), sh(MON, 10)) == 0
    assert business_between(BANK, sh(MON, 10), sh(MON, 15)) == 4 * H
    assert business_between(BANK, sh(MON, 15), sh(MON, 10)) == -4 * H
    assert business_between(BANK, sh(FRI, 18), sh(MON, 9)) == 0


def test_negative_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="duration"):
        add_business(BANK, sh(MON, 10), -1)
    with pytest.raises(ValueError, match="duration"):
        add_business(None, sh(MON, 10), -1)


def test_none_calendar_is_wall_clock_time() -> None:
    start = sh(FRI, 17)
    assert add_business(None, start, 2 * H) == start + 2 * H
    assert business_between(None, start, start + 5 * H) == 5 * H
    assert is_open(None, start)
    assert next_open(None, start) == start


def test_pause_and_resume_keep_the_budget() -> None:
    target = 4 * H
    start, paused, resumed = sh(MON, 10), sh(MON, 11, 30), sh(WED, 16)
    spent = business_between(BANK, start, paused)
    assert spent == 90 * M
    due = add_business(BANK, resumed, target - spent)
    assert due == sh(THU, 9, 30)
    assert spent + business_between(BANK, resumed, due) == target


# --- daylight saving ------------------------------------------------------------


def ny_sunday(hours: list[str]) -> BusinessCalendar:
    return cal("America/New_York", hours={"sun": hours})


# 2025-03-09: 02:00 EST -> 03:00 EDT; 2025-11-02: 02:00 EDT -> 01:00 EST.
SPRING, FALL = date(2025, 3, 9), date(2025, 11, 2)


def ny(day: date, h: int, mi: int = 0, fold: int = 0) -> int:
    return at(NY, day.year, day.month, day.day, h, mi, fold)


def day_total(c: BusinessCalendar, tz: ZoneInfo, day: date) -> int:
    nxt = day + timedelta(days=1)
    return business_between(
        c, at(tz, day.year, day.month, day.day), at(tz, nxt.year, nxt.month, nxt.day)
    )


def test_spring_forward_interval_is_three_real_hours() -> None:
    c = ny_sunday(["01:00-05:00"])
    assert day_total(c, NY, SPRING) == 3 * H
    assert add_business(c, ny(SPRING, 1), 3 * H) == ny(SPRING, 5)
    # 01:30 EST + 30 min is 02:00 EST, which the clocks show as 03:00 EDT.
    assert add_business(c, ny(SPRING, 1, 30), 30 * M) == ny(SPRING, 3)
    assert ny(SPRING, 3) - ny(SPRING, 1, 30) == 30 * M


def test_fall_back_interval_is_five_real_hours() -> None:
    c = ny_sunday(["01:00-05:00"])
    assert day_total(c, NY, FALL) == 5 * H
    # One hour after 01:00 EDT the clocks show 01:00 again (EST).
    assert add_business(c, ny(FALL, 1), 1 * H) == ny(FALL, 1, fold=1)
    assert add_business(c, ny(FALL, 1), 5 * H) == ny(FALL, 5)


def test_ambiguous_bound_is_its_first_occurrence() -> None:
    c = ny_sunday(["01:30-03:00"])
    # From 01:30 EDT (05:30Z) to 03:00 EST (08:00Z).
    assert day_total(c, NY, FALL) == 150 * M
    assert next_open(c, ny(FALL, 0)) == ny(FALL, 1, 30, fold=0)


def test_nonexistent_bound_snaps_to_the_transition() -> None:
    assert day_total(ny_sunday(["02:30-04:00"]), NY, SPRING) == 1 * H  # 03:00-04:00 EDT
    assert next_open(ny_sunday(["02:30-04:00"]), ny(SPRING, 0)) == ny(SPRING, 3)
    # Wholly in the gap: no real time, closed that day.
    gap = ny_sunday(["02:00-02:30"])
    assert day_total(gap, NY, SPRING) == 0
    assert next_open(gap, ny(SPRING, 0)) == ny(date(2025, 3, 16), 2)
    # Bounds on both sides of the gap neither overlap nor double count.
    split = ny_sunday(["00:00-02:30", "03:00-06:00"])
    assert day_total(split, NY, SPRING) == 5 * H
    assert add_business(split, ny(SPRING, 1), 1 * H) == ny(SPRING, 3)


def test_london_transitions() -> None:
    # 2025-03-30 01:00 GMT -> 02:00 BST; 2025-10-26 02:00 BST -> 01:00 GMT.
    c = cal("Europe/London", hours={"sun": ["00:00-03:00"]})
    assert day_total(c, LDN, date(2025, 3, 30)) == 2 * H
    assert day_total(c, LDN, date(2025, 10, 26)) == 4 * H
    start = at(LDN, 2025, 10, 26, 0, 30)
    assert add_business(c, start, 2 * H) == at(LDN, 2025, 10, 26, 1, 30, fold=1)


def test_business_days_across_a_dst_change_keep_local_hours() -> None:
    c = cal("America/New_York", hours={d: ["09:00-17:00"] for d in WEEKDAYS})
    # Fri 2025-03-07 16:00 EST + 2 h -> Mon 2025-03-10 10:00 EDT.
    assert add_business(c, ny(date(2025, 3, 7), 16), 2 * H) == ny(date(2025, 3, 10), 10)


def test_whole_day_skipped_by_samoa() -> None:
    # Pacific/Apia jumped from 2011-12-29 24:00 to 2011-12-31 00:00.
    apia = ZoneInfo("Pacific/Apia")
    c = cal("Pacific/Apia", hours={d: ["09:00-17:00"] for d in ("thu", "fri", "sat")})
    assert add_business(c, at(apia, 2011, 12, 29, 16), 2 * H) == at(apia, 2011, 12, 31, 10)


# --- bounded search ---------------------------------------------------------------


def test_calendar_with_no_hours_is_invalid() -> None:
    with pytest.raises(InvalidCalendar, match="open on no weekday") as info:
        cal(hours={})
    assert info.value.problems == [
        (("hours",), "open on no weekday; business time would never pass")
    ]
    with pytest.raises(InvalidCalendar, match="open on no weekday"):
        cal(hours={"mon": [], "sat": []})


def test_only_holidays_ahead_raises_instead_of_looping() -> None:
    mondays = [(MON + timedelta(weeks=w)).isoformat() for w in range(4 * 53)]
    c = cal(hours={"mon": ["09:00-10:00"]}, holidays=mondays)
    with pytest.raises(NoBusinessTime, match=f"within {HORIZON_DAYS} days"):
        add_business(c, sh(MON, 0), 1 * H)
    with pytest.raises(NoBusinessTime, match="not open"):
        next_open(c, sh(MON, 0))
    assert not is_open(c, sh(MON, 9, 30))
    assert business_between(c, sh(MON, 0), sh(MON, 0) + 3 * 365 * 24 * H) == 0


def test_duration_beyond_the_horizon_raises() -> None:
    sparse = cal(hours={"mon": ["09:00-09:01"]})
    with pytest.raises(NoBusinessTime, match="open too little"):
        add_business(sparse, sh(MON, 0), 1000 * M)


# --- wire shape and validation -----------------------------------------------------


def test_decodes_from_json_and_rejects_unknown_fields() -> None:
    doc = b'{"timezone":"Asia/Shanghai","hours":{"mon":["09:00-18:00"]},"holidays":["2025-01-01"]}'
    parsed = msgspec.json.decode(doc, type=Calendar)
    assert parsed.hours == {"mon": ["09:00-18:00"]}
    assert msgspec.json.decode(msgspec.json.encode(parsed), type=Calendar) == parsed
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.json.decode(b'{"timezone":"UTC","hours":{},"tz":1}', type=Calendar)
    with pytest.raises(msgspec.ValidationError, match="matching regex"):
        msgspec.json.decode(b'{"timezone":"UTC","hours":{"mon":["9-18"]}}', type=Calendar)
    schema = msgspec.json.schema(Calendar)
    assert "Calendar" in schema["$defs"]


def test_validation_lists_every_problem_by_path() -> None:
    doc = {
        "timezone": "Mars/Olympus",
        "hours": {
            "mon": ["09:00-12:00", "11:00-13:00", "18:00-09:00", "9-12"],
            "tue": ["08:00-18:00", "10:00-11:00", "12:00-13:00", "24:00-24:00", "10:60-11:00"],
            "funday": ["09:00-10:00"],
        },
        "holidays": ["2025-02-30", "2025-12-25", "2025-W01-1"],
        "exceptions": {
            "2025-12-25": ["09:00-12:00"],
            "2025-13-01": [],
            "2025-12-24": "09:00-12:00",
        },
    }
    assert calendar_problems(doc, ["calendars", "cn"]) == [
        (("calendars", "cn", "timezone"), "unknown IANA timezone 'Mars/Olympus'"),
        (("calendars", "cn", "hours", "mon", 1), "overlaps '09:00-12:00' at index 0"),
        (
            ("calendars", "cn", "hours", "mon", 2),
            "start must be before end, got '18:00-09:00' (an overnight shift is two intervals)",
        ),
        (("calendars", "cn", "hours", "mon", 3), "expected an interval 'HH:MM-HH:MM', got '9-12'"),
        (("calendars", "cn", "hours", "tue", 1), "overlaps '08:00-18:00' at index 0"),
        (("calendars", "cn", "hours", "tue", 2), "overlaps '08:00-18:00' at index 0"),
        (
            ("calendars", "cn", "hours", "tue", 3),
            "times run from 00:00 to 24:00, got '24:00-24:00'",
        ),
        (
            ("calendars", "cn", "hours", "tue", 4),
            "times run from 00:00 to 24:00, got '10:60-11:00'",
        ),
        (
            ("calendars", "cn", "hours", "funday"),
            "unknown weekday; use one of mon, tue, wed, thu, fri, sat, sun",
        ),
        (("calendars", "cn", "holidays", 0), "expected a date YYYY-MM-DD, got '2025-02-30'"),
        (("calendars", "cn", "holidays", 2), "expected a date YYYY-MM-DD, got '2025-W01-1'"),
        (
            ("calendars", "cn", "exceptions", "2025-12-25"),
            "date is also a holiday; keep one of them",
        ),
        (
            ("calendars", "cn", "exceptions", "2025-13-01"),
            "expected a date YYYY-MM-DD, got '2025-13-01'",
        ),
        (
            ("calendars", "cn", "exceptions", "2025-12-24"),
            "expected a list of intervals 'HH:MM-HH:MM'",
        ),
    ]


def test_validation_of_a_typed_calendar_and_of_garbage() -> None:
    good = Calendar("Europe/London", {"mon": ["09:00-17:00", "17:00-24:00"]})
    assert calendar_problems(good) == []
    bad = Calendar("", {"mon": ["12:00-10:00"]}, holidays=["20250101"])
    assert [path for path, _ in calendar_problems(bad)] == [
        ("timezone",),
        ("hours", "mon", 0),
        ("holidays", 0),
    ]
    assert calendar_problems([], ["x"]) == [(("x",), "expected a calendar object")]
    assert [p for p, _ in calendar_problems({"timezone": "../etc/passwd", "hours": []})] == [
        ("timezone",),
        ("hours",),
    ]
    with pytest.raises(InvalidCalendar, match=r"hours\.mon\[0\]: start must be before end"):
        compile_calendar(Calendar("UTC", {"mon": ["12:00-10:00"], "tue": ["09:00-10:00"]}))


# --- properties -------------------------------------------------------------------

CALENDARS = [
    BANK,
    cal(
        holidays=["2025-01-08"],
        exceptions={"2025-01-04": ["10:00-14:00"], "2025-01-10": ["09:00-12:00"]},
    ),
    cal(hours={"mon": ["22:00-24:00"], "tue": ["00:00-06:00"], "fri": ["09:00-17:00"]}),
    cal(
        "America/New_York",
        hours={d: ["00:00-02:30", "03:00-09:00", "20:00-24:00"] for d in ("sat", "sun")},
    ),
    cal("Europe/London", hours={d: ["00:30-01:30", "08:00-20:00"] for d in ("sun", "mon")}),
]
# Around New York's and London's 2025 transitions and the Shanghai test weeks.
ORIGINS = [
    sh(date(2024, 12, 30), 0),
    at(NY, 2025, 3, 1),
    at(NY, 2025, 10, 25),
    at(LDN, 2025, 3, 22),
]
instants = st.builds(lambda o, off: o + off, st.sampled_from(ORIGINS), st.integers(0, 21 * 24 * H))
durations = st.integers(0, 80 * H)
calendars = st.sampled_from(CALENDARS)


@settings(max_examples=300, deadline=None)
@given(calendars, instants, durations)
def test_business_between_inverts_add_business(c: BusinessCalendar, start: int, d: int) -> None:
    due = add_business(c, start, d)
    assert due >= start
    assert business_between(c, start, due) == d
    assert due == next_open(c, start) or is_open(c, due - 1)


@settings(max_examples=300, deadline=None)
@given(calendars, instants, durations, st.integers(1, 80 * H))
def test_add_business_is_additive(c: BusinessCalendar, start: int, d1: int, d2: int) -> None:
    assert add_business(c, add_business(c, start, d1), d2) == add_business(c, start, d1 + d2)


@settings(max_examples=300, deadline=None)
@given(calendars, instants, st.integers(0, 40 * H), st.integers(0, 10 * 24 * H), durations)
def test_pause_resume_property(
    c: BusinessCalendar, start: int, run: int, pause: int, target: int
) -> None:
    paused = start + run
    resumed = paused + pause
    spent = business_between(c, start, paused)
    left = max(0, target - spent)
    due = add_business(c, resumed, left)
    assert spent + business_between(c, resumed, due) == max(target, spent)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 14 * 24 * 60), st.integers(0, 20 * 60))
def test_matches_a_minute_by_minute_count(start_min: int, dur_min: int) -> None:
    """Shanghai has no DST, so local minutes are real minutes: count them one by one."""
    c = CALENDARS[1]  # holiday Wed 2025-01-08, Sat 2025-01-04 opened, Fri 2025-01-10 short
    origin = datetime(2025, 1, 1)

    def open_at(local: datetime) -> bool:
        day, hm = local.date().isoformat(), local.strftime("%H:%M")
        if day == "2025-01-08":
            return False
        spans = {"2025-01-04": [("10:00", "14:00")], "2025-01-10": [("09:00", "12:00")]}.get(day)
        if spans is None:
            spans = [("09:00", "12:00"), ("13:00", "18:00")] if local.weekday() < 5 else []
        return any(a <= hm < b for a, b in spans)

    local = origin + timedelta(minutes=start_min)
    start = int(local.replace(tzinfo=SH).timestamp()) * 1000
    left = dur_min
    while left or not open_at(local):
        if left and open_at(local):
            left -= 1
            if not left:
                # The due time is the end of the last business minute.
                local += timedelta(minutes=1)
                break
        local += timedelta(minutes=1)
    expected = int(local.replace(tzinfo=SH).timestamp()) * 1000
    assert add_business(c, start, dur_min * M) == expected
    assert business_between(c, start, expected) == dur_min * M
