"""The private PostgreSQL the archive's tests and benchmarks start
(tests/support/postgres.py): it comes up as root too, keeps a committed row
across a SIGKILL and a restart on the same port (crash recovery from its WAL),
and leaves no process behind."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.postgres import PostgresServer, _alive, private_postgres

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    with private_postgres("pg-test-") as pg:
        yield pg


def test_committed_row_survives_kill_and_restart(server: PostgresServer) -> None:
    started = time.monotonic()
    assert server.url == f"postgresql://postgres@127.0.0.1:{server.port}/router"
    server.psql("CREATE TABLE events (id text PRIMARY KEY, doc jsonb NOT NULL)")
    server.psql("""INSERT INTO events VALUES ('1733300000000-0', '{"type": "contact.created"}')""")
    port, first = server.port, server.pid
    assert first is not None

    server.kill()
    assert server.proc is not None and server.proc.poll() is not None
    assert not _alive(first)
    server.start()

    assert server.port == port and server.pid != first
    # the restart was a crash recovery (WAL replayed), not a clean start
    assert "automatic recovery in progress" in server.log.read_text()
    assert server.psql("SELECT id, doc->>'type' FROM events") == "1733300000000-0|contact.created"
    assert server.psql("SELECT current_database(), current_user") == "router|postgres"
    last = server.pid
    assert last is not None
    server.stop()
    server.stop()  # idempotent
    assert server.pid is None and not _alive(last)
    assert time.monotonic() - started < 15
