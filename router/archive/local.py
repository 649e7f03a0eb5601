"""A private PostgreSQL for the demo (and the tests) when ROUTER_ARCHIVE_URL is
not set, as `router/store/local.py` is for Redis: Debian's binaries
(`/usr/lib/postgresql/N/bin`, never the system cluster), initdb'd in a
directory of its own, on a free loopback port, with a `router` database.

PostgreSQL refuses to run as root (initdb and postgres both check), and the
demo and the tests run as root on a fresh Debian machine: the server's
processes then run as the `postgres` user Debian's package creates, and the
directory is handed to that user (so it must be somewhere that user can
reach: under /tmp, not under a root-only directory). Run as an ordinary user,
they simply run as that user. Clients connect over TCP with `trust`
authentication (loopback only), so no password is involved.

Everything here blocks (it starts and waits for processes): call it before the
event loop starts or after it ends, or from a thread, never on the loop.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
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
        raise RuntimeError(
            "PostgreSQL not found: install it (apt-get install -y postgresql) "
            "or set ROUTER_ARCHIVE_URL"
        )
    return max(found, key=lambda p: int(p.parent.name))


def as_owner() -> dict[str, Any]:
    """Popen arguments that run a child as `postgres` when we are root.

    Not `runuser`: it stays as the server's parent (it forks, to close its PAM
    session), so signals and waits would reach it rather than the postmaster.
    Popen drops the privileges in the child before exec, so its pid is the
    postmaster's own."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam(OWNER)
    except KeyError:
        raise RuntimeError(
            f"PostgreSQL refuses to run as root and there is no {OWNER!r} user to run it "
            "as (Debian's postgresql package creates it): install it or set ROUTER_ARCHIVE_URL"
        ) from None
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "env": env}


class LocalPostgres:
    """`postgres` on 127.0.0.1:<free port>, its data in `<directory>/data`, its
    socket and log (`postgres.log`) in `directory`; a `router` database owned by
    the `postgres` superuser, reachable at `url`.

    Without a `directory`, a fresh one under the temporary directory is made,
    and `close()` removes it."""

    def __init__(
        self, directory: Path | None = None, settings: dict[str, str] | None = None
    ) -> None:
        """`settings`: further `-c name=value` server settings (benchmarks use this)."""
        self.bin = pg_bin()
        self._owns_dir = directory is None
        self.dir = directory or Path(tempfile.mkdtemp(prefix="router-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.settings = settings or {}
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.dir, OWNER, OWNER)
                self._check_reachable()
            self._initdb()
            self.start()
            self.psql(f"CREATE DATABASE {DATABASE} OWNER {OWNER}", database="postgres")
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        return f"postgresql://{OWNER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def _check_reachable(self) -> None:
        # a directory under a root-only one (pytest's /tmp/pytest-of-root is 0700,
        # so is /root): `postgres` cannot reach it, and initdb's error would not say why
        probe = subprocess.run(
            ["test", "-w", str(self.dir), "-a", "-x", str(self.dir)], **as_owner()
        )
        if probe.returncode != 0:
            raise RuntimeError(
                f"user {OWNER} cannot reach {self.dir}: use a directory every user can "
                "traverse to (e.g. under /tmp; TMPDIR names where temporary ones go)"
            )

    def _initdb(self) -> None:
        args = [
            str(self.bin / "initdb"), "-D", str(self.data), "-U", OWNER,
            "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            done = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, **as_owner())
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{self._log_tail()}")

    def start(self) -> None:
        """Starts the server (again: same port, same data; after a crash it
        replays its WAL first) and waits until it accepts connections."""
        assert self.pid is None, "the server is running"
        args = [
            str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
            # this data need not survive a power cut, only a process crash (the
            # demo's is thrown away on exit): with fsync and full-page writes off
            # the WAL still reaches the kernel, so a SIGKILLed server recovers every
            # committed row, but commits and checkpoints wait for no disk (initdb
            # above is --no-sync for the same reason)
            "-c", "fsync=off", "-c", "full_page_writes=off",
        ]  # fmt: skip
        for name, value in self.settings.items():
            args += ["-c", f"{name}={value}"]
        with self.log.open("ab") as log:
            # its own process group: a Ctrl-C at the demo's terminal reaches the
            # router alone, which drains its requests and then stops this server
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, process_group=0, **as_owner()
            )
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
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

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

    def stop(self) -> None:
        """A clean stop; idempotent. SIGINT, PostgreSQL's "fast" shutdown (what
        `pg_ctl stop` sends): open sessions are ended and a checkpoint written.
        SIGTERM ("smart") would wait for every client to disconnect first."""
        if self.pid is None:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL to the postmaster (its backends end when they find it gone)."""
        if self.pid is None:
            return
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        """Stops the server and removes the directory when it made it."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
