"""Next-day arrival forecasts per 15-minute interval for one pool and channel (pure, no I/O).

A history is a mapping ``date -> 96 arrival counts`` (intervals of 15 minutes from
midnight) for one series: one pool (skill) and one channel; the caller keeps one history
per (pool, channel) and forecasts each on its own. A day absent from the mapping is
*missing* (no records), which is not the same as a day present with zeros (closed).

Two methods:

- `seasonal_naive`: the same interval of the same weekday last week, or the mean over
  the last ``weeks`` same weekdays. A same weekday missing from the history (a gap in
  the records) is replaced by the next older one, up to ``lookback_weeks`` back.
- `smoothed_forecast` (`router/wfm/smoothing.py`): a multiplicative day total x
  intraday profile model (damped Holt-Winters on day totals, weekday shares).

Histories, forecasts and prediction intervals are `router/wfm/arrivals.py`.
`agents_needed` turns a forecast into an agents-needed curve through any staffing
function ``agents_for(rate_per_second, aht_seconds) -> int`` (e.g. Erlang C/A).

Defaults (grid, `OUTLIER_RATIO`) were chosen on the "Anonymous Bank" data. Data
acknowledgement: the "Anonymous Bank" data set of the Technion Service Enterprise
Engineering lab (Guedj and Mandelbaum), studied in Brown et al., "Statistical Analysis
of a Telephone Call Center: A Queueing-Science Perspective", JASA 2005. Terms in
`documentation.pdf` (page 1): the data is free for use; acknowledge the source (keep this
paragraph wherever the data is used or shipped).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Container, Mapping, Sequence

from router.wfm.arrivals import (
    DEFAULT_COVERAGE,
    INTERVAL_SECONDS,
    SD_WINDOW,
    WEEK,
    AgentsFor,
    Forecast,
    ForecastError,
    History,
    build_forecast,
    checked_days,
    robust_rel_sd,
)

# --- seasonal naive ---------------------------------------------------------


def _same_weekdays(
    history: Container[dt.date], target: dt.date, weeks: int, lookback_weeks: int
) -> list[dt.date]:
    found: list[dt.date] = []
    for k in range(1, lookback_weeks + 1):
        d = target - dt.timedelta(days=WEEK * k)
        if d in history:
            found.append(d)
            if len(found) == weeks:
                break
    return found


def _naive_total(
    totals: Mapping[dt.date, float], target: dt.date, weeks: int, lookback_weeks: int
) -> float | None:
    days = _same_weekdays(totals, target, weeks, lookback_weeks)
    return math.fsum(totals[d] for d in days) / len(days) if days else None


def seasonal_naive(
    history: History,
    target: dt.date,
    *,
    weeks: int = 1,
    lookback_weeks: int = 8,
    coverage: float = DEFAULT_COVERAGE,
) -> Forecast:
    """Mean of the last `weeks` same weekdays before `target` (1: same day last week)."""
    if weeks < 1 or lookback_weeks < weeks:
        raise ForecastError(f"weeks={weeks}, lookback_weeks={lookback_weeks}")
    known = checked_days(history, target)
    days = _same_weekdays(history, target, weeks, lookback_weeks)
    if not days:
        raise ForecastError(f"no {target:%A} in the {lookback_weeks} weeks before {target}")
    rows = [history[d] for d in days]
    expected = [math.fsum(col) / len(days) for col in zip(*rows, strict=True)]
    # Width: the recent one-step errors of the same rule on daily totals.
    totals = {d: math.fsum(history[d]) for d in known[-(SD_WINDOW + WEEK * lookback_weeks) :]}
    ratios = []
    for d in known[-SD_WINDOW:]:
        f = _naive_total(totals, d, weeks, lookback_weeks)
        if f is not None and f > 0:
            ratios.append(totals[d] / f)
    method = "seasonal_naive" if weeks == 1 else f"seasonal_mean_{weeks}"
    # The error of a mean of k Poisson counts has variance (1 + 1/k) times the rate.
    dispersion = 1.0 + 1.0 / len(days)
    return build_forecast(target, method, expected, robust_rel_sd(ratios), dispersion, coverage)


# --- staffing ---------------------------------------------------------------


def agents_needed(
    forecast: Forecast | Sequence[float],
    aht_seconds: float | Sequence[float],
    agents_for: AgentsFor,
    *,
    interval_seconds: int = INTERVAL_SECONDS,
) -> tuple[int, ...]:
    """Agents needed per interval: ``agents_for(arrivals / interval_seconds, aht)``.

    `aht_seconds` is one handle time or one per interval. An interval forecast to have
    no arrivals needs no agents (`agents_for` is not called, so it need not accept 0).
    """
    expected = forecast.expected if isinstance(forecast, Forecast) else tuple(forecast)
    ahts = (
        [float(aht_seconds)] * len(expected)
        if isinstance(aht_seconds, int | float)
        else list(aht_seconds)
    )
    if len(ahts) != len(expected):
        raise ForecastError(f"{len(ahts)} handle times for {len(expected)} intervals")
    out = []
    for i, (mu, aht) in enumerate(zip(expected, ahts, strict=True)):
        if mu <= 0.0:
            out.append(0)
            continue
        n = agents_for(mu / interval_seconds, aht)
        if n < 0:
            raise ForecastError(f"agents_for returned {n} for interval {i}")
        out.append(n)
    return tuple(out)
