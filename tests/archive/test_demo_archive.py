"""The demo (`scripts/demo` runs `router serve --demo`) with neither REDIS_URL
nor ROUTER_ARCHIVE_URL set starts a private PostgreSQL besides its private
redis-server, applies the archive's schema, copies the demo workspace's events
into it, and on SIGTERM stops it and removes its directory."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from router.archive.schema import migrations
from router.store.local import free_port
from tests.support.postgres import _alive
from tests.support.procs import ROOT, _python

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ARCHIVE_LINE = re.compile(r"history archive \(PostgreSQL\): (postgresql://\S+)")


def _pid(match: Callable[[list[bytes]], bool]) -> int | None:
    """The pid of the live process whose command line `match`es."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if match(args) and _alive(int(cmdline.parent.name)):
            return int(cmdline.parent.name)
    return None


def _postmaster(port: int) -> int | None:
    """The postgres server listening on `port`."""
    flag = str(port).encode()
    return _pid(
        lambda a: a[0].endswith(b"/postgres") and b"-p" in a and a[a.index(b"-p") + 1] == flag
    )


def _redis_server(port: int) -> int | None:
    """The redis-server on `port` (it shows its address as its command line)."""
    return _pid(
        lambda a: a[0].startswith(b"/usr/bin/redis-server") and a[0].endswith(f":{port}".encode())
    )


def _wait_banner(log: Path, proc: subprocess.Popen[bytes], within: float) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if m := ARCHIVE_LINE.search(text):
            return m.group(1)
        if proc.poll() is not None:
            raise AssertionError(f"the demo exited with {proc.returncode}:\n{text[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"no archive in the banner:\n{log.read_text()[-3000:]}")


def _wait_listening(port: int, proc: subprocess.Popen[bytes], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the demo exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:  # not listening yet (URLError is an OSError)
            pass
        time.sleep(0.1)
    raise AssertionError(f"the demo did not listen on {port} within {within} s")


def _archived(url: str, contact: str, within: float = 30.0) -> list[str]:
    deadline = time.monotonic() + within
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            cur = conn.execute(
                "SELECT type FROM events WHERE ws = 'demo' AND contact = %s ORDER BY at, id",
                (contact,),
            )
            types = [r[0] for r in cur.fetchall()]
            if "contact.created" in types:
                return types
            time.sleep(0.2)
    raise AssertionError(f"contact {contact}'s events did not reach the archive")


@contextlib.contextmanager
def _demo(port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`router serve --demo` with neither REDIS_URL nor ROUTER_ARCHIVE_URL set;
    SIGTERM on the way out (it must have exited by then)."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "ROUTER_ARCHIVE_URL")}
    env["PYTHONUNBUFFERED"] = "1"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [_python(), "-m", "router", "serve", "--demo", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        # the demo's PostgreSQL gets 30 s for its fast shutdown, then 10 s after
        # SIGKILL (router/archive/local.py stop, kill): a loaded machine may use them
        proc.wait(45)


def _private_servers(log: Path, proc: subprocess.Popen[bytes]) -> tuple[str, int, int, Path]:
    """From the banner: the archive's URL, the postmaster's and redis-server's
    pids, and the archive's data directory."""
    url = _wait_banner(log, proc, within=60)
    pg_port = int(url.split("@127.0.0.1:", 1)[1].split("/", 1)[0])
    postmaster = _postmaster(pg_port)
    assert postmaster is not None
    redis_port = re.search(r"\(Redis: redis://127\.0\.0\.1:(\d+)/0\)", log.read_text())
    assert redis_port is not None
    redis = _redis_server(int(redis_port.group(1)))
    assert redis is not None
    return url, postmaster, redis, Path(f"/proc/{postmaster}/cwd").resolve()


def test_the_demo_starts_a_private_archive_and_stops_it() -> None:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="demo-archive-") as tmp:
        log = Path(tmp) / "demo.log"
        with _demo(port, log) as proc:
            url, postmaster, redis, data_dir = _private_servers(log, proc)
            if os.geteuid() == 0:  # PostgreSQL refuses root: it runs as Debian's `postgres`
                assert Path(f"/proc/{postmaster}").stat().st_uid == pwd.getpwnam("postgres").pw_uid
            with psycopg.connect(url) as conn:  # the schema is there, every version
                versions = [r[0] for r in conn.execute("SELECT version FROM archive_schema")]
            assert sorted(versions) == [m.version for m in migrations()]

            _wait_listening(port, proc)  # the banner comes before the listener
            body = {"id": "c-demo-1", "channel": "voice", "intent": "card",
                    "customer": {"id": "cust1", "tier": "vip"}}  # fmt: skip
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/workspaces/demo/contacts",
                data=json.dumps(body).encode(),
                headers={"Authorization": "Bearer demo-gateway",
                         "Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.status == 201
            types = _archived(url, "c-demo-1")
            assert types[0] == "contact.created"
        assert proc.returncode == 0, log.read_text()[-3000:]
        assert not _alive(postmaster), "the private PostgreSQL outlived the demo"
        assert not _alive(redis), "the private redis-server outlived the demo"
        assert not data_dir.exists(), f"{data_dir} was left behind"


def _children(pid: int) -> dict[int, bytes]:
    """The live children of `pid`: pid -> the program they run."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            program = (stat.parent / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out[int(stat.parent.name)] = program
    return out


def _data_dir(pid: int) -> Path | None:
    """The directory of a postgres process's `-D` argument (None for others)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return Path(args[args.index(b"-D") + 1].decode()) if b"-D" in args else None


def test_a_sigterm_while_the_demo_starts_leaves_no_server_behind() -> None:
    with tempfile.TemporaryDirectory(prefix="demo-archive-") as tmp:
        log = Path(tmp) / "demo.log"
        with _demo(free_port(), log) as proc:
            # as soon as its PostgreSQL runs: the demo is still starting (schema,
            # seed), long before the server's own signal handling is in place
            deadline = time.monotonic() + 60
            while not any(p.endswith(b"/postgres") for p in _children(proc.pid).values()):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.01)
            servers = list(_children(proc.pid))
            data_dirs = [_data_dir(p) for p in servers]
        assert "contact router listening" not in log.read_text()  # it was still starting
        assert proc.returncode == 143, log.read_text()[-3000:]
        assert not [p for p in servers if _alive(p)], "a private server outlived the demo"
        assert not [d for d in data_dirs if d is not None and d.exists()], "left behind"
