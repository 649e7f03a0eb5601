"""A small peak day through Locust with its reconciliation, so the load test never rots."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loadtest.run import main


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_peak_day_smoke_reconciles(tmp_path: Path, redis_url: str, one_at_a_time: None) -> None:
    os.environ["REDIS_URL"] = redis_url  # the suite's redis-server; run.py starts the rest
    try:
        code = main(["--smoke", "--replicas", "2", "--reports", str(tmp_path)])
    finally:
        os.environ.pop("REDIS_URL", None)
    summary = json.loads((tmp_path / "reconciliation.json").read_text())
    rec = summary["reconciliation"]
    assert code == 0, summary["gates_failed"]
    assert rec["contacts"] >= 1000 and rec["ended"] == rec["contacts"]
    assert rec["problems"] == [] and rec["never_ended"] == 0
    assert rec["outcomes"]["contact.completed"] > rec["contacts"] / 3  # agents did work
    assert rec["sla_checked"] > 0 and rec["peak_load_max"] <= 100
    assert (tmp_path / "peakday.html").exists() and (tmp_path / "peakday_stats.csv").exists()
