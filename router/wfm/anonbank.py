"""Reader of the "Anonymous Bank" call-center records (1999): one typed `Call` per row.

Data acknowledgement (kept wherever the data is used, as its terms ask):
the "Anonymous Bank" data set of the Technion Service Enterprise Engineering lab
(Guedj and Mandelbaum), studied in Brown et al., "Statistical Analysis of a Telephone
Call Center: A Queueing-Science Perspective", JASA 2005. Terms in `documentation.pdf`
(page 1): the data is free for use; acknowledge the source (keep this paragraph wherever
the data is used or shipped).

The files (`/work/shared/data/anonbank_1999/<month>.txt.gz`) are gzip-compressed,
tab-separated, with one header line and 17 columns::

    vru+line call_id customer_id priority type date vru_entry vru_exit vru_time
    q_start q_exit q_time outcome ser_start ser_exit ser_time server

Dates are ``YYMMDD`` (``990101`` is 1 January 1999, a Friday); times of day are ``H:MM:SS``
without padding and ``0:00:00`` means "not applicable"; durations are whole seconds.

Quirks handled (a row that cannot be read is counted under a reason in `ParseReport`,
never raised):

- spaces instead of a tab between ``priority`` and ``type`` (16 fields, e.g.
  ``"0       TT"``): split again on whitespace and kept (counted as repaired);
- a leading space in ``type`` (``" TT"``): stripped (counted as repaired);
- a type outside PS, PE, IN, NE, NW, TT (``AA``; a date where the type should be):
  skipped as ``unknown_type``;
- negative ``vru_time`` and ``ser_start`` before ``q_exit``: kept as recorded, neither
  is used to derive anything here;
- an arrival just after midnight for a call that entered the voice response unit (VRU)
  just before it (``vru_entry 23:59:56``, ``q_start 0:00:02``): dated the next day.

A call's `arrival` is when it asked for an agent: ``q_start``, or ``vru_exit`` for calls
that went straight from the VRU to an agent (no queue) or hung up in the VRU. Calls that
hung up in the VRU without queueing or being served are marked `vru_only`: they never
reached the agents' queue, so they are not demand for agents (see `is_agent_demand`).
"""

from __future__ import annotations

import datetime as dt
import gzip
from collections.abc import Container, Iterable, Iterator
from pathlib import Path
from typing import Final, Literal

import msgspec

from router.wfm.arrivals import bin_arrivals

Outcome = Literal["AGENT", "HANG", "PHANTOM"]

# The skills (the data's `type`): PS regular, PE regular in English, IN internet
# consulting, NE stock exchange, NW prospective customers, TT call-backs put on hold.
TYPES: Final = frozenset({"PS", "PE", "IN", "NE", "NW", "TT"})
OUTCOMES: Final[dict[str, Outcome]] = {"AGENT": "AGENT", "HANG": "HANG", "PHANTOM": "PHANTOM"}
HEADER_PREFIX: Final = "vru+line"
NO_SERVER: Final = "NO_SERVER"
NOT_APPLICABLE: Final = "0:00:00"
SECONDS_PER_DAY: Final = 86_400
# An arrival time this much earlier than the VRU entry time crossed midnight.
_MIDNIGHT_WRAP: Final = SECONDS_PER_DAY // 2

# Months in the order of the year; the data has no August, November or December.
MONTHS: Final = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
DEFAULT_DIR: Final = Path("/work/shared/data/anonbank_1999")


class Call(msgspec.Struct, frozen=True, gc=False):
    """One call. Times of day are seconds after midnight of `date`; durations seconds."""

    date: dt.date
    arrival: int  # asked for an agent: q_start, else vru_exit (0 <= arrival < 86400)
    type: str  # the skill: PS, PE, IN, NE, NW, TT
    priority: int  # 0, 1 regular or unidentified, 2 priority customers
    outcome: Outcome
    q_time: int  # wait in queue (0 when not queued)
    ser_time: int  # handle time (0 when not served)
    server: str | None  # agent name; None for NO_SERVER
    vru_only: bool  # hung up in the VRU: never queued nor served


class ParseReport(msgspec.Struct):
    """What a read did: rows seen, calls kept, rows repaired and skipped by reason."""

    rows: int = 0
    kept: int = 0
    skipped: dict[str, int] = msgspec.field(default_factory=dict)
    repaired: dict[str, int] = msgspec.field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def repair(self, what: str) -> None:
        self.repaired[what] = self.repaired.get(what, 0) + 1

    def merge(self, other: ParseReport) -> None:
        self.rows += other.rows
        self.kept += other.kept
        for k, v in other.skipped.items():
            self.skipped[k] = self.skipped.get(k, 0) + v
        for k, v in other.repaired.items():
            self.repaired[k] = self.repaired.get(k, 0) + v


class BadRow(ValueError):
    """A row that cannot be read; its message is the reason counted in `ParseReport`."""


_CLOCKS: dict[str, int] = {}  # at most 86,400 distinct times of day: parse each once


