"""The day total x intraday profile forecast (pure, no I/O): `fit_day_profile`,
`forecast_day`, `smoothed_forecast`.

A multiplicative *day total x intraday profile* model, the structure used for call
centers since Brown et al. (2005) and Weinberg, Brown and Stroud (2007):

* the daily total follows Holt-Winters with a damped additive trend and a
  multiplicative weekly season (7 weekday factors), robustified: an observed total is
  clipped to [forecast / k, forecast * k] (k = `OUTLIER_RATIO`) before it updates the
  state, so a holiday with 2 calls, or a one-off surge, moves the level by at most a
  bounded step instead of dragging every later day;
* the share of the day falling in each interval is, per weekday, a discounted ratio of
  sums (counts over totals of past same weekdays, weight ``(1 - delta)`` per week), so
  low-volume days weigh less than busy ones and the intraday shape stays non-negative;
* parameters (alpha, beta, gamma, phi for the totals; delta for the shape) are chosen
  on a small grid by the absolute one-step error over the history (robust to holidays).

Why this model rather than Taylor's double-seasonal Holt-Winters or Holt-Winters with
a 672-interval weekly season: the center is closed at night and most of Friday and
Saturday, so the 15-minute series is full of structural zeros. Additive seasonality
then forecasts negative counts at night that have to be clipped, multiplicative
seasonality divides by zero, and a 672-slot seasonal vector learns each slot from a
single noisy count per week. Splitting level (one number a day, from thousands of
calls) from shape (estimated from all calls of that weekday) keeps the noise down, a
closed interval has a share of exactly 0 and so forecasts exactly 0, and a closed
weekday has a factor of 0.

Why no library: statsmodels' ``ExponentialSmoothing`` has one seasonal period,
requires strictly positive data for multiplicative seasonality, and brings numpy,
scipy and pandas (270 MB installed, measured) into a routing service image whose
runtime needs none of them. Tried once on the data (benchmarks/FORECAST.md), its
additive 672-interval Holt-Winters had a worse interval WAPE (31% against 27%), never
converged cleanly and took 10-50 s a fit. The data are small (a year is 365 totals and
35,040 interval counts), so a careful pure-Python filter (about 170 lines, grid-fitted
in about 0.1 s) is enough, typed, and testable.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import statistics
from collections.abc import Iterable, Sequence

import msgspec

from router.wfm.arrivals import (
    ALPHAS,
    BETAS,
    CHI2_MEDIAN,
    DEFAULT_COVERAGE,
    DELTAS,
    GAMMAS,
    INTERVALS_PER_DAY,
    MIN_DAYS,
    OUTLIER_RATIO,
    PHIS,
    SD_WINDOW,
    WEEK,
    DayProfileModel,
    Forecast,
    ForecastError,
    History,
    SmoothingParams,
    build_forecast,
    checked_days,
    robust_rel_sd,
)

# --- day total: robust damped Holt-Winters with weekday factors ---------------

# One calendar day of the daily filter: its weekday and total, None if missing.
_Day = tuple[int, float | None]


class _DailyRun(msgspec.Struct):
    level: float
    trend: float
    factors: list[float]
    abs_error: float
    ratios: list[float]  # actual / one-step forecast of the days after the warm-up


def _timeline(history: History, days: Sequence[dt.date]) -> list[_Day]:
    first, last = days[0], days[-1]
    out: list[_Day] = []
    for k in range((last - first).days + 1):
        d = first + dt.timedelta(days=k)
        row = history.get(d)
        out.append((d.weekday(), None if row is None else math.fsum(row)))
    return out


def _initial(timeline: Sequence[_Day]) -> tuple[float, list[float]]:
    """Level and weekday factors from the first two weeks (factors average to 1)."""
    sums = [0.0] * WEEK
    counts = [0] * WEEK
    for wd, y in timeline[: 2 * WEEK]:
        if y is not None:
            sums[wd] += y
            counts[wd] += 1
    means = [s / c if c else None for s, c in zip(sums, counts, strict=True)]
    seen = [m for m in means if m is not None]
    level = math.fsum(seen) / len(seen) if seen else 0.0
    if level <= 0.0:
        return 0.0, [1.0] * WEEK
    return level, [1.0 if m is None else m / level for m in means]


def _run_daily(
    timeline: Sequence[_Day], alpha: float, beta: float, gamma: float, phi: float
) -> _DailyRun:
    level, factors = _initial(timeline)
    trend = 0.0
    abs_error = 0.0
    ratios: list[float] = []
    for t, (wd, y) in enumerate(timeline):
        base = max(0.0, level + phi * trend)
        if y is None:  # missing day: the state drifts on, nothing is learnt
            level, trend = base, phi * trend
            continue
        s = factors[wd]
        f = base * s
        if t >= 2 * WEEK:
            abs_error += abs(y - f)
            if f > 0.0:
                ratios.append(y / f)
        yc = min(max(y, f / OUTLIER_RATIO), f * OUTLIER_RATIO) if f > 0.0 else y
        new_level = alpha * (yc / s) + (1.0 - alpha) * base if s > 1e-9 else base
        new_level = max(0.0, new_level)
        trend = beta * (new_level - level) + (1.0 - beta) * phi * trend
        level = new_level
        if level > 1e-9:
            factors[wd] = gamma * (yc / level) + (1.0 - gamma) * s
    return _DailyRun(level, trend, factors, abs_error, ratios)


def _fit_daily(
    timeline: Sequence[_Day], fixed: SmoothingParams | None
) -> tuple[tuple[float, float, float, float], _DailyRun]:
    grid: Iterable[tuple[float, float, float, float]] = (
        [(fixed.alpha, fixed.beta, fixed.gamma, fixed.phi)]
        if fixed is not None
        else itertools.product(ALPHAS, BETAS, GAMMAS, PHIS)
    )
    best: tuple[tuple[float, float, float, float], _DailyRun] | None = None
    for combo in grid:
        run = _run_daily(timeline, *combo)
        if best is None or run.abs_error < best[1].abs_error:
            best = (combo, run)
    assert best is not None
    return best


# --- intraday profile: discounted ratio of sums per weekday -------------------


class _ProfileRun(msgspec.Struct):
    num: list[list[float]]
    den: list[float]
    abs_error: float
    pearson: list[float]  # (count - mu)^2 / mu of recent intervals with mu >= 1


def _run_profile(
    history: History, days: Sequence[dt.date], delta: float, keep_from: int
) -> _ProfileRun:
    num = [[0.0] * INTERVALS_PER_DAY for _ in range(WEEK)]
    den = [0.0] * WEEK
    seen = [0] * WEEK
    abs_error = 0.0
    pearson: list[float] = []
    keep = 1.0 - delta
    for n, d in enumerate(days):
        wd = d.weekday()
        row = history[d]
        total = math.fsum(row)
        if seen[wd] >= 2 and den[wd] > 0.0 and total > 0.0:
            scale = total / den[wd]
            nw = num[wd]
            abs_error += math.fsum(abs(c - scale * p) for c, p in zip(row, nw, strict=True))
            if n >= keep_from:
                pearson.extend(
                    (c - scale * p) ** 2 / (scale * p)
                    for c, p in zip(row, nw, strict=True)
                    if scale * p >= 1.0
                )
        num[wd] = [keep * p + c for p, c in zip(num[wd], row, strict=True)]
        den[wd] = keep * den[wd] + total
        seen[wd] += 1
    return _ProfileRun(num, den, abs_error, pearson)


def _profiles(run: _ProfileRun) -> tuple[tuple[float, ...], ...]:
    pooled_den = math.fsum(run.den)
    pooled = [math.fsum(col) for col in zip(*run.num, strict=True)]
    out = []
    for nw, dw in zip(run.num, run.den, strict=True):
        num, den = (nw, dw) if dw > 0.0 else (pooled, pooled_den)
        out.append(tuple(p / den for p in num) if den > 0.0 else (0.0,) * INTERVALS_PER_DAY)
    return tuple(out)


# --- the model --------------------------------------------------------------


def fit_day_profile(
    history: History, *, until: dt.date | None = None, params: SmoothingParams | None = None
) -> DayProfileModel:
    """Fit on the days of `history` before `until` (all when None); grid-fitted `params`
    when not given. Raises `ForecastError` with fewer than `MIN_DAYS` observed days."""
    days = checked_days(history, until)
    if len(days) < MIN_DAYS:
        raise ForecastError(f"{len(days)} days of history, at least {MIN_DAYS} needed")
    timeline = _timeline(history, days)
    (alpha, beta, gamma, phi), daily = _fit_daily(timeline, params)
    keep_from = max(0, len(days) - SD_WINDOW)
    deltas = (params.delta,) if params is not None else DELTAS
    runs = [(dl, _run_profile(history, days, dl, keep_from)) for dl in deltas]
    delta, prof = min(runs, key=lambda r: r[1].abs_error)
    # Median of squared Pearson residuals over that of chi-square(1): robust to holidays.
    dispersion = statistics.median(prof.pearson) / CHI2_MEDIAN if prof.pearson else 1.0
    return DayProfileModel(
        params=SmoothingParams(alpha, beta, gamma, phi, delta),
        last_day=days[-1],
        level=daily.level,
        trend=daily.trend,
        weekday_factors=tuple(daily.factors),
        profiles=_profiles(prof),
        rel_sd=robust_rel_sd(daily.ratios[-SD_WINDOW:]),
        dispersion=max(1.0, dispersion),
    )


def forecast_day(
    model: DayProfileModel, target: dt.date, *, coverage: float = DEFAULT_COVERAGE
) -> Forecast:
    """Forecast of `target` (any day after the model's last day)."""
    h = (target - model.last_day).days
    if h < 1:
        raise ForecastError(f"{target} is not after the last fitted day {model.last_day}")
    phi = model.params.phi
    damped = math.fsum(phi**j for j in range(1, h + 1))
    base = max(0.0, model.level + damped * model.trend)
    wd = target.weekday()
    total = base * model.weekday_factors[wd]
    expected = [total * p for p in model.profiles[wd]]
    # Every day between the last fitted day and target widens the total's uncertainty.
    rel_sd = model.rel_sd * math.sqrt(1.0 + 0.1 * (h - 1))
    return build_forecast(target, "smoothed", expected, rel_sd, model.dispersion, coverage)


def smoothed_forecast(
    history: History,
    target: dt.date,
    *,
    params: SmoothingParams | None = None,
    coverage: float = DEFAULT_COVERAGE,
) -> Forecast:
    """Fit the day-total x profile model on the days before `target` and forecast it."""
    return forecast_day(
        fit_day_profile(history, until=target, params=params), target, coverage=coverage
    )
