"""Inputs and results of the staffing models, checked at the edge. Pure code.

Units: every time is in **seconds** and every rate is in **contacts per second**,
as in the rest of the engine (the CLI converts `--per hour` etc. at the edge).
Probabilities, occupancy, shrinkage and abandon limits are fractions in [0, 1];
only a service-level target is written the industry way, `80/20` = 80 percent
answered within 20 seconds (`ServiceTarget.percent`, `ServiceTarget.seconds`).
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

Model = Literal["erlang_c", "erlang_a"]

# Slack on comparisons with limits, so that rounding noise in a metric exactly
# at its limit (0.85 occupancy = 17 erlangs on 20 agents) never adds an agent.
SLACK = 1e-12


class ServiceTarget(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`percent` of contacts answered within `seconds` (80/20 = 80% within 20 s)."""

    percent: float
    seconds: float

    def __post_init__(self) -> None:
        check_finite("target percent", self.percent)
        if not 0.0 <= self.percent < 100.0:
            raise ValueError(
                f"target percent must be in [0, 100) (100% is never reached), got {self.percent}"
            )
        check_non_negative("target seconds", self.seconds)


class QueueMetrics(msgspec.Struct, frozen=True):
    """Steady-state performance of one pool with a given number of agents."""

    model: Model
    agents: int
    # Erlangs: rate * aht, the agents kept busy on average if every contact is answered.
    offered_load: float
    # Seconds of the service-level definition.
    answer_time: float
    # P(answered within answer_time) among all arrivals.
    service_level: float
    # P(an arriving contact waits at all).
    wait_probability: float
    # Average speed of answer: mean wait of answered contacts, seconds (inf if unstable).
    asa: float
    # Fraction of arrivals that hang up before an answer (0 in Erlang C).
    abandon_probability: float
    # Fraction of on-phone agent time spent handling contacts.
    occupancy: float
    # False only for Erlang C with agents <= offered load (the queue grows for ever).
    stable: bool


def check_finite(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def check_non_negative(name: str, value: float) -> None:
    check_finite(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def check_positive(name: str, value: float) -> None:
    check_finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def check_agents(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_fraction(name: str, value: float, *, open_low: bool, open_high: bool) -> None:
    check_finite(name, value)
    low_ok = value > 0 if open_low else value >= 0
    high_ok = value < 1 if open_high else value <= 1
    if not (low_ok and high_ok):
        interval = f"{'(' if open_low else '['}0, 1{')' if open_high else ']'}"
        raise ValueError(f"{name} must be a fraction in {interval}, got {value}")


def check_patience(patience: float | None) -> float | None:
    """None or +inf mean no abandonment (Erlang C)."""
    if patience is None or patience == math.inf:
        return None
    check_positive("patience", patience)
    return patience


def parse_target(text: str) -> ServiceTarget:
    """`"80/20"` -> 80% answered within 20 seconds."""
    percent, sep, seconds = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return ServiceTarget(percent=float(percent), seconds=float(seconds))
    except ValueError as exc:
        detail = str(exc) or "expected PERCENT/SECONDS such as 80/20"
        raise ValueError(f"target {text!r}: {detail}") from None


def offered_load(rate: float, aht: float) -> float:
    """Erlangs: contacts per second times seconds of handling per contact."""
    check_non_negative("rate", rate)
    check_positive("aht", aht)
    return rate * aht


def scheduled_agents(agents: int, shrinkage: float) -> int:
    """Agents to roster so that `agents` are on the phones: ceil(n / (1 - shrinkage))."""
    check_agents("agents", agents, minimum=0)
    check_fraction("shrinkage", shrinkage, open_low=False, open_high=True)
    return math.ceil(agents / (1.0 - shrinkage) - 1e-9)


def clamp(p: float) -> float:
    return min(1.0, max(0.0, p))
