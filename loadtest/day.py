"""A bank's peak day as a curve: the share of a weekday's calls per hour,
measured on the anonbank 1999 records (Sunday-Thursday, 7:00 to midnight; data
acknowledgement in router/cli/forecast.py), scaled and compressed in time, with
a bill-day spike. No Locust import: the runner sizes agents from it too.
"""

from __future__ import annotations

# Hourly shares of agent demand, 07:00..23:00: Sunday-Thursday of June-July
# 1999 in the records (router.wfm.anonbank.is_agent_demand), normalised; the peak at
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
