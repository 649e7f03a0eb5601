"""The archive's schema on a real PostgreSQL: migrations apply once, in order,
also from replicas starting together; a changed or newer schema stops them with
a message; the audit table refuses every change but appends; rows land in the
day's partition and a batch written twice adds nothing."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import AsyncConnection

from router.archive.schema import SchemaError, applied, migrate, migrations
from tests.support.postgres import PostgresServer, private_postgres
from tests.support.procs import ROOT, _python

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with private_postgres("pg-archive-") as pg:
        yield pg


@pytest.fixture
def url(server: PostgresServer) -> str:
    """A database of the test's own."""
    name = "t" + uuid.uuid4().hex[:12]
    server.psql(f"CREATE DATABASE {name}", database="postgres")
    return server.url.rsplit("/", 1)[0] + "/" + name


async def test_migrations_apply_once_in_order(url: str) -> None:
    async with await AsyncConnection.connect(url) as conn:
        assert await migrate(conn) == [m.version for m in migrations()]
        assert await migrate(conn) == []  # up to date: nothing again
        assert sorted(await applied(conn)) == [m.version for m in migrations()]
        cur = await conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'p' ORDER BY relname"
        )
        tables = [r[0] for r in await cur.fetchall()]
    assert tables == ["audit_records", "contacts", "events", "sla_outcomes"]


async def test_replicas_starting_together_apply_each_version_once(url: str) -> None:
    async def one() -> list[int]:
        async with await AsyncConnection.connect(url) as conn:
            return await migrate(conn)

    results = await asyncio.gather(*(one() for _ in range(4)))
    assert sorted(map(tuple, results)) == [(), (), (), tuple(m.version for m in migrations())]


async def test_a_changed_or_newer_schema_stops_the_migration(url: str) -> None:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        await migrate(conn)
        await conn.execute("UPDATE archive_schema SET sha256 = 'x' WHERE version = 1")
        with pytest.raises(SchemaError, match=r"migration 1 .* differs"):
            await migrate(conn)
        await conn.execute("INSERT INTO archive_schema VALUES (99, 'future', 'y')")
        with pytest.raises(SchemaError, match="version 99, newer than this router's"):
            await migrate(conn)


async def test_audit_records_are_append_only_even_for_the_owner(url: str) -> None:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        await migrate(conn)
        await conn.execute("SELECT archive_day_partition('audit_records', '2026-12-04')")
        await conn.execute(
            "INSERT INTO audit_records VALUES ('ws:a', 1, '2026-12-04T10:00:00Z', '{}', 'h')"
        )
        for statement in (
            "UPDATE audit_records SET hash = 'forged'",
            "DELETE FROM audit_records",
            "TRUNCATE audit_records",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                await conn.execute(statement.encode())
        cur = await conn.execute("SELECT hash FROM audit_records")
        assert await cur.fetchall() == [("h",)]


async def test_events_land_in_their_day_and_a_batch_written_twice_adds_nothing(url: str) -> None:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        await migrate(conn)
        for day in ("2026-12-03", "2026-12-04"):
            await conn.execute("SELECT archive_day_partition('events', %s)", (day,))
        rows = [
            ("ws1", "1733270399999-0", "2026-12-03T23:59:59.999Z", "contact.created", "c1"),
            ("ws1", "1733270400000-0", "2026-12-04T00:00:00Z", "contact.completed", "c1"),
        ]
        insert = (
            "INSERT INTO events (ws, id, at, type, contact, doc) VALUES (%s, %s, %s, %s, %s, '{}')"
            " ON CONFLICT DO NOTHING"
        )
        for _ in range(2):  # the second time as after a crash before the acknowledgement
            async with conn.cursor() as cur:
                await cur.executemany(insert, rows)
        cur = await conn.execute("SELECT tableoid::regclass::text, id FROM events ORDER BY at")
        assert await cur.fetchall() == [
            ("events_20261203", "1733270399999-0"),
            ("events_20261204", "1733270400000-0"),
        ]
        with pytest.raises(psycopg.errors.RaiseException, match="not an archive table"):
            await conn.execute("SELECT archive_day_partition('archive_schema', '2026-12-04')")


async def test_a_writer_login_starts_on_a_schema_its_owner_migrated(url: str) -> None:
    login = "login_" + uuid.uuid4().hex[:8]  # the routers' own, granted the writer role
    async with await AsyncConnection.connect(url, autocommit=True) as owner:
        await migrate(owner)
        await owner.execute(f"CREATE ROLE {login} LOGIN IN ROLE router_archive_writer".encode())
    writer_url = url.replace("postgresql://postgres@", f"postgresql://{login}@")
    async with await AsyncConnection.connect(writer_url) as writer:
        assert await migrate(writer) == []  # up to date: nothing to create, nothing refused
    async with await AsyncConnection.connect(url, autocommit=True) as owner:
        last = len(migrations())
        await owner.execute("DELETE FROM archive_schema WHERE version = %s", (last,))
    async with await AsyncConnection.connect(writer_url) as writer:
        # a version missing: the writer may not apply it (a replica retries until
        # the owner has run `router archive migrate`)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await migrate(writer)


def test_the_migrate_command(url: str) -> None:
    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_python(), "-m", "router", "archive", "migrate", *extra],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
            env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip

    first = run("--url", url)
    assert first.returncode == 0, first.stderr
    versions = ", ".join(str(m.version) for m in migrations())
    assert f"applied {versions}; now at version {len(migrations())}" in first.stdout
    again = run("--url", url)
    assert again.returncode == 0 and "up to date" in again.stdout
    missing = run()
    assert missing.returncode == 2 and "ROUTER_ARCHIVE_URL" in missing.stderr
