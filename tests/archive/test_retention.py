"""Archive retention on a real PostgreSQL and Redis: whole days older than the
window are dropped and the day inside it stays; "keep" keeps; the longest
window any workspace asks for applies; the writer role can never drop a recent
audit partition (the owner's floor); one replica at a time does it (the lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry
from psycopg import AsyncConnection
from redis.asyncio import Redis

from router.api.app import create_app
from router.archive.retention import LEASE_KEY, ArchiveRetention, prune, windows
from router.archive.schema import migrate
from router.routing.engine import Engine
from router.routing.validation import parse_config
from router.runtime.settings import Settings, demo_token_spec
from router.store.local import LocalRedis
from router.store.shards import Shards
from router.store.workspaces import Workspaces
from tests.support.client import small_config
from tests.support.postgres import PostgresServer, private_postgres
from tests.support.procs import ROOT, _python

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

TABLES = ("events", "contacts", "sla_outcomes", "audit_records")
DAY = 86_400
WRITER = "router_app"  # a login role holding router_archive_writer, as the routers'


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with private_postgres("pg-retention-") as pg:
        pg.psql(f"CREATE ROLE {WRITER} LOGIN", database="postgres")
        yield pg


@pytest.fixture(scope="module")
def redis_server() -> Iterator[LocalRedis]:
    # its own Redis: the windows are read from every workspace it holds
    server = LocalRedis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def url(server: PostgresServer) -> str:
    """A database of the test's own, migrated, the writer role granted to WRITER."""
    name = "t" + uuid.uuid4().hex[:12]
    await asyncio.to_thread(server.psql, f"CREATE DATABASE {name}", "postgres")
    owner_url = server.url.rsplit("/", 1)[0] + "/" + name
    async with await AsyncConnection.connect(owner_url) as conn:
        await migrate(conn)
        await conn.execute(f"GRANT router_archive_writer TO {WRITER}".encode())
        await conn.commit()
    return owner_url


def _as_writer(url: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://{WRITER}@")


@pytest.fixture
async def shards(redis_server: LocalRedis) -> AsyncIterator[Shards]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushall()
    try:
        yield Shards(client)
    finally:
        await client.aclose()


async def _today(conn: AsyncConnection) -> dt.date:
    cur = await conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date")
    row = await cur.fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


async def _days(url: str, ago: range) -> dt.date:
    """Partitions of every table for the days `ago` days before today (as the
    owner, as the archive writers make them); returns today."""
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        today = await _today(conn)
        for table in TABLES:
            for n in ago:
                await conn.execute(
                    "SELECT archive_day_partition(%s::regclass, %s)",
                    (table, today - dt.timedelta(days=n)),
                )
        # a row in one of them, to show a day goes with its rows
        await conn.execute(
            "INSERT INTO events (ws, id, at, type, doc) VALUES ('w', '1-0', %s, 'x', '{}')",
            (dt.datetime.combine(today - dt.timedelta(days=max(ago)), dt.time(12), dt.UTC),),
        )
    return today


async def _left(url: str, today: dt.date) -> dict[str, list[int]]:
    """Table -> the days (how many days ago) whose partitions are left."""
    async with await AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT p.relname::text, c.relname::text FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent"
            " WHERE c.relkind = 'r'"  # tables, not the partitions' indexes
        )
        left: dict[str, list[int]] = {t: [] for t in TABLES}
        for parent, child in await cur.fetchall():
            day = dt.datetime.strptime(child.rsplit("_", 1)[1], "%Y%m%d").date()
            left[parent].append((today - day).days)
    return {t: sorted(days) for t, days in left.items()}


async def _workspace(shards: Shards, retention: dict[str, Any]) -> str:
    """A workspace with this `retention` block, through the config's own path
    (put_config writes the windows into its runtime hash)."""
    ws = "w" + uuid.uuid4().hex[:8]
    engine = Engine(shards)
    try:
        for client in shards.primaries():
            await engine.scripts.load_all(client)
        cfg = parse_config(json.dumps({**small_config(), "retention": retention}).encode())
        await engine.put_config(ws, cfg, "admin:test")
    finally:
        await engine.close()
    return ws


