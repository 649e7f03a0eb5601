"""A PostgreSQL server of the test's own: the demo's private one
(router/archive/local.py: Debian's binaries, never the system cluster, run as
the `postgres` user when the tests run as root, on a free loopback port), plus
what only tests need: killable (SIGKILL, as a crash) and restartable on the
same port from the same data directory, so crash recovery can be exercised,
and its CPU time for the benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from router.archive.local import DATABASE, OWNER, LocalPostgres, pg_bin

__all__ = ["DATABASE", "OWNER", "PostgresServer", "pg_bin", "private_postgres"]


def _children(pid: int) -> list[int]:
    """The live processes whose parent is `pid` (the postmaster's backends and workers)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has let go of its shared memory already


class PostgresServer(LocalPostgres):
    """`postgres` on 127.0.0.1:<free port>, its data in `<directory>/data`, its
    socket and log (`postgres.log`) in `directory` (pytest's `tmp_path` is out
    of the `postgres` user's reach: use `private_postgres`)."""

    def __init__(self, directory: Path, settings: dict[str, str] | None = None) -> None:
        super().__init__(directory, settings)

    def cpu_seconds(self) -> float:
        """User + system CPU of the whole server so far: the postmaster, its live
        children, and (through the postmaster's cutime/cstime) the children it
        has already reaped, such as ended backends and autovacuum workers."""
        pid = self.pid
        if pid is None:
            return 0.0
        total = 0
        for p in [pid, *_children(pid)]:
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended between the listing and the read: counted in cutime
            total += int(fields[11]) + int(fields[12])
            if p == pid:
                total += int(fields[13]) + int(fields[14])
        return total / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """SIGKILL, as a crash: the postmaster and every backend and worker at
        once (backends left alive would hold the shared memory and keep a new
        postmaster from starting); returns when all are gone."""
        pid = self.pid
        if pid is None:
            return
        assert self.proc is not None
        victims = [pid, *_children(pid)]
        for p in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        self.proc.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in victims):
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres processes outlived SIGKILL: {victims}")
            time.sleep(0.02)


@contextlib.contextmanager
def private_postgres(prefix: str = "pg-") -> Iterator[PostgresServer]:
    """A PostgresServer in a fresh directory under /tmp (pytest's `tmp_path` is
    out of reach of the `postgres` user), stopped and removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    pg = PostgresServer(directory)
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(directory, ignore_errors=True)
