"""Events reach the archive exactly once: every id the workspace's stream holds is
one row, in step with the stream; a batch written by an archiver that died before
acknowledging it is taken over and adds nothing; PostgreSQL stopped under load
holds nothing up and the archive catches up when it is back."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import AsyncConnection
from redis.asyncio import Redis

from router.api.app import create_app
from router.archive.events import GROUP, EventArchiver
from router.archive.schema import migrate
from router.runtime.settings import Settings
from router.store.keys import WsKeys
from router.store.shards import Shards
from router.store.workspaces import Workspaces
from router.wfm.exporter import archive_backlog
from tests.support.archive import archive_settings
from tests.support.client import act, add_agent, create, put_config, small_config
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def _archived_ids(url: str, ws: str) -> list[str]:
    async with await AsyncConnection.connect(url) as conn:
        try:
            cur = await conn.execute("SELECT id FROM events WHERE ws = %s ORDER BY at, id", (ws,))
        except psycopg.errors.UndefinedTable:  # the replica has not migrated the schema yet
            return []
        return [r[0] for r in await cur.fetchall()]


async def _stream_ids(redis_url: str, ws: str) -> list[str]:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        return [sid for sid, _ in await client.xrange(WsKeys(ws).events)]
    finally:
        await client.aclose()


async def _until_archived(pg_url: str, redis_url: str, ws: str, within: float = 20.0) -> None:
    for _ in range(int(within / 0.2)):
        if await _archived_ids(pg_url, ws) == await _stream_ids(redis_url, ws):
            return
        await asyncio.sleep(0.2)
    stream, archived = await _stream_ids(redis_url, ws), await _archived_ids(pg_url, ws)
    raise AssertionError(f"{len(archived)} of {len(stream)} events archived")


async def _backlog(api: Any, ws: str) -> float:
    text = await (await api.get("/metrics")).text()
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            if smp.name == "routerarchive_backlog_events" and smp.labels["workspace"] == ws:
                return float(smp.value)
    raise AssertionError("no routerarchive_backlog_events for the workspace")


async def _traffic(api: Any, ws: str, n: int, prefix: str = "c") -> None:
    for i in range(n):
        await create(api, ws, f"{prefix}{i}")
        assert (await act(api, ws, f"{prefix}{i}", "accept", agent_id="a1")).status == 200
        assert (await act(api, ws, f"{prefix}{i}", "complete", agent_id="a1")).status == 200


async def _service(aiohttp_client: Any, settings: Settings, ws: str) -> Any:
    """A replica of the service on `settings`, the workspace and agent a1 set up."""
    api = await aiohttp_client(create_app(settings))
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    return api


async def test_every_event_is_archived_once(
    aiohttp_client: Any, redis_url: str, server: PostgresServer, ws: str
) -> None:
    api = await _service(aiohttp_client, archive_settings(redis_url, server.url), ws)
    await _traffic(api, ws, 20)
    await _until_archived(server.url, redis_url, ws)
    async with await AsyncConnection.connect(server.url) as conn:
        cur = await conn.execute(
            "SELECT type, count(*) FROM events WHERE ws = %s GROUP BY type", (ws,)
        )
        counts = dict(await cur.fetchall())
        cur = await conn.execute(
            "SELECT doc->>'type' = type AND at = to_timestamp(split_part(id, '-', 1)::bigint"
            " / 1000.0) FROM events WHERE ws = %s",
            (ws,),
        )
        consistent = {r[0] for r in await cur.fetchall()}
    assert counts["contact.created"] == 20 and counts["contact.completed"] == 20
    assert consistent == {True}  # the document as recorded, the time of its stream id


async def test_a_batch_whose_archiver_died_is_taken_over_without_doubles(
    aiohttp_client: Any, redis_url: str, server: PostgresServer, ws: str
) -> None:
    settings = archive_settings(redis_url, server.url)  # the test runs the archivers itself:
    no_archive = Settings(**{**settings.__dict__, "archive_url": None})
    api = await _service(aiohttp_client, no_archive, ws)
    await _traffic(api, ws, 5)
    client = Redis.from_url(redis_url, decode_responses=True)
    shards = Shards(client)
    try:
        async with await AsyncConnection.connect(server.url, autocommit=True) as conn:
            await migrate(conn)
            dying = EventArchiver(shards, Workspaces(shards), server.url, claim_idle=0.2)
            # it writes its batch, then dies before the acknowledgement
            real_xack = client.xack

            async def no_ack(*_: Any) -> int:
                raise ConnectionError("killed")

            client.xack = no_ack  # type: ignore[method-assign]
            with pytest.raises(ConnectionError):
                await dying.archive_once(conn, ws)
            client.xack = real_xack  # type: ignore[method-assign]
            pending = await client.xpending(WsKeys(ws).events, GROUP)
            assert pending["pending"] > 0
            await asyncio.sleep(0.3)  # idle longer than claim_idle
            heir = EventArchiver(shards, Workspaces(shards), server.url, claim_idle=0.2)
            while await heir.archive_once(conn, ws):
                pass
        assert (await client.xpending(WsKeys(ws).events, GROUP))["pending"] == 0
        assert await _archived_ids(server.url, ws) == await _stream_ids(redis_url, ws)
    finally:
        await client.aclose()


async def test_postgres_stopped_under_load_holds_nothing_up(
    aiohttp_client: Any, redis_url: str, server: PostgresServer, ws: str
) -> None:
    api = await _service(aiohttp_client, archive_settings(redis_url, server.url), ws)
    await _traffic(api, ws, 5, "before")
    await _until_archived(server.url, redis_url, ws)
    await asyncio.to_thread(server.kill)  # SIGKILL, as a crash
    await _traffic(api, ws, 10, "during")  # routing answers as before
    r = await api.get("/readyz")
    assert r.status == 200  # the archive is not on the routing path
    assert await _backlog(api, ws) >= 30  # what waits in Redis for the archive, reported
    await asyncio.to_thread(server.start)
    await _until_archived(server.url, redis_url, ws, within=30)
    assert await _backlog(api, ws) == 0
    ids = await _archived_ids(server.url, ws)
    assert len(ids) == len(set(ids)) == len(await _stream_ids(redis_url, ws))


async def test_the_backlog_does_not_count_unread_entries_that_were_trimmed(
    redis_url: str, ws: str
) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    keys = WsKeys(ws)
    try:
        for _ in range(10):
            await client.xadd(keys.events, {"e": "{}"})
        await client.xgroup_create(keys.events, GROUP, id="0")
        await client.xreadgroup(GROUP, "a", {keys.events: ">"}, count=3)
        assert await archive_backlog(client, keys) == 10  # 3 pending, 7 not read
        await client.xtrim(keys.events, maxlen=4, approximate=False)  # 3 unread trimmed
        assert await archive_backlog(client, keys) == 3 + 4
        await client.xreadgroup(GROUP, "a", {keys.events: ">"}, count=10)
        assert await archive_backlog(client, keys) == 7  # read to the end: pending only
        await client.xack(keys.events, GROUP, *[i for i, _ in await client.xrange(keys.events)])
        pending = await client.xpending(keys.events, GROUP)
        # read, then trimmed: pending until the archiver acknowledges them as gone
        assert await archive_backlog(client, keys) == pending["pending"] == 3
    finally:
        await client.aclose()


async def test_events_trimmed_before_they_were_archived_leave_a_gap_on_record(
    redis_url: str, server: PostgresServer, ws: str
) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    shards = Shards(client)
    keys = WsKeys(ws)
    try:
        for i in range(10):
            await client.xadd(keys.events, {"e": f'{{"type":"t","n":{i}}}'})
        async with await AsyncConnection.connect(server.url, autocommit=True) as conn:
            await migrate(conn)
            archiver = EventArchiver(shards, Workspaces(shards), server.url, batch=3)
            assert await archiver.archive_once(conn, ws) == 3
            for i in range(10, 20):
                await client.xadd(keys.events, {"e": f'{{"type":"t","n":{i}}}'})
            # the length cap outruns the archive: 13 entries go unread
            await client.xtrim(keys.events, maxlen=4, approximate=False)
            kept = [sid for sid, _ in await client.xrange(keys.events)]
            archiver._batch = 100
            while await archiver.archive_once(conn, ws):
                pass
            assert await archiver.archive_once(conn, ws) == 0  # no second gap
            cur = await conn.execute(
                "SELECT type, doc->>'lost', doc->>'before' FROM events"
                " WHERE ws = %s AND type = 'archive.gap'",
                (ws,),
            )
            gaps = await cur.fetchall()
            cur = await conn.execute(
                "SELECT count(*) FROM events WHERE ws = %s AND type = 't'", (ws,)
            )
            (archived,) = await cur.fetchone() or (0,)
        assert gaps == [("archive.gap", "13", kept[0])]
        assert archived == 3 + 4
        assert archiver.gaps._value.get() == 1
    finally:
        await client.aclose()
