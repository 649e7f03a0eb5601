"""Rolling-origin evaluation of `router.wfm.forecast` on the "Anonymous Bank" records (1999).

For every day of an evaluation period the methods are fitted on every day before it and
forecast its 96 intervals of 15 minutes; the forecasts are compared with the recorded
arrivals (calls that asked for an agent: `router.wfm.anonbank.is_agent_demand`), in total
and per skill (the data's `type`; the engine's pools map to it).

    .venv/bin/python benchmarks/forecast_report.py [--data DIR] [--md FILE]

Data acknowledgement: the "Anonymous Bank" data set of the Technion Service Enterprise
Engineering lab (Guedj and Mandelbaum), studied in Brown et al., "Statistical Analysis
of a Telephone Call Center: A Queueing-Science Perspective", JASA 2005. Terms in
`documentation.pdf` (page 1): the data is free for use; acknowledge the source (keep this
paragraph wherever the data is used or shipped).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from router.wfm.anonbank import DEFAULT_DIR, Call, ParseReport, arrival_counts, read_all
from router.wfm.arrivals import Forecast, History
from router.wfm.forecast import seasonal_naive
from router.wfm.smoothing import fit_day_profile, forecast_day

ALL = "ALL"
PERIODS = {
    "Jun-Jul": (dt.date(1999, 6, 6), dt.date(1999, 7, 31)),  # 8 weeks Sun-Sat, trained Jan-May
    "Sep-Oct": (dt.date(1999, 9, 5), dt.date(1999, 10, 30)),  # 8 weeks after the August gap
}
SERIES = (ALL, "PS", "NW", "NE", "IN", "TT", "PE")
Method = Callable[[History, dt.date], Forecast]
SMOOTHED = "smoothed (day total x profile)"
METHODS: dict[str, Method] = {
    "seasonal naive (last week)": lambda h, d: seasonal_naive(h, d),
    "mean of last 4 same weekdays": lambda h, d: seasonal_naive(h, d, weeks=4),
    SMOOTHED: lambda h, d: forecast_day(fit_day_profile(h, until=d), d),
}


def histories(calls: Iterable[Call]) -> dict[str, dict[dt.date, list[int]]]:
    """Arrival counts per 15 minutes in total and per skill, on every day with records."""
    calls = list(calls)
    out = {ALL: arrival_counts(calls)}
    for kind in SERIES[1:]:
        out[kind] = arrival_counts(calls, types={kind})
    return out


@dataclass
class Scores:
    wape: float  # sum |error| / sum actual over intervals
    mae: float  # per interval (all 96 of every day, closed ones included)
    rmse: float
    day_wape: float  # sum |daily total error| / sum daily totals
    day_bias: float  # sum (forecast - actual) / sum actual of daily totals
    coverage: float  # share of intervals inside the 90% prediction interval


def score(pairs: Sequence[tuple[Forecast, Sequence[float]]]) -> Scores:
    err = [f - a for fc, act in pairs for f, a in zip(fc.expected, act, strict=True)]
    actual = math.fsum(a for _, act in pairs for a in act)
    inside = sum(
        lo <= a <= hi
        for fc, act in pairs
        for lo, hi, a in zip(fc.lower, fc.upper, act, strict=True)
    )
    day_err = [fc.total - math.fsum(act) for fc, act in pairs]
    return Scores(
        wape=math.fsum(abs(e) for e in err) / actual if actual else math.nan,
        mae=math.fsum(abs(e) for e in err) / len(err),
        rmse=math.sqrt(math.fsum(e * e for e in err) / len(err)),
        day_wape=math.fsum(abs(e) for e in day_err) / actual if actual else math.nan,
        day_bias=math.fsum(day_err) / actual if actual else math.nan,
        coverage=inside / len(err),
    )


def poisson_floor(forecasts: Sequence[Forecast]) -> float:
    """WAPE a perfect rate would still have: sum E|N - mu| / sum mu, N ~ Poisson(mu).

    E|N - mu| = 2 exp(-mu) mu^(m+1) / m!, m = floor(mu); the forecasts stand in for mu.
    """
    dev = mass = 0.0
    for fc in forecasts:
        for mu in fc.expected:
            if mu > 0.0:
                m = math.floor(mu)
                dev += 2.0 * math.exp(-mu + (m + 1) * math.log(mu) - math.lgamma(m + 1))
                mass += mu
    return dev / mass if mass else math.nan


def rolling(history: History, days: Sequence[dt.date], method: Method) -> list[Forecast]:
    """One forecast per evaluation day, each fitted on the days before it only."""
    return [method({d: r for d, r in history.items() if d < day}, day) for day in days]


def evaluate(
    series: Mapping[str, History], start: dt.date, end: dt.date
) -> tuple[list[dt.date], dict[tuple[str, str], list[tuple[Forecast, Sequence[float]]]]]:
    total = series[ALL]
    days = sorted(d for d in total if start <= d <= end)
    results = {}
    for name, history in series.items():
        for label, method in METHODS.items():
            fcs = rolling(history, days, method)
            results[(name, label)] = [(f, history[f.date]) for f in fcs]
    return days, results


def table(rows: Iterable[tuple[str, str, Scores]], note: str = "") -> str:
    head = (
        "| series | method | WAPE | MAE | RMSE | day-total WAPE | day-total bias "
        "| 90% PI coverage |\n|---|---|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {name} | {label} | {s.wape:.1%} | {s.mae:.2f} | {s.rmse:.2f} | {s.day_wape:.1%} "
        f"| {s.day_bias:+.1%} | {s.coverage:.0%} |\n"
        for name, label, s in rows
    )
    return (note + "\n\n" if note else "") + head + body


def period_report(series: Mapping[str, History], name: str, start: dt.date, end: dt.date) -> str:
    t0 = time.perf_counter()
    days, results = evaluate(series, start, end)
    totals = {d: sum(series[ALL][d]) for d in days}
    sundays = [d for d in days if d.weekday() == 6]
    busy = max(sundays, key=totals.__getitem__)
    volume = {k: sum(sum(series[k][d]) for d in days) for k in series}
    out = [
        f"### {name}: {days[0]} to {days[-1]} ({len(days)} days, "
        f"{volume[ALL]:,} arrivals; rolling origin, fitted on every earlier day)\n",
        table((k, m, score(pairs)) for (k, m), pairs in results.items() if volume[k] >= 1000),
        f"Busiest Sunday {busy} ({totals[busy]:,} arrivals in total), same metrics on its "
        "96 intervals:\n",
        table(
            (k, m, score([p for p in pairs if p[0].date == busy]))
            for (k, m), pairs in results.items()
            if k in (ALL, "PS")
        ),
        "Poisson noise alone (a perfect rate, taken as the smoothed forecast) would leave a "
        "WAPE of about "
        + ", ".join(
            f"{poisson_floor([f for f, _ in results[(k, SMOOTHED)]]):.1%} on {k}"
            for k in (ALL, "PS", "NW")
        )
        + ".\n",
        "Smoothing constants fitted on the days before the period: "
        + "; ".join(f"{k} {_params(series[k], days[0])}" for k in (ALL, "PS", "NW"))
        + ".\n",
        "Per skill, share of the period's arrivals: "
        + ", ".join(f"{k} {volume[k] / volume[ALL]:.1%}" for k in SERIES[1:])
        + f". ({time.perf_counter() - t0:.1f} s)\n",
    ]
    return "\n".join(out)


def _params(history: History, until: dt.date) -> str:
    p = fit_day_profile(history, until=until).params
    return f"alpha {p.alpha}, beta {p.beta}, gamma {p.gamma}, phi {p.phi}, delta {p.delta}"


def machine() -> str:
    return (
        f"{dt.date.today()}, {platform.node()}, nproc {os.cpu_count()}, "
        f"Python {platform.python_version()} ({sys.implementation.name}), "
        f"{platform.platform()}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--md", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    report = ParseReport()
    calls = list(read_all(args.data, report))
    parse_s = time.perf_counter() - t0
    series = histories(calls)
    parts = [
        f"Machine: {machine()}\n",
        f"Parsed {report.rows:,} rows, kept {report.kept:,} calls in {parse_s:.1f} s; "
        f"skipped {dict(sorted(report.skipped.items()))}, "
        f"repaired {dict(sorted(report.repaired.items()))}. Days with records: "
        f"{len(series[ALL])}.\n",
    ]
    for name, (start, end) in PERIODS.items():
        parts.append(period_report(series, name, start, end))
    parts.append(f"Total run time {time.perf_counter() - t0:.0f} s.\n")
    text = "\n".join(parts)
    print(text)
    if args.md:
        args.md.write_text(text)


if __name__ == "__main__":
    main()
