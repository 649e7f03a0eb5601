"""Next-day arrival forecasts per 15-minute interval for one pool and channel (pure, no I/O).

A history is a mapping ``date -> 96 arrival counts`` (intervals of 15 minutes from
midnight) for one series: one pool (skill) and one channel; the caller keeps one history
per (pool, channel) and forecasts each on its own. A day absent from the mapping is
*missing* (no records), which is not the same as a day present with zeros (closed).

Two methods:

- `seasonal_naive`: the same interval of the same weekday last week, or the mean over
  the last ``weeks`` same weekdays. A same weekday missing from the history (a gap in
  the records) is replaced by the next older one, up to ``lookback_weeks`` back.
- `smoothed_forecast` (fit with `fit_day_profile`, forecast with `forecast_day`): a
  multiplicative *day total x intraday profile* model, the structure used for call
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

Prediction intervals (cheap, normal approximation, lower bound clipped at 0): the count
of an interval is Poisson-like with over-dispersion ``d`` (estimated from the one-step
interval errors given the day total) around a rate whose day total is itself uncertain
(relative sd ``s`` of the one-step daily-total errors, a robust MAD estimate):
``var = d * mu + (s * mu) ** 2``.

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
import itertools
import math
import statistics
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from typing import Final

import msgspec

INTERVAL_SECONDS: Final = 900
INTERVALS_PER_DAY: Final = 86_400 // INTERVAL_SECONDS  # 96
WEEK: Final = 7
MIN_DAYS: Final = 14  # observed days needed to fit the smoothing model
OUTLIER_RATIO: Final = 1.5  # a day total counts for at most k x, at least 1/k x its forecast
DEFAULT_COVERAGE: Final = 0.9
_MAD_TO_SD: Final = 1.4826
_CHI2_MEDIAN: Final = 0.4549  # median of chi-square with one degree of freedom
_SD_WINDOW: Final = 56  # days of recent one-step errors behind the interval widths

History = Mapping[dt.date, Sequence[float]]
AgentsFor = Callable[[float, float], int]


class ForecastError(ValueError):
    """A forecast cannot be made from this input (too little history, bad shape)."""


class Forecast(msgspec.Struct, frozen=True):
    """Expected arrivals per interval of `date`, with a `coverage` prediction interval."""

    date: dt.date
    method: str
    expected: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    coverage: float

    @property
    def total(self) -> float:
        return math.fsum(self.expected)


class SmoothingParams(msgspec.Struct, frozen=True):
    """Smoothing constants: daily level, trend, weekday factors, trend damping, shape."""

    alpha: float
    beta: float
    gamma: float
    phi: float
    delta: float


class DayProfileModel(msgspec.Struct, frozen=True):
    """State of the day-total x intraday-profile model after the day `last_day`."""

    params: SmoothingParams
    last_day: dt.date
    level: float
    trend: float
    weekday_factors: tuple[float, ...]  # 7, Monday = 0 (date.weekday())
    profiles: tuple[tuple[float, ...], ...]  # 7 x 96 shares of the day, each sums to 1 or 0
    rel_sd: float  # relative sd of one-step daily totals (robust)
    dispersion: float  # variance / mean of interval counts given the day total (>= 1)


# The grid of the daily Holt-Winters constants and of the profile discount.
ALPHAS: Final = (0.05, 0.1, 0.2, 0.35, 0.5)
BETAS: Final = (0.0, 0.02, 0.1)
GAMMAS: Final = (0.02, 0.05, 0.1, 0.2, 0.35)
PHIS: Final = (0.9, 0.98)
DELTAS: Final = (0.02, 0.05, 0.1, 0.2)


# --- input ------------------------------------------------------------------


def bin_arrivals(
    arrivals: Iterable[tuple[dt.date, int]], *, days: Iterable[dt.date] = ()
) -> dict[dt.date, list[int]]:
    """Counts per 15-minute interval of (date, seconds after midnight) arrivals.

    Every date of `days` is present (zeros if nothing arrived): pass the days the
    center was observed, so a closed day is a day of zeros rather than a missing day.
    """
    out: dict[dt.date, list[int]] = {d: [0] * INTERVALS_PER_DAY for d in days}
    for day, second in arrivals:
        if not 0 <= second < 86_400:
            raise ForecastError(f"arrival at {second} s is outside the day {day}")
        row = out.get(day)
        if row is None:
            row = out[day] = [0] * INTERVALS_PER_DAY
        row[second // INTERVAL_SECONDS] += 1
    return out


def _checked(history: History, until: dt.date | None) -> list[dt.date]:
    days = sorted(d for d in history if until is None or d < until)
    for d in days:
        row = history[d]
        if len(row) != INTERVALS_PER_DAY:
            raise ForecastError(f"{d}: {len(row)} intervals, expected {INTERVALS_PER_DAY}")
        if any(x < 0 for x in row):
            raise ForecastError(f"{d}: negative count")
    return days


# --- prediction intervals ---------------------------------------------------


def _z(coverage: float) -> float:
    if not 0.0 < coverage < 1.0:
        raise ForecastError(f"coverage {coverage} is not in (0, 1)")
    return statistics.NormalDist().inv_cdf(0.5 + coverage / 2.0)


def _robust_rel_sd(ratios: Sequence[float]) -> float:
    """Robust sd of ratios actual / forecast around 1 (MAD of ratio - 1, scaled)."""
    if not ratios:
        return 0.0
    return _MAD_TO_SD * statistics.median(abs(r - 1.0) for r in ratios)


def _build(
    target: dt.date,
    method: str,
    expected: Sequence[float],
    rel_sd: float,
    dispersion: float,
    coverage: float,
) -> Forecast:
    z = _z(coverage)
    mu = tuple(max(0.0, x) for x in expected)
    sd = [math.sqrt(dispersion * m + (rel_sd * m) ** 2) for m in mu]
    return Forecast(
        date=target,
        method=method,
        expected=mu,
        lower=tuple(max(0.0, m - z * s) for m, s in zip(mu, sd, strict=True)),
        upper=tuple(m + z * s for m, s in zip(mu, sd, strict=True)),
        coverage=coverage,
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
    known = _checked(history, target)
    days = _same_weekdays(history, target, weeks, lookback_weeks)
    if not days:
        raise ForecastError(f"no {target:%A} in the {lookback_weeks} weeks before {target}")
    rows = [history[d] for d in days]
    expected = [math.fsum(col) / len(days) for col in zip(*rows, strict=True)]
    # Width: the recent one-step errors of the same rule on daily totals.
    totals = {d: math.fsum(history[d]) for d in known[-(_SD_WINDOW + WEEK * lookback_weeks) :]}
    ratios = []
    for d in known[-_SD_WINDOW:]:
        f = _naive_total(totals, d, weeks, lookback_weeks)
        if f is not None and f > 0:
            ratios.append(totals[d] / f)
    method = "seasonal_naive" if weeks == 1 else f"seasonal_mean_{weeks}"
    # The error of a mean of k Poisson counts has variance (1 + 1/k) times the rate.
    dispersion = 1.0 + 1.0 / len(days)
    return _build(target, method, expected, _robust_rel_sd(ratios), dispersion, coverage)


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
    days = _checked(history, until)
    if len(days) < MIN_DAYS:
        raise ForecastError(f"{len(days)} days of history, at least {MIN_DAYS} needed")
    timeline = _timeline(history, days)
    (alpha, beta, gamma, phi), daily = _fit_daily(timeline, params)
    keep_from = max(0, len(days) - _SD_WINDOW)
    deltas = (params.delta,) if params is not None else DELTAS
    runs = [(dl, _run_profile(history, days, dl, keep_from)) for dl in deltas]
    delta, prof = min(runs, key=lambda r: r[1].abs_error)
    # Median of squared Pearson residuals over that of chi-square(1): robust to holidays.
    dispersion = statistics.median(prof.pearson) / _CHI2_MEDIAN if prof.pearson else 1.0
    return DayProfileModel(
        params=SmoothingParams(alpha, beta, gamma, phi, delta),
        last_day=days[-1],
        level=daily.level,
        trend=daily.trend,
        weekday_factors=tuple(daily.factors),
        profiles=_profiles(prof),
        rel_sd=_robust_rel_sd(daily.ratios[-_SD_WINDOW:]),
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
    return _build(target, "smoothed", expected, rel_sd, model.dispersion, coverage)


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