async def test_days_past_the_window_go_the_day_inside_stays_keep_keeps(url: str) -> None:
    today = await _days(url, range(0, 8))
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        dropped = await prune(
            conn, {"events": 3 * DAY, "contacts": 5 * DAY, "sla_outcomes": 5 * DAY,
                   "audit_records": 0},
        )  # fmt: skip
        # again: nothing more (a round is idempotent)
        assert await prune(conn, {"events": 3 * DAY}) == []
        cur = await conn.execute("SELECT count(*) FROM events")
        assert await cur.fetchone() == (0,)  # the old day's row went with its day
    # "now - 3 days" falls inside the day 3 days ago: that day stays, older ones go
    assert await _left(url, today) == {
        "events": [0, 1, 2, 3],
        "contacts": [0, 1, 2, 3, 4, 5],
        "sla_outcomes": [0, 1, 2, 3, 4, 5],
        "audit_records": list(range(8)),  # keep
    }
    assert sorted(dropped) == sorted(
        [("events", f"events_{today - dt.timedelta(days=n):%Y%m%d}") for n in range(4, 8)]
        + [(t, f"{t}_{today - dt.timedelta(days=n):%Y%m%d}")
           for t in ("contacts", "sla_outcomes") for n in (6, 7)]
    )  # fmt: skip


async def test_the_longest_window_any_workspace_asks_for_applies(shards: Shards) -> None:
    workspaces = Workspaces(shards)
    # no workspace (or none with a config): nothing is dropped
    assert await windows(shards, workspaces) == dict.fromkeys(TABLES, 0)
    await workspaces.register("no-config-yet")
    await _workspace(shards, {"contacts": "2d", "events": "10d", "audit": "400d"})
    await _workspace(shards, {"contacts": "5d", "events": "30d", "audit": "keep"})
    await _workspace(shards, {"contacts": "1d", "events": "20d"})  # audit: keep by default
    workspaces.invalidate()
    assert await windows(shards, workspaces) == {
        "contacts": 5 * DAY,
        "sla_outcomes": 5 * DAY,
        "events": 30 * DAY,
        "audit_records": 0,  # one workspace keeps: the table keeps
    }
    await _workspace(shards, {"events": "keep"})
    workspaces.invalidate()
    got = await windows(shards, workspaces)
    assert got["events"] == 0
    assert got["contacts"] == 30 * DAY  # that workspace's contacts: the 30-day default


