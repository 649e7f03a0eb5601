"""The pytest-benchmark suites run, once each, so they never rot: a script's
arguments or a record's shape changing under them fails here, not on the
engineer who next measures with them (benchmarks/RESULTS.md quotes their
commands)."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.procs import ROOT, _python

SUITES = [
    "benchmarks/test_bench_micro.py",
    "benchmarks/test_bench_scale.py",
    "benchmarks/test_bench_audit.py",
    "benchmarks/test_bench_replies.py",
    "benchmarks/test_bench_routes.py",
]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_benchmark_suites_run(one_at_a_time: None) -> None:
    # their own pytest (benchmarks/ has its conftest and fixtures); each body
    # once, unmeasured (--benchmark-disable), with its assertions
    cmd = [_python(), "-m", "pytest", *SUITES, "-p", "no:xdist", "-p", "no:cacheprovider",
           "--benchmark-disable", "-q"]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=280, check=False)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "failed" not in out.stdout
