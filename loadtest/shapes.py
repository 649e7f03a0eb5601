"""Load shapes: a bank's peak day compressed in time, with a bill-day spike
(the curve is in loadtest/day.py)."""

from __future__ import annotations

import os

from locust import LoadTestShape

from loadtest.day import rate_at


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
