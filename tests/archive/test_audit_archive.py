"""The audit chain in PostgreSQL: sealed records land in `audit_records` once and
in order, then leave Redis (the chain head stays); racing writers cannot fork
or double the chain; PostgreSQL stopped and restarted loses nothing and doubles
nothing while sealing in Redis goes on; the table refuses every change but
appends, and `router audit verify --archive` names a record a superuser edited."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import psycopg
import pytest
from psycopg import AsyncConnection
from redis.asyncio import Redis

from router.api.app import create_app
from router.archive.schema import migrate
from router.security.audit import archiving, verify
from router.security.audit.archiving import ArchiveHead, AuditArchive, record_time
from router.security.audit.records import Source, seal_record
from router.security.audit.sealer import Chain, Sealer
from router.security.audit.verify import verify_archive, verify_live
from router.store.shards import Shards
from tests.archive.test_events_archive import _traffic
from tests.security.test_audit import cli, eventually
from tests.support.archive import archive_settings
from tests.support.client import add_agent, put_config, small_config
from tests.support.postgres import PostgresServer, private_postgres

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with private_postgres("pg-audit-") as pg:
        yield pg


@pytest.fixture
async def url(server: PostgresServer) -> str:
    """A database of the test's own, migrated."""
    name = "t" + uuid.uuid4().hex[:12]
    server.psql(f"CREATE DATABASE {name}", database="postgres")
    url = server.url.rsplit("/", 1)[0] + "/" + name
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        await migrate(conn)
    return url


@pytest.fixture
async def conn(url: str) -> AsyncIterator[AsyncConnection]:
    async with await AsyncConnection.connect(url, autocommit=True) as c:
        yield c


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    c = Redis.from_url(redis_url, decode_responses=True)
    yield c
    await c.aclose()


def new_source() -> Source:
    return Source.workspace("t" + uuid.uuid4().hex[:10])


async def add_events(client: Redis, src: Source, n: int, first: int = 0) -> None:
    for i in range(first, first + n):
        ev = {"type": "contact.created", "contact": f"c{i}", "actor": "gateway:gw",
              "at": int(time.time() * 1000), "state": "queued"}  # fmt: skip
        await client.xadd(src.stream, {"e": json.dumps(ev)})


async def seal_all(sealer: Sealer, chain: Chain) -> None:
    while await sealer.advance(chain):
        pass


async def archive_all(archive: AuditArchive, conn: AsyncConnection, src: Source) -> None:
    while await archive.archive_once(conn, src):
        pass


async def db_seqs(conn: AsyncConnection, src: Source) -> list[int]:
    cur = await conn.execute(
        "SELECT seq FROM audit_records WHERE source = %s ORDER BY seq", (src.name,)
    )
    return [int(r[0]) for r in await cur.fetchall()]


def sealer_with(client: Redis, url: str, **kw: Any) -> tuple[Sealer, AuditArchive]:
    archive = AuditArchive(Shards(client), url, batch=kw.pop("archive_batch", 10), **kw)
    return Sealer(Shards(client), batch=7, archive=archive), archive


# --- landing once, in order; Redis keeps the head only ------------------------------


async def test_sealed_records_land_once_in_order_and_leave_redis(
    client: Redis, url: str, conn: AsyncConnection
) -> None:
    src = new_source()
    sealer, archive = sealer_with(client, url)
    chain = Chain(src)
    await add_events(client, src, 30)
    await seal_all(sealer, chain)
    assert await client.xlen(src.sealed) == 30  # sealed, not archived yet: all in Redis
    await archive_all(archive, conn, src)
    assert await db_seqs(conn, src) == list(range(1, 31))
    ok = await verify_archive(conn, src)
    assert ok.ok and ok.records == 30 and ok.last_seq == 30, ok.text()
    head = await client.hgetall(src.head)
    assert ok.last_hash == head["hash"] and head["archived"] == "30"
    assert await client.xlen(src.sealed) == 0  # Redis: the chain head, no sealed records
    live = await verify_live(client, src)
    assert live.ok and live.archived == 30 and "seq 1..30 archived" in live.text(), live.text()

    # sealed and not archived yet: the live check follows on from the archive
    await add_events(client, src, 12, first=30)
    await seal_all(sealer, chain)
    live = await verify_live(client, src)
    assert live.ok and (live.first_seq, live.last_seq) == (31, 42), live.text()
    await archive_all(archive, conn, src)
    assert await db_seqs(conn, src) == list(range(1, 43))
    assert (await verify_archive(conn, src)).ok
    assert await client.xlen(src.sealed) == 0


