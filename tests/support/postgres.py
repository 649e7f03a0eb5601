"""A PostgreSQL server of the test's own (Debian's binaries, never the system
cluster): initdb'd in the test's directory, on a free loopback port, stoppable,
killable (SIGKILL, as a crash) and restartable on the same port from the same
data directory, so crash recovery can be exercised.

PostgreSQL refuses to run as root (initdb and postgres both check), and the
tests run as root here and in CI: the server's processes run as the `postgres`
user Debian's package creates, and the directory is handed to that user. Run as
an ordinary user, they simply run as that user. Clients connect over TCP with
`trust` authentication (loopback only), so no password is involved.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from router.store.local import free_port

OWNER = "postgres"  # the OS account Debian's package creates, and the superuser role
DATABASE = "router"
START_TIMEOUT = 30.0


def pg_bin() -> Path:
    """Debian's PostgreSQL binaries: $PG_BIN, else the newest /usr/lib/postgresql/N/bin."""
    if env := os.environ.get("PG_BIN"):
        return Path(env)
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()]
    if not found:
        raise RuntimeError("PostgreSQL not found (apt-get install -y postgresql)")
    return max(found, key=lambda p: int(p.parent.name))


def _as_owner() -> dict[str, Any]:
    """Popen arguments that run a child as `postgres` when we are root.

    Not `runuser`: it stays as the server's parent (it forks, to close its PAM
    session), so signals and waits would reach it rather than the postmaster.
    Popen drops the privileges in the child before exec, so its pid is the
    postmaster's own."""
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam(OWNER)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "env": _env(pw)}


def _env(pw: pwd.struct_passwd) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name)
    return env


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


class PostgresServer:
    """`postgres` on 127.0.0.1:<free port>, its data in `<directory>/data`, its
    socket and log (`postgres.log`) in `directory`; a `router` database owned by
    the `postgres` superuser, reachable at `url`."""

    def __init__(self, directory: Path, settings: dict[str, str] | None = None) -> None:
        """`settings`: further `-c name=value` server settings (benchmarks use this)."""
        self.bin = pg_bin()
        self.dir = directory
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.settings = settings or {}
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, OWNER, OWNER)
            self._check_reachable()
        self._initdb()
        self.start()
        self.psql(f"CREATE DATABASE {DATABASE} OWNER {OWNER}", database="postgres")

    @property
    def url(self) -> str:
        return f"postgresql://{OWNER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def _check_reachable(self) -> None:
        # pytest's tmp_path lives under /tmp/pytest-of-root (mode 0700): `postgres`
        # cannot reach a directory there, and initdb's error would not say why
        probe = subprocess.run(
            ["test", "-w", str(self.dir), "-a", "-x", str(self.dir)], **_as_owner()
        )
        if probe.returncode != 0:
            raise RuntimeError(
                f"user {OWNER} cannot reach {self.dir}: use a directory every user can "
                "traverse to, e.g. tempfile.mkdtemp() under /tmp, not pytest's tmp_path"
            )

    def _initdb(self) -> None:
        args = [
            str(self.bin / "initdb"), "-D", str(self.data), "-U", OWNER,
            "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, check=True, **_as_owner())

    def start(self) -> None:
        """Starts the server (again: same port, same data; after a kill it
        replays its WAL first) and waits until it accepts connections."""
        assert self.pid is None, "the server is running"
        args = [
            str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
            # a test's data need not survive a power cut, only a process crash: with
            # fsync and full-page writes off the WAL still reaches the kernel, so a
            # SIGKILLed server recovers every committed row, but commits and
            # checkpoints wait for no disk (initdb above is --no-sync for the same reason)
            "-c", "fsync=off", "-c", "full_page_writes=off",
        ]  # fmt: skip
        for name, value in self.settings.items():
            args += ["-c", f"{name}={value}"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **_as_owner())
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with {self.proc.returncode}:\n{self._log_tail()}"
                )
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
                 "-U", OWNER, "-d", "postgres", "-t", "1"],
            )  # fmt: skip
            if ready.returncode == 0:  # 1 = starting up or recovering, 2 = no answer yet
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"postgres did not accept connections within 30 s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def psql(self, sql: str, database: str = DATABASE) -> str:
        """Runs `sql` with psql (no Python driver needed); the rows unaligned, `|`-separated."""
        out = subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", OWNER, "-d", database, "-c", sql],
            capture_output=True, text=True,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"psql failed ({out.returncode}): {out.stderr.strip()}")
        return out.stdout.strip()

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

    def stop(self) -> None:
        """A clean stop; idempotent. SIGINT, PostgreSQL's "fast" shutdown (what
        `pg_ctl stop` sends): open sessions are ended and a checkpoint written.
        SIGTERM ("smart") would wait for every client to disconnect first, so a
        test that left a connection open would hang here."""
        if self.pid is None:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

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