def parse_clock(text: str) -> int:
    """``H:MM:SS`` (hours unpadded) to seconds after midnight; `BadRow` if malformed."""
    seconds = _CLOCKS.get(text)
    if seconds is not None:
        return seconds
    parts = text.split(":")
    if len(parts) != 3 or len(parts[1]) != 2 or len(parts[2]) != 2:
        raise BadRow("bad_time")
    try:
        h, m, s = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        raise BadRow("bad_time") from None
    if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 60):
        raise BadRow("bad_time")
    seconds = h * 3600 + m * 60 + s
    _CLOCKS[text] = seconds
    return seconds


_DATES: dict[str, dt.date] = {}  # a file has about 30 distinct dates in 35,000 rows


def parse_date(text: str) -> dt.date:
    """``YYMMDD`` (``990101``) to a date in 1900-1999 (the data is from 1999)."""
    day = _DATES.get(text)
    if day is not None:
        return day
    if len(text) != 6 or not text.isdigit():
        raise BadRow("bad_date")
    try:
        day = dt.date(1900 + int(text[:2]), int(text[2:4]), int(text[4:]))
    except ValueError:
        raise BadRow("bad_date") from None
    _DATES[text] = day
    return day


def _seconds(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BadRow("bad_number") from None


def _fields(line: str, report: ParseReport) -> list[str]:
    f = line.rstrip("\r\n").split("\t")
    if len(f) == 16:
        # "0       TT": priority and type separated by spaces instead of a tab.
        pt = f[3].split()
        if len(pt) != 2:
            raise BadRow("field_count")
        f[3:4] = pt
        report.repair("priority_type_spaces")
    elif len(f) != 17:
        raise BadRow("field_count")
    return f


def _call(f: list[str], report: ParseReport) -> Call:
    kind = f[4]
    if kind not in TYPES:
        stripped = kind.strip()
        if stripped not in TYPES:
            raise BadRow("unknown_type")
        report.repair("type_whitespace")
        kind = stripped
    outcome = OUTCOMES.get(f[12])
    if outcome is None:
        raise BadRow("bad_outcome")
    priority = _seconds(f[3])
    if priority not in (0, 1, 2):
        raise BadRow("bad_priority")
    day = parse_date(f[5])
    vru_entry = parse_clock(f[6])
    queued = f[9] != NOT_APPLICABLE
    served = f[13] != NOT_APPLICABLE
    source = f[9] if queued else f[7]
    if source == NOT_APPLICABLE:
        if vru_entry == 0:
            raise BadRow("no_arrival_time")
        arrival = vru_entry
    else:
        arrival = parse_clock(source)
        if arrival + _MIDNIGHT_WRAP < vru_entry:
            day += dt.timedelta(days=1)
    server = f[16].strip()
    return Call(
        date=day,
        arrival=arrival,
        type=kind,
        priority=priority,
        outcome=outcome,
        q_time=_seconds(f[11]),
        ser_time=_seconds(f[15]),
        server=None if server == NO_SERVER or not server else server,
        vru_only=outcome == "HANG" and not queued and not served,
    )


def parse_lines(lines: Iterable[str], report: ParseReport | None = None) -> Iterator[Call]:
    """Calls of the data lines (header lines are skipped and not counted as rows)."""
    rep = report if report is not None else ParseReport()
    for line in lines:
        if not line or line.startswith(HEADER_PREFIX):
            continue
        rep.rows += 1
        try:
            call = _call(_fields(line, rep), rep)
        except BadRow as bad:
            rep.skip(str(bad))
            continue
        rep.kept += 1
        yield call


def read_calls(path: Path | str, report: ParseReport | None = None) -> Iterator[Call]:
    """Calls of one ``.txt.gz`` (or plain text) file, lazily."""
    p = Path(path)
    raw = p.read_bytes()
    if p.suffix == ".gz":
        raw = gzip.decompress(raw)  # ~4 MB a month: one call beats a line-by-line stream
    yield from parse_lines(raw.decode("ascii", errors="replace").splitlines(), report)


def data_files(directory: Path | str = DEFAULT_DIR) -> list[Path]:
    """The month files of `directory` in calendar order."""
    d = Path(directory)
    order = {m: i for i, m in enumerate(MONTHS)}
    found = [p for p in d.glob("*.txt.gz") if p.name.split(".")[0] in order]
    return sorted(found, key=lambda p: order[p.name.split(".")[0]])


def read_all(
    directory: Path | str = DEFAULT_DIR, report: ParseReport | None = None
) -> Iterator[Call]:
    """Every call of every month file in `directory`, in calendar order of the files."""
    for path in data_files(directory):
        yield from read_calls(path, report)


def is_agent_demand(call: Call) -> bool:
    """A call that asked for an agent: not a PHANTOM and not hung up inside the VRU."""
    return call.outcome != "PHANTOM" and not call.vru_only


def arrival_counts(
    calls: Iterable[Call], *, types: Container[str] | None = None
) -> dict[dt.date, list[int]]:
    """Agent demand (`is_agent_demand`) of `types` (all when None) per 15 minutes.

    Every day on which any call arrived (any type or outcome: the center was observed)
    is present, with zeros if none of `types` asked for an agent; a day without any
    record (the data has no August, nor 11-12 January) is missing, not zero.
    """
    calls = list(calls)
    arrivals = (
        (c.date, c.arrival)
        for c in calls
        if is_agent_demand(c) and (types is None or c.type in types)
    )
    return bin_arrivals(arrivals, days=sorted({c.date for c in calls}))
