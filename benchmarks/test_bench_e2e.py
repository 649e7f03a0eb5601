"""pytest-benchmark wrapper around benchmarks/e2e/: one end-to-end run as one benchmark.

Not part of the default test run (pytest's testpaths is tests/). Run it with

    .venv/bin/pytest benchmarks/test_bench_e2e.py -s \
        --benchmark-json /tmp/e2e-bench.json

E2E_DURATION (s per run, default 10), E2E_ROUNDS (default 1), E2E_LOADGEN
(auto|python|wrk|both) and E2E_ARGS (more `python -m benchmarks.e2e` flags) tune it;
E2E_ENFORCE_TARGET=1 also fails the test when admission is under 40% of hello world
or its p99 is 10 ms or more. The numbers land in the benchmark's extra_info (req/s,
p50/p99, ratios, EVALSHA).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import pytest

from benchmarks.e2e.cli import main
from benchmarks.e2e.common import TARGET_P99_MS, TARGET_SHARE


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_e2e(benchmark: Any, tmp_path: Path) -> None:
    argv = [
        "--duration", os.environ.get("E2E_DURATION", "10"),
        "--rounds", os.environ.get("E2E_ROUNDS", "1"),
        "--loadgen", os.environ.get("E2E_LOADGEN", "auto"),
        "--quiet-router",
        "--json", str(tmp_path / "e2e.json"),
        "--md", str(tmp_path / "e2e.md"),
        *shlex.split(os.environ.get("E2E_ARGS", "")),
    ]  # fmt: skip
    doc = benchmark.pedantic(main, args=(argv,), rounds=1, iterations=1)
    summary = doc["summary"]
    for key, p in summary["paths"].items():
        for field in ("rps", "p50_ms", "p99_ms", "server_cpu_us_per_req"):
            benchmark.extra_info[f"{key}/{field}"] = p[field]
    for key, ratio in summary["ratios"].items():
        benchmark.extra_info[f"ratio/{key}"] = ratio
    for mode, e in summary["evalsha"].items():
        benchmark.extra_info[f"evalsha/{mode}/ops_per_s"] = e["ops_per_s"]

    # The paths must have worked, whatever their speed.
    for r in doc["results"]:
        if r.get("path") in ("admission", "freed"):
            bad = {k: v for k, v in (r.get("statuses") or {}).items() if not k.startswith("2")}
            assert not bad and not r.get("errors"), (r["path"], r["loader"], bad, r["errors"])
            assert r["requests"] > 0
            assert not r.get("exhausted"), "agent-freed chains ran out: raise --per-agent"
    if os.environ.get("E2E_ENFORCE_TARGET") == "1":
        for key, ratio in summary["ratios"].items():
            if key.startswith("admission/"):
                assert ratio >= TARGET_SHARE, (key, ratio)
                assert summary["paths"][key]["p99_ms"] < TARGET_P99_MS, key
