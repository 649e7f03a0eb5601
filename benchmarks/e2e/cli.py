"""The command line of the end-to-end benchmark."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from benchmarks.e2e import __doc__ as DOC
from benchmarks.e2e.bench import Bench
from benchmarks.e2e.common import PY, ROOT
from benchmarks.e2e.procs import machine, versions
from benchmarks.e2e.profiling import profile
from benchmarks.e2e.report import markdown, summarize
from benchmarks.e2e.rounds import run_round


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parser() -> argparse.ArgumentParser:
    """The benchmark's options (`python -m benchmarks.e2e --help`)."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.e2e",
        description=DOC.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument(
        "--evalsha-duration", type=float, default=5.0, help="seconds per EVALSHA mode (three modes)"
    )
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument(
        "--agents",
        type=int,
        default=0,
        help="ready agents in the admission workspace, one voice contact each "
        "(0: 15%% of what hello world served in a run's time)",
    )
    p.add_argument(
        "--per-agent",
        type=int,
        default=0,
        help="agent-freed: waiting contacts per agent (default: sized from hello rps)",
    )
    p.add_argument(
        "--freed-rps-bound",
        type=float,
        default=8000.0,
        help="agent-freed: assumed top rps when no hello run sizes the queues",
    )
    p.add_argument(
        "--loadgen",
        choices=("auto", "python", "wrk", "both"),
        default="auto",
        help="auto: the aiohttp-client loader, and wrk too when installed",
    )
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--only", help="comma list of phases to run instead of a full round: paired, c1")
    p.add_argument(
        "--no-paired",
        dest="paired",
        action="store_false",
        help="skip the paired runs (hello world and a router path in alternating "
        "slices from one loader process)",
    )
    p.add_argument("--slice", type=float, default=1.0, help="paired runs: seconds per slice")
    p.add_argument(
        "--service-time",
        type=float,
        default=5.0,
        help="seconds of each concurrency-1 run (0: skip them)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="before each run wait up to this long for other processes to calm down",
    )
    p.add_argument(
        "--quiet-cores",
        type=float,
        default=0.25,
        help="'calm': other processes use fewer cores than this",
    )
    p.add_argument(
        "--max-noise",
        type=float,
        default=0.35,
        help="a run during which other processes (and steal) took more cores than this is repeated",
    )
    p.add_argument("--retries", type=int, default=2, help="repeats of a disturbed run")
    p.add_argument(
        "--profile", type=Path, help="also profile a router (own process) into this folder"
    )
    p.add_argument("--profiler", choices=("py-spy", "cprofile", "both"), default="both")
    p.add_argument("--json", type=Path, help="write all results as JSON here")
    p.add_argument("--md", type=Path, help="write the markdown report here")
    p.add_argument("--quiet-router", action="store_true", help="hide the router's log")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the benchmark, prints the report, writes --json and --md; returns the
    document written to --json."""
    args = parser().parse_args(argv)

    # SIGTERM (and SIGINT, which background jobs ignore) stop the run with cleanup.
    saved = {sig: signal.signal(sig, _interrupted) for sig in (signal.SIGTERM, signal.SIGINT)}
    bench = Bench(args)
    meta: dict[str, Any] = {
        "machine": machine(),
        "versions": versions(),
        "command": " ".join(
            [
                os.path.relpath(PY, ROOT),
                "-m benchmarks.e2e",
                *(sys.argv[1:] if argv is None else argv),
            ]
        ),
    }
    try:
        bench.start()
        meta["redis_version"] = bench.redis_version
        for rnd in range(1, args.rounds + 1):
            run_round(bench, rnd)
        if args.profile:
            profile(bench, args.profile)
    except Exception:  # report what was measured before the failure
        import traceback

        traceback.print_exc()
        meta["failed"] = traceback.format_exc(limit=3)
    finally:
        bench.stop()
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    summary = summarize(bench)
    report = markdown(bench, meta, summary)
    print()
    print(report)
    doc = {"meta": meta, "summary": summary, "results": bench.results}
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1, default=str))
    if args.md:
        args.md.write_text(report)
    return doc
