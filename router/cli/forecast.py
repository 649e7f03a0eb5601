"""`router forecast`: tomorrow's arrivals per 15 minutes and the agents they need.

Reads recorded calls (the anonbank 1999 records, or any file in that format),
forecasts the day with the smoothed model (or the seasonal naive baseline),
and turns every interval into agents on the phones with Erlang C, or Erlang A
when a mean patience is given. When the day itself is in the records, the real
arrivals are printed beside the forecast.

Data acknowledgement: the "Anonymous Bank" data set of the Technion Service
Enterprise Engineering lab (Guedj and Mandelbaum), studied in Brown et al.,
"Statistical Analysis of a Telephone Call Center: A Queueing-Science
Perspective", JASA 2005. Terms in `documentation.pdf` (page 1): the data is free
for use; acknowledge the source (keep this paragraph wherever the data is used
or shipped).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from router.wfm.anonbank import DEFAULT_DIR, Call, arrival_counts, read_all
from router.wfm.arrivals import Forecast
from router.wfm.forecast import agents_needed, seasonal_naive
from router.wfm.queueing import ServiceTarget, parse_target
from router.wfm.smoothing import smoothed_forecast
from router.wfm.staffing import agents_needed as staff


class CurvePoint(msgspec.Struct, frozen=True):
    start: str  # HH:MM
    expected: float
    lower: float
    upper: float
    agents: int
    actual: int | None


class Curve(msgspec.Struct, frozen=True):
    day: dt.date
    types: list[str]
    method: str
    aht: float
    target: ServiceTarget
    patience: float | None
    total_expected: float
    total_actual: int | None
    peak_agents: int
    agent_hours: float
    points: list[CurvePoint]


def served_aht(calls: Sequence[Call], before: dt.date, types: set[str] | None) -> float:
    """Mean handle time of served calls in the four weeks before `before`."""
    since = before - dt.timedelta(days=28)
    times = [c.ser_time for c in calls
             if c.outcome == "AGENT" and c.ser_time > 0 and since <= c.date < before
             and (types is None or c.type in types)]  # fmt: skip
    if not times:
        raise ValueError(f"no served calls in the four weeks before {before}")
    return statistics.fmean(times)


def curve(
    calls: Sequence[Call],
    day: dt.date,
    target: ServiceTarget,
    *,
    types: set[str] | None = None,
    method: str = "smoothed",
    patience: float | None = None,
) -> Curve:
    history = arrival_counts(calls, types=types)
    known = {d: v for d, v in history.items() if d < day}
    fc: Forecast = (smoothed_forecast(known, day) if method == "smoothed"
                    else seasonal_naive(known, day))  # fmt: skip
    aht = served_aht(calls, day, types)
    agents = agents_needed(
        fc, aht, lambda rate, h: staff(rate, h, target, patience=patience).agents
    )
    actual = history.get(day)
    points = [
        CurvePoint(
            start=f"{i // 4:02d}:{i % 4 * 15:02d}",
            expected=round(fc.expected[i], 2),
            lower=round(fc.lower[i], 2),
            upper=round(fc.upper[i], 2),
            agents=agents[i],
            actual=actual[i] if actual is not None else None,
        )
        for i in range(len(fc.expected))
    ]
    return Curve(
        day=day, types=sorted(types) if types else ["ALL"], method=method, aht=round(aht, 1),
        target=target, patience=patience, total_expected=round(fc.total, 1),
        total_actual=sum(actual) if actual is not None else None,
        peak_agents=max(agents, default=0), agent_hours=sum(agents) / 4, points=points,
    )  # fmt: skip


def _print(c: Curve) -> None:
    model = f"Erlang A, patience {c.patience:g} s" if c.patience else "Erlang C"
    print(
        f"{c.day} ({c.day:%A}), skills {','.join(c.types)}, {c.method} forecast, "
        f"AHT {c.aht:g} s, target {c.target.percent:g}/{c.target.seconds:g}, {model}"
    )
    print(f"{'start':>5} {'forecast':>9} {'90% range':>13} {'actual':>6} {'agents':>6}")
    for p in c.points:
        if p.expected == 0 and not p.actual:
            continue  # closed
        actual = "" if p.actual is None else str(p.actual)
        print(
            f"{p.start:>5} {p.expected:9.1f} {p.lower:6.1f}-{p.upper:<6.1f} {actual:>6} "
            f"{p.agents:6d}"
        )
    total_actual = "" if c.total_actual is None else f", actual {c.total_actual}"
    print(
        f"day total: forecast {c.total_expected:g}{total_actual}; "
        f"peak {c.peak_agents} agents, {c.agent_hours:g} agent-hours on the phones"
    )


def _run(args: argparse.Namespace) -> int:
    try:
        day = dt.date.fromisoformat(args.day)
        target = parse_target(args.target)
    except ValueError as exc:
        print(f"router forecast: {exc}", file=sys.stderr)
        return 2
    calls = list(read_all(Path(args.data)))
    types = set(args.type.split(",")) if args.type else None
    c = curve(calls, day, target, types=types, method=args.method, patience=args.patience)
    if args.json:
        print(msgspec.json.encode(c).decode())
    else:
        _print(c)
    return 0


def add_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("forecast", help="forecast a day's arrivals and the agents they need")
    p.add_argument("--data", default=os.environ.get("ANONBANK_DIR", str(DEFAULT_DIR)),
                   help="folder of *.txt.gz call records (anonbank format)")  # fmt: skip
    p.add_argument("--day", required=True, help="YYYY-MM-DD, e.g. 1999-07-04")
    p.add_argument("--type", help="skills (comma list, e.g. PS); all when left out")
    p.add_argument("--method", choices=("smoothed", "naive"), default="smoothed")
    p.add_argument("--target", default="80/20", help="service level, percent/seconds")
    p.add_argument("--patience", type=float, help="mean patience in s: Erlang A")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=_run)