async def test_archive_verify_while_another_replica_archives(
    client: Redis, url: str, conn: AsyncConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`router audit verify --archive` on a running deployment: the head row
    and the records come from one snapshot, so a batch archived in between is
    not taken for records past the head."""
    src = new_source()
    sealer, archive = sealer_with(client, url)
    chain = Chain(src)
    await add_events(client, src, 20)
    await seal_all(sealer, chain)
    assert await archive.archive_once(conn, src) == 10
    execute = conn.execute
    archived_meanwhile: list[int] = []

    async def archive_after_head(query: Any, *args: Any, **kw: Any) -> Any:
        cur = await execute(query, *args, **kw)
        if "FROM audit_heads" in str(query) and not archived_meanwhile:
            async with await AsyncConnection.connect(url, autocommit=True) as other:
                archived_meanwhile.append(await archive.archive_once(other, src))
        return cur

    monkeypatch.setattr(conn, "execute", archive_after_head)
    ok = await verify_archive(conn, src)
    assert archived_meanwhile == [10]
    assert ok.ok and ok.last_seq == 10, ok.text()  # the chain as of its head then
    monkeypatch.setattr(conn, "execute", execute)
    ok = await verify_archive(conn, src)
    assert ok.ok and ok.last_seq == 20, ok.text()


async def test_live_verify_while_records_move_to_the_archive(
    client: Redis, url: str, conn: AsyncConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`router audit verify` while the archiver moves records out of Redis:
    records archived and dropped between two pages are no gap, whether more
    follow in Redis or not; records missing from Redis and not archived are."""
    monkeypatch.setattr(verify, "PAGE", 10)
    src = new_source()
    sealer, archive = sealer_with(client, url)  # archives 10 records a call
    chain = Chain(src)
    await add_events(client, src, 35)
    await seal_all(sealer, chain)
    read_page = verify._snapshot

    def archive_before_page(page: int, batches: int) -> Any:
        async def read(*args: Any, **kw: Any) -> Any:
            nonlocal page
            page -= 1
            if page == 0:  # between two pages, the archiver moves some out
                for _ in range(batches):
                    await archive.archive_once(conn, src)
            return await read_page(*args, **kw)

        return read

    # after page 1 (seq 1-10), seq 1-20 leave: page 2 starts at 21
    monkeypatch.setattr(verify, "_snapshot", archive_before_page(2, 2))
    live = await verify_live(client, src)
    assert live.ok and (live.first_seq, live.last_seq) == (1, 35), live.text()
    assert await client.xlen(src.sealed) == 15

    # after the first page, everything left: the head says where it ended
    monkeypatch.setattr(verify, "_snapshot", archive_before_page(2, 2))
    live = await verify_live(client, src)
    assert live.ok and live.last_seq == 30 and live.archived == 35, live.text()
    assert await client.xlen(src.sealed) == 0

    # a record gone from Redis and not archived is still a gap
    monkeypatch.setattr(verify, "_snapshot", read_page)
    await add_events(client, src, 25, first=35)
    await seal_all(sealer, chain)
    ids = [eid for eid, _ in await client.xrange(src.sealed)]
    await client.xdel(src.sealed, ids[12])
    bad = await verify_live(client, src)
    assert not bad.ok and "gap: seq 48 missing" in bad.reason, bad.text()


async def test_records_written_before_a_crash_are_not_written_again(
    client: Redis, url: str, conn: AsyncConnection
) -> None:
    """The archive committed, the replica died before trimming Redis: the next
    writer finds the records at or below the archive's head and only trims."""
    src = new_source()
    sealer, dying = sealer_with(client, url)
    chain = Chain(src)
    await add_events(client, src, 20)
    await seal_all(sealer, chain)

    async def crash(*_: Any) -> None:
        raise ConnectionError("killed")

    dying._trim = crash  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await dying.archive_once(conn, src)
    assert await db_seqs(conn, src) == list(range(1, 11))
    assert await client.xlen(src.sealed) == 20  # committed, still in Redis
    heir = AuditArchive(Shards(client), url, batch=10)
    await archive_all(heir, conn, src)
    assert await db_seqs(conn, src) == list(range(1, 21))  # nothing doubled
    assert heir.archived == 10 and await client.xlen(src.sealed) == 0  # wrote only the rest
    assert (await verify_archive(conn, src)).ok


async def test_records_stay_in_redis_until_exported_too(
    client: Redis, url: str, conn: AsyncConnection, tmp_path: Any
) -> None:
    from router.security.audit.segments import Exporter

    src = new_source()
    exporter = Exporter(Shards(client), tmp_path, 100, 3600)
    archive = AuditArchive(Shards(client), url, batch=50, exporter=exporter)
    sealer = Sealer(Shards(client), batch=50, exporter=None, archive=archive)
    chain = Chain(src)
    await add_events(client, src, 10)
    await seal_all(sealer, chain)
    await archive_all(archive, conn, src)
    assert len(await db_seqs(conn, src)) == 10
    assert await client.xlen(src.sealed) == 10  # in the archive, not in segment files yet
    assert await exporter.catch_up(src) == 10
    await archive.archive_once(conn, src)
    assert await client.xlen(src.sealed) == 0


# --- racing writers -------------------------------------------------------------------


async def test_racing_sealers_never_fork_the_database_chain(
    client: Redis, url: str, conn: AsyncConnection
) -> None:
    """Two replicas both believing they hold the lease (one was paused while it
    moved): each seals and archives; the chain in PostgreSQL is one chain, every
    record once."""
    src = new_source()
    (a, arch_a), (b, arch_b) = sealer_with(client, url), sealer_with(client, url)
    ca, cb = Chain(src), Chain(src)
    async with await AsyncConnection.connect(url, autocommit=True) as conn_b:
        for i in range(12):
            await add_events(client, src, 10, first=i * 10)
            await asyncio.gather(a.advance(ca), b.advance(cb))
            await asyncio.gather(arch_a.archive_once(conn, src), arch_b.archive_once(conn_b, src))
        for _ in range(30):
            await asyncio.gather(a.advance(ca), b.advance(cb))
            await asyncio.gather(arch_a.archive_once(conn, src), arch_b.archive_once(conn_b, src))
    assert await db_seqs(conn, src) == list(range(1, 121))
    ok = await verify_archive(conn, src)
    assert ok.ok and ok.last_hash == await client.hget(src.head, "hash"), ok.text()
    assert arch_a.archived + arch_b.archived == 120
    assert await client.xlen(src.sealed) == 0


async def test_a_stale_writer_cannot_append_a_fork_or_a_batch_twice(
    client: Redis, url: str, conn: AsyncConnection
) -> None:
    src = new_source()
    sealer, archive = sealer_with(client, url)
    chain = Chain(src)
    await add_events(client, src, 10)
    await seal_all(sealer, chain)
    await archive_all(archive, conn, src)
    cur = await conn.execute(
        "SELECT hash FROM audit_records WHERE source = %s AND seq = 7", (src.name,)
    )
    hash7 = cast(tuple[str], await cur.fetchone())[0]
    # a paused writer that believes the archive ends at seq 7, with other records
    # after it (a fork): refused, nothing written
    rows, prev = [], hash7
    for seq in (8, 9, 10, 11):
        sid = f"{int(time.time() * 1000)}-{seq}"
        line, digest = seal_record(src.name, seq, prev, sid, '{"type":"forged"}')
        rows.append(archiving._Row(sid, seq, prev, digest, record_time(sid), line))
        prev = digest
    stale = AuditArchive(Shards(client), url)
    head = ArchiveHead(loaded=True, seq=7, hash=hash7)
    with pytest.raises(archiving._Refused):
        await stale._append(conn, src, head, rows)
    # two writers with the same next batch at the same moment: one appends, the
    # other waits for its row lock on the head, finds the head moved, adds nothing
    await add_events(client, src, 5, first=10)
    await seal_all(sealer, chain)
    w1, w2 = AuditArchive(Shards(client), url), AuditArchive(Shards(client), url)
    head10 = ArchiveHead(loaded=True, seq=10, hash=cast(str, await _db_head(conn, src)))
    rows = (await w1._pending(src, head10))[0]
    assert [r.seq for r in rows] == [11, 12, 13, 14, 15]
    async with await AsyncConnection.connect(url, autocommit=True) as conn2:
        results = await asyncio.gather(w1._append(conn, src, head10, rows),
                                       w2._append(conn2, src, head10, rows),
                                       return_exceptions=True)  # fmt: skip
    assert sorted(type(r).__name__ for r in results) == ["NoneType", "_Refused"]
    assert await db_seqs(conn, src) == list(range(1, 16))
    assert (await verify_archive(conn, src)).ok


async def test_a_writer_behind_the_archive_catches_up_without_a_false_alarm(
    client: Redis, url: str, conn: AsyncConnection
) -> None:
    src = new_source()
    sealer, behind = sealer_with(client, url)
    chain = Chain(src)
    await add_events(client, src, 10)
    await seal_all(sealer, chain)
    await archive_all(behind, conn, src)  # it knows the archive up to seq 10
    await add_events(client, src, 10, first=10)
    await seal_all(sealer, chain)
    await archive_all(AuditArchive(Shards(client), url), conn, src)  # another: to 20, trimmed
    await add_events(client, src, 5, first=20)
    await seal_all(sealer, chain)
    assert await behind.archive_once(conn, src) == 0  # Redis starts at 21: re-reads the head
    await archive_all(behind, conn, src)
    assert await db_seqs(conn, src) == list(range(1, 26))


async def test_a_record_altered_in_redis_is_never_archived(
    client: Redis, url: str, conn: AsyncConnection
) -> None:
    src = new_source()
    sealer, archive = sealer_with(client, url)
    await add_events(client, src, 10)
    await seal_all(sealer, Chain(src))
    entries = [(eid, f["r"]) for eid, f in await client.xrange(src.sealed)]
    await client.delete(src.sealed)  # streams cannot be edited in place: rebuilt, one altered
    for eid, line in entries:
        rec = json.loads(line)
        if rec["seq"] == 6:
            rec["who"] = "admin:mallory"
        await client.xadd(src.sealed, {"r": json.dumps(rec)}, id=eid)
    with pytest.raises(archiving.ChainMismatch, match="seq 6: hash mismatch"):
        await archive.archive_once(conn, src)
    assert await db_seqs(conn, src) == [1, 2, 3, 4, 5]  # the records before it
    assert await client.xlen(src.sealed) == 5  # the altered one and after stay in Redis
    assert (await verify_archive(conn, src)).ok


async def _db_head(conn: AsyncConnection, src: Source) -> str | None:
    cur = await conn.execute("SELECT hash FROM audit_heads WHERE source = %s", (src.name,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


# --- PostgreSQL away --------------------------------------------------------------------


async def test_postgres_stopped_and_restarted_loses_and_doubles_nothing(
    client: Redis, server: PostgresServer, url: str, conn: AsyncConnection
) -> None:
    src = new_source()
    archive = AuditArchive(Shards(client), url, batch=10, poll=0.05, retry=0.2)
    sealer = Sealer(Shards(client), batch=7, poll=0.02, archive=archive)

    async def only_ours() -> None:  # the shared Redis holds other tests' workspaces
        sealer.sources = {src.name: src}

    sealer._discover = only_ours  # type: ignore[method-assign]
    task = asyncio.create_task(sealer.run())
    try:
        await add_events(client, src, 15)
        await eventually(lambda: _archived(conn, src, 15), what="the first records archived")
        await conn.close()
        await asyncio.to_thread(server.kill)  # SIGKILL, as a crash
        await add_events(client, src, 25, first=15)

        async def sealed_all() -> bool:
            return bool(await client.hget(src.head, "seq") == "40")

        await eventually(sealed_all, what="sealing in Redis while PostgreSQL is down")
        assert await client.xlen(src.sealed) == 25  # waiting in Redis, not lost
        await asyncio.to_thread(server.start)
        async with await AsyncConnection.connect(url, autocommit=True) as again:
            await eventually(lambda: _archived(again, src, 40), within=30,
                             what="the archive catching up")  # fmt: skip
            assert await db_seqs(again, src) == list(range(1, 41))
            assert (await verify_archive(again, src)).ok
        await eventually(lambda: _redis_empty(client, src), what="Redis trimmed")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sealer.release()


async def _archived(conn: AsyncConnection, src: Source, n: int) -> bool:
    return len(await db_seqs(conn, src)) >= n


async def _redis_empty(client: Redis, src: Source) -> bool:
    return int(await client.xlen(src.sealed)) == 0


# --- through the service ------------------------------------------------------------------


async def test_the_service_archives_its_audit_trail(
    aiohttp_client: Any, redis_url: str, url: str, client: Redis, ws: str
) -> None:
    api = await aiohttp_client(create_app(archive_settings(redis_url, url)))
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    await _traffic(api, ws, 5)
    src = Source.workspace(ws)
    async with await AsyncConnection.connect(url, autocommit=True) as conn:

        async def all_archived() -> bool:
            # the traffic's records sealed too (created, assigned, completed: 15),
            # not only the config's and the agent's sealed before them
            head = await client.hget(src.head, "seq")
            return head is not None and int(head) >= 15 and await db_seqs(conn, src) == list(
                range(1, int(head) + 1)
            ) and await client.xlen(src.sealed) == 0  # fmt: skip

        await eventually(all_archived, what="the workspace's records archived")
        assert (await verify_archive(conn, src)).records >= 15


# --- append-only, and verify naming a record a superuser edited --------------------------


async def test_the_table_refuses_changes_by_the_writer_and_the_owner(
    client: Redis, server: PostgresServer, url: str, conn: AsyncConnection
) -> None:
    src = new_source()
    sealer, archive = sealer_with(client, url)
    await add_events(client, src, 5)
    await seal_all(sealer, Chain(src))
    await archive_all(archive, conn, src)
    role = "w" + uuid.uuid4().hex[:8]
    await conn.execute(f"CREATE ROLE {role} LOGIN IN ROLE router_archive_writer".encode())
    writer_url = url.replace("postgres@", f"{role}@")
    changes = ("UPDATE audit_records SET hash = 'forged'", "DELETE FROM audit_records",
               "TRUNCATE audit_records")  # fmt: skip
    async with await AsyncConnection.connect(writer_url, autocommit=True) as writer:
        for statement in changes:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await writer.execute(statement.encode())
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the head: forward only
            await writer.execute("UPDATE audit_heads SET seq = 1 WHERE source = %s", (src.name,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await writer.execute("DELETE FROM audit_heads")
        cur = await writer.execute("SELECT count(*) FROM audit_records")  # reads, as verify does
        assert await cur.fetchone() == (5,)
    for statement in changes:  # the owner (here a superuser too): the trigger refuses
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            await conn.execute(statement.encode())
    assert await db_seqs(conn, src) == [1, 2, 3, 4, 5]


async def test_verify_names_a_record_a_superuser_edited(
    client: Redis, redis_url: str, url: str, conn: AsyncConnection
) -> None:
    edited, cut, intact = new_source(), new_source(), new_source()
    for src in (edited, cut, intact):
        sealer, archive = sealer_with(client, url)
        await add_events(client, src, 20)
        await seal_all(sealer, Chain(src))
        await archive_all(archive, conn, src)
    rc, out = await cli(redis_url, "verify", "--archive", url)
    assert rc == 0 and out.count(": OK, 20 records") == 3, out

    # triggers off for this session: what a superuser (or a restore) can do
    await conn.execute("SET session_replication_role = replica")
    cur = await conn.execute(
        "SELECT record FROM audit_records WHERE source = %s AND seq = 12", (edited.name,)
    )
    forged = json.loads(cast(tuple[str], await cur.fetchone())[0])
    forged["who"] = "admin:mallory"
    await conn.execute(
        "UPDATE audit_records SET record = %s WHERE source = %s AND seq = 12",
        (json.dumps(forged, separators=(",", ":"), sort_keys=True), edited.name),
    )
    await conn.execute("RESET session_replication_role")
    # or with the trigger disabled on the table: the newest records removed
    await conn.execute("ALTER TABLE audit_records DISABLE TRIGGER audit_no_update_or_delete")
    await conn.execute("DELETE FROM audit_records WHERE source = %s AND seq > 17", (cut.name,))
    await conn.execute("ALTER TABLE audit_records ENABLE TRIGGER audit_no_update_or_delete")

    rc, out = await cli(redis_url, "verify", "--archive", url)
    assert rc == 1, out
    assert f"{edited.name}: BAD record at table audit_records, seq 12: hash mismatch" in out
    assert f"{cut.name}: BAD record at table audit_records end, seq 17: head mismatch" in out
    assert f"{intact.name}: OK, 20 records" in out
    rc, out = await cli(redis_url, "verify", "--archive", url, "--source", intact.name)
    assert rc == 0, out
