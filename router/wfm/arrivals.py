"""Arrival histories and forecasts: the types, the input checks and the
prediction intervals every forecasting method shares (pure, no I/O).

A history is a mapping ``date -> 96 arrival counts`` (intervals of 15 minutes from
midnight) for one series: one pool (skill) and one channel. A day absent from the
mapping is *missing* (no records), which is not the same as a day present with zeros
(closed). The methods are `router/wfm/forecast.py` (seasonal naive, the public entry
points) and `router/wfm/smoothing.py` (day total x intraday profile).

Prediction intervals (cheap, normal approximation, lower bound clipped at 0): the count
of an interval is Poisson-like with over-dispersion ``d`` (estimated from the one-step
interval errors given the day total) around a rate whose day total is itself uncertain
(relative sd ``s`` of the one-step daily-total errors, a robust MAD estimate):
``var = d * mu + (s * mu) ** 2``.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

import msgspec

INTERVAL_SECONDS: Final = 900
INTERVALS_PER_DAY: Final = 86_400 // INTERVAL_SECONDS  # 96
WEEK: Final = 7
MIN_DAYS: Final = 14  # observed days needed to fit the smoothing model
OUTLIER_RATIO: Final = 1.5  # a day total counts for at most k x, at least 1/k x its forecast
DEFAULT_COVERAGE: Final = 0.9
MAD_TO_SD: Final = 1.4826
CHI2_MEDIAN: Final = 0.4549  # median of chi-square with one degree of freedom
SD_WINDOW: Final = 56  # days of recent one-step errors behind the interval widths

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


def checked_days(history: History, until: dt.date | None) -> list[dt.date]:
    days = sorted(d for d in history if until is None or d < until)
    for d in days:
        row = history[d]
        if len(row) != INTERVALS_PER_DAY:
            raise ForecastError(f"{d}: {len(row)} intervals, expected {INTERVALS_PER_DAY}")
        if any(x < 0 for x in row):
            raise ForecastError(f"{d}: negative count")
    return days


# --- prediction intervals ---------------------------------------------------


def z_score(coverage: float) -> float:
    if not 0.0 < coverage < 1.0:
        raise ForecastError(f"coverage {coverage} is not in (0, 1)")
    return statistics.NormalDist().inv_cdf(0.5 + coverage / 2.0)


def robust_rel_sd(ratios: Sequence[float]) -> float:
    """Robust sd of ratios actual / forecast around 1 (MAD of ratio - 1, scaled)."""
    if not ratios:
        return 0.0
    return MAD_TO_SD * statistics.median(abs(r - 1.0) for r in ratios)


def build_forecast(
    target: dt.date,
    method: str,
    expected: Sequence[float],
    rel_sd: float,
    dispersion: float,
    coverage: float,
) -> Forecast:
    z = z_score(coverage)
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