async def test_the_writer_role_cannot_drop_a_recent_audit_partition(url: str) -> None:
    today = await _days(url, range(0, 10))
    async with await AsyncConnection.connect(_as_writer(url), autocommit=True) as writer:
        # the floor is NULL: the writer drops no audit partition, whatever it asks
        assert await prune(writer, {"audit_records": DAY}) == []
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only by its owner"):
            await writer.execute("SELECT archive_drop_partitions('audit_records', %s)", (today,))
        # nor may it drop a table, move the floor, or delete the records
        day = f"audit_records_{today - dt.timedelta(days=9):%Y%m%d}"
        for sql in (
            f"DROP TABLE {day}",
            "UPDATE archive_retention_floor SET min_days = 0",
            f"ALTER TABLE audit_records DETACH PARTITION {day}",
            "DELETE FROM audit_records",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await writer.execute(sql.encode())
        # the other tables' floor is 0: the workspaces' windows decide
        assert len(await prune(writer, {"events": DAY})) == 8
    assert await _left(url, today) == {t: [0, 1] if t == "events" else list(range(10))
                                       for t in TABLES}  # fmt: skip

    # the owner allows audit retention past 5 days: a recent day stays all the same
    async with await AsyncConnection.connect(url, autocommit=True) as owner:
        await owner.execute(
            "UPDATE archive_retention_floor SET min_days = 5 WHERE tbl = 'audit_records'"
        )
    async with await AsyncConnection.connect(_as_writer(url), autocommit=True) as writer:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not be dropped"):
            await writer.execute("SELECT archive_drop_partitions('audit_records', %s)", (today,))
        dropped = await prune(writer, {"audit_records": DAY})  # held back to the floor
    assert len(dropped) == 4  # 6 to 9 days ago: ended 5 or more days ago
    assert (await _left(url, today))["audit_records"] == [0, 1, 2, 3, 4, 5]

    # the owner itself (`router archive prune` with its URL) is not held by the floor
    async with await AsyncConnection.connect(url, autocommit=True) as owner:
        assert len(await prune(owner, {"audit_records": DAY})) == 4
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # never today's day
            await owner.execute(
                "SELECT archive_drop_partitions('audit_records', %s)", (today + dt.timedelta(1),)
            )
        with pytest.raises(psycopg.errors.RaiseException, match="not an archive table"):
            await owner.execute("SELECT archive_drop_partitions('archive_schema', %s)", (today,))
    assert (await _left(url, today))["audit_records"] == [0, 1]


def _count(registry: CollectorRegistry, table: str) -> float:
    value = registry.get_sample_value("router_archive_partitions_dropped_total", {"table": table})
    return value or 0.0


async def test_one_replica_at_a_time_drops(url: str, shards: Shards) -> None:
    today = await _days(url, range(0, 6))
    await _workspace(shards, {"contacts": "2d", "events": "1d"})
    reg_a, reg_b = CollectorRegistry(), CollectorRegistry()
    a = ArchiveRetention(shards, Workspaces(shards), _as_writer(url), reg_a, interval=0.2,
                         renew=0.05)  # fmt: skip
    b = ArchiveRetention(shards, Workspaces(shards), _as_writer(url), reg_b, interval=0.2,
                         renew=0.05)  # fmt: skip
    first = await a.tick()
    assert first is not None and len(first) == 4 + 3 + 3  # events 2..5, contacts/sla 3..5
    assert await b.tick() is None  # a holds the lease

    # both loops side by side: only the holder runs rounds
    runs = [asyncio.create_task(r.run()) for r in (a, b)]
    await asyncio.sleep(1.0)
    assert a.rounds >= 3 and b.rounds == 0
    assert _count(reg_a, "events") == 4 and _count(reg_b, "events") == 0
    assert _count(reg_a, "contacts") == 3 and _count(reg_a, "sla_outcomes") == 3

    # the holder stops and gives the lease back: the other takes over at once
    runs[0].cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runs[0]
    assert await shards.of(LEASE_KEY).get(LEASE_KEY) in (None, b.owner)
    async with await AsyncConnection.connect(url, autocommit=True) as owner:
        old = today - dt.timedelta(days=30)  # a late day, as a backfill would make
        await owner.execute("SELECT archive_day_partition('events', %s)", (old,))
    for _ in range(40):
        if _count(reg_b, "events") == 1:
            break
        await asyncio.sleep(0.05)
    assert b.rounds >= 1 and _count(reg_b, "events") == 1
    runs[1].cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runs[1]
    assert await shards.of(LEASE_KEY).get(LEASE_KEY) is None
    assert (await _left(url, today))["events"] == [0, 1]


async def test_the_owner_prunes_the_audit_trail_with_the_prune_command(
    url: str, shards: Shards, redis_server: LocalRedis
) -> None:
    today = await _days(url, range(0, 5))
    await _workspace(shards, {"contacts": "1d", "events": "2d", "audit": "2d"})

    def run(db_url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_python(), "-m", "router", "archive", "prune", "--url", db_url],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
            env={"PATH": "/usr/bin:/bin", "REDIS_URL": redis_server.url},
        )  # fmt: skip

    # with the writer's URL the audit trail stays (its floor is NULL), the rest goes
    as_writer = await asyncio.to_thread(run, _as_writer(url))
    assert as_writer.returncode == 0, as_writer.stderr
    assert "audit_records: window 172800 s" in as_writer.stdout
    assert (await _left(url, today))["audit_records"] == [0, 1, 2, 3, 4]
    assert (await _left(url, today))["events"] == [0, 1, 2]
    # with the owner's, the audit days past the window go too
    as_owner = await asyncio.to_thread(run, url)
    assert as_owner.returncode == 0, as_owner.stderr
    assert "2 partition(s) dropped" in as_owner.stdout
    assert await _left(url, today) == {
        "events": [0, 1, 2], "contacts": [0, 1], "sla_outcomes": [0, 1],
        "audit_records": [0, 1, 2],
    }  # fmt: skip
    missing = await asyncio.to_thread(subprocess.run,
        [_python(), "-m", "router", "archive", "prune"], cwd=ROOT, capture_output=True,
        text=True, timeout=60, check=False, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert missing.returncode == 2


async def test_a_replica_with_an_archive_runs_retention(
    aiohttp_client: Any, url: str, shards: Shards, redis_server: LocalRedis
) -> None:
    today = await _days(url, range(0, 4))
    settings = Settings.from_env(
        {"ROUTER_TOKENS": demo_token_spec(), "ROUTER_ARCHIVE_URL": _as_writer(url)},
        redis_url=redis_server.url,
    )
    # the workspace before the replica: its first round, at once, reads the windows
    await _workspace(shards, {"events": "1d", "contacts": "2d"})
    api = await aiohttp_client(create_app(settings))
    for _ in range(100):  # its first round comes once the schema is checked
        if (await _left(url, today))["events"] == [0, 1]:
            break
        await asyncio.sleep(0.1)
    assert await _left(url, today) == {
        "events": [0, 1], "contacts": [0, 1, 2], "sla_outcomes": [0, 1, 2],
        "audit_records": [0, 1, 2, 3],
    }  # fmt: skip
    metrics = await (await api.get("/metrics")).text()
    assert 'router_archive_partitions_dropped_total{table="events"} 2.0' in metrics
    assert await shards.of(LEASE_KEY).get(LEASE_KEY) is not None  # held by that replica
