"""The demo (`scripts/demo` runs `router serve --demo`) with neither REDIS_URL
nor ROUTER_ARCHIVE_URL set starts a private PostgreSQL besides its private
redis-server, applies the archive's schema, copies the demo workspace's events
into it, and on SIGTERM stops it and removes its directory."""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from router.archive.schema import migrations
from router.store.local import free_port
from tests.support.postgres import _alive
from tests.support.procs import ROOT, _python

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ARCHIVE_LINE = re.compile(r"history archive \(PostgreSQL\): (postgresql://\S+)")


def _postmaster(port: int) -> int | None:
    """The pid of the postgres process listening on `port`, from its command line."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        is_postgres = args[0].endswith(b"/postgres") and b"-p" in args
        if is_postgres and args[args.index(b"-p") + 1] == str(port).encode():
            return int(cmdline.parent.name)
    return None


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


def test_the_demo_starts_a_private_archive_and_stops_it() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "ROUTER_ARCHIVE_URL")}
    env["PYTHONUNBUFFERED"] = "1"
    with tempfile.TemporaryDirectory(prefix="demo-archive-") as tmp:
        log = Path(tmp) / "demo.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [_python(), "-m", "router", "serve", "--demo", "--port", str(port)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            url = _wait_banner(log, proc, within=60)
            pg_port = int(url.split("@127.0.0.1:", 1)[1].split("/", 1)[0])
            postmaster = _postmaster(pg_port)
            assert postmaster is not None
            if os.geteuid() == 0:  # PostgreSQL refuses root: it runs as Debian's `postgres`
                assert Path(f"/proc/{postmaster}").stat().st_uid == pwd.getpwnam("postgres").pw_uid
            data_dir = Path(Path(f"/proc/{postmaster}/cwd").resolve())
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
        finally:
            proc.terminate()
            proc.wait(30)
        assert proc.returncode == 0, log.read_text()[-3000:]
        assert not _alive(postmaster), "the private PostgreSQL outlived the demo"
        assert not data_dir.exists(), f"{data_dir} was left behind"
