"""The agents-needed curve: a real day forecast from the records before it,
every interval staffed by the Erlang calculator (anonbank 1999 data; see
router/cli/forecast.py for the acknowledgement)."""

from __future__ import annotations

import datetime as dt

import pytest

from router.cli.forecast import curve
from router.cli.main import main
from router.wfm.anonbank import DEFAULT_DIR, read_all
from router.wfm.queueing import ServiceTarget
from router.wfm.staffing import agents_needed

DAY = dt.date(1999, 7, 4)  # the busiest Sunday of June-July


@pytest.fixture(scope="module")
def june_july() -> list:  # type: ignore[type-arg]
    return [c for c in read_all(DEFAULT_DIR) if dt.date(1999, 4, 1) <= c.date <= DAY]


def test_agents_curve_for_a_real_day(june_july: list) -> None:  # type: ignore[type-arg]
    target = ServiceTarget(percent=80, seconds=20)
    c = curve(june_july, DAY, target, types={"PS"}, patience=120)
    assert c.total_actual is not None and c.total_expected > 0
    assert 176 <= c.aht <= 213  # the month's served handle time, as in the data's README
    # day-total forecast within 40% of what happened (the report measures ~26%)
    assert abs(c.total_expected - c.total_actual) / c.total_actual < 0.4
    peak = max(c.points, key=lambda p: p.expected)
    assert (
        peak.agents
        == c.peak_agents
        == agents_needed(peak.expected / 900, c.aht, target, patience=120).agents
    )
    for p in c.points:
        assert p.agents == 0 if p.expected == 0 else p.agents >= 1
    # the forecast day's agent-hours follow its arrivals: more than the night, bounded
    assert 50 < c.agent_hours < 300


def test_cli_prints_the_curve(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["forecast", "--day", "1999-07-04", "--type", "PS", "--method", "naive"]) == 0
    out = capsys.readouterr().out
    assert "1999-07-04 (Sunday)" in out and "Erlang C" in out and "peak" in out
    assert main(["forecast", "--day", "July 4th"]) == 2
