"""Load shapes: a bank's peak day compressed in time, with a bill-day spike.

The intraday curve is the share of a weekday's calls per hour, measured on the
anonbank 1999 records (Sunday-Thursday, 7:00 to midnight; data acknowledgement
in router/forecast_cli.py): hour -> share of the day.
"""

from __future__ import annotations

import os

from locust import LoadTestShape

# Hourly shares of agent demand, 07:00..23:00: Sunday-Thursday of June-July
# 1999 in the records (router.anonbank.is_agent_demand), normalised; the peak at
# 10:00 and a second one from 13:00 to 16:00.
HOURLY = (0.025, 0.056, 0.076, 0.089, 0.077, 0.071, 0.078, 0.082, 0.080, 0.078,
          0.063, 0.054, 0.041, 0.035, 0.036, 0.032, 0.027)  # fmt: skip
OPEN_HOUR = 7


def rate_at(
    fraction: float, daily: float, day_seconds: float, spike: float = 2.5, spike_hour: int = 10
) -> float:
    """Contacts per (compressed) second at `fraction` of the day (0..1)."""
    hours = len(HOURLY)
    h = min(int(fraction * hours), hours - 1)
    per_hour = daily * HOURLY[h] / sum(HOURLY)
    if OPEN_HOUR + h == spike_hour:  # bill day: statements land, the phones ring
        per_hour *= spike
    return per_hour / (day_seconds / hours)


class PeakDayShape(LoadTestShape):
    """Gateway users (each sends about one contact a second) follow the day's
    curve; agent users stay logged in throughout. Settings from the environment:
    LT_DAILY (contacts in the day), LT_DAY_SECONDS (how long the day lasts),
    LT_AGENTS (agent users), LT_SPIKE (bill-day factor on the 10:00 hour)."""

    def __init__(self) -> None:
        super().__init__()
        self.daily = float(os.environ.get("LT_DAILY", "20000"))
        self.day_seconds = float(os.environ.get("LT_DAY_SECONDS", "840"))
        self.agents = int(os.environ.get("LT_AGENTS", "200"))
        self.spike = float(os.environ.get("LT_SPIKE", "2.5"))

    def tick(self) -> tuple[int, float] | None:
        t = self.get_run_time()
        if t >= self.day_seconds:
            return None
        rate = rate_at(t / self.day_seconds, self.daily, self.day_seconds, self.spike)
        gateways = max(1, round(rate))
        # Locust warns above 100 users a second; the agents log in within ~2 s
        return self.agents + gateways, 100.0
