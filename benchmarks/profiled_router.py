"""`router serve` with cProfile switched on and off by signals (`benchmarks.e2e --profile`).

    python benchmarks/profiled_router.py OUT.pstats serve --host 127.0.0.1 --port 8080

SIGUSR1 starts profiling, SIGUSR2 stops it and writes OUT.pstats, so the profile holds
only the measured window (not start-up, imports, or set-up of the workspaces). Times are
process CPU time (user + system, so system calls such as socket writes count).
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time

from router.cli.main import main

# CPU time, not wall time: on a busy host the process is often descheduled, and a wall
# clock would charge those pauses to whatever function happened to be running.
profiler = cProfile.Profile(time.process_time)


def _start(_signum: int, _frame: object) -> None:
    profiler.enable()


def _stop(_signum: int, _frame: object) -> None:
    profiler.disable()
    profiler.dump_stats(sys.argv[1])


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    sys.exit(main(sys.argv[2:]))
