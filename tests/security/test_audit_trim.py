"""With a history archive, events leave the stream once sealed and archived,
whatever the `events` window, but the recent tail stays, and nothing a consumer
group (the webhook dispatcher's, a CRM's) has yet to read or acknowledge goes.

Real redis-server; the archive's consumer group is driven by hand (what
`router/archive/events.py` does: read, write, acknowledge)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from router.security.audit.records import Source
from router.security.audit.sealer import Chain, Sealer
from router.store.keys import ARCHIVE_GROUP
from router.store.shards import Shards
from sla.webhook_store import GROUP as WEBHOOKS


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    c = Redis.from_url(redis_url, decode_responses=True)
    yield c
    await c.aclose()


def archiving_sealer(client: Redis, tail_s: float = 0.0, batch: int = 100) -> Sealer:
    """A sealer whose retention runs as with an archive configured (the archive
    writer itself is not needed to trim events)."""
    sealer = Sealer(Shards(client), batch=batch)
    sealer.retention.archive, sealer.retention.tail_s = True, tail_s
    return sealer


async def add(client: Redis, src: Source, n: int, at_ms: int | None = None) -> list[str]:
    ids = []
    for i in range(n):
        eid = f"{at_ms}-{i}" if at_ms is not None else "*"
        ids.append(await client.xadd(src.stream, {"e": json.dumps({"type": "x", "n": i})}, id=eid))
    return ids


async def read(client: Redis, src: Source, group: str, n: int) -> list[str]:
    got = await client.xreadgroup(group, "c1", {src.stream: ">"}, count=n)
    return [sid for sid, _ in got[0][1]] if got else []


async def stream(client: Redis, src: Source) -> list[str]:
    return [eid for eid, _ in await client.xrange(src.stream)]


async def seal_and_trim(sealer: Sealer, chain: Chain) -> None:
    while await sealer.advance(chain):
        pass
    await sealer.apply_retention(chain)


async def test_archived_and_sealed_events_go_but_never_past_an_unread_webhook_group(
    client: Redis,
) -> None:
    src = Source.workspace("t" + uuid.uuid4().hex[:10])
    before = await add(client, src, 5)
    await client.xgroup_create(src.stream, WEBHOOKS, id="$")  # webhooks from now on
    ids = before + await add(client, src, 15)
    await client.xgroup_create(src.stream, ARCHIVE_GROUP, id="0")
    archived = await read(client, src, ARCHIVE_GROUP, 100)
    await client.xack(src.stream, ARCHIVE_GROUP, *archived)  # all twenty archived
    sent = await read(client, src, WEBHOOKS, 6)  # the webhooks read six, settle three
    await client.xack(src.stream, WEBHOOKS, *sent[:3])
    sealer = archiving_sealer(client, batch=4)
    chain = Chain(src)

    await sealer.advance(chain)  # four sealed: only those may go
    await sealer.apply_retention(chain)
    assert await stream(client, src) == ids[4:]
    await seal_and_trim(sealer, chain)  # all sealed: up to the webhooks' oldest pending
    assert await stream(client, src) == ids[8:] and ids[8] == sent[3]
    await client.xack(src.stream, WEBHOOKS, *sent[3:])
    await sealer.apply_retention(chain)  # settled: up to the first they have not read
    assert await stream(client, src) == ids[11:]
    await client.xack(src.stream, WEBHOOKS, *await read(client, src, WEBHOOKS, 100))
    await sealer.apply_retention(chain)
    assert await stream(client, src) == []  # read and settled by every group: gone
    assert (await client.hgetall(src.head))["seq"] == "20"  # and sealed, every one


async def test_not_archived_or_unread_by_any_group_stays(client: Redis) -> None:
    src = Source.workspace("t" + uuid.uuid4().hex[:10])
    ids = await add(client, src, 10)
    sealer = archiving_sealer(client)
    chain = Chain(src)
    await seal_and_trim(sealer, chain)
    assert await stream(client, src) == ids  # no archive group yet: nothing is archived

    await client.xgroup_create(src.stream, ARCHIVE_GROUP, id="0")
    archived = await read(client, src, ARCHIVE_GROUP, 6)
    await client.xack(src.stream, ARCHIVE_GROUP, *archived[:4])
    await sealer.apply_retention(chain)
    assert await stream(client, src) == ids[4:]  # read and written: 4; pending: 2 stay

    # a downstream system's own group, created to replay the history, never read
    await client.xgroup_create(src.stream, "crm", id="0")
    await client.xack(src.stream, ARCHIVE_GROUP, *archived[4:])
    await client.xack(src.stream, ARCHIVE_GROUP, *await read(client, src, ARCHIVE_GROUP, 100))
    await sealer.apply_retention(chain)
    assert await stream(client, src) == ids[4:]


async def test_the_recent_tail_stays_for_readers_resuming(client: Redis) -> None:
    src = Source.workspace("t" + uuid.uuid4().hex[:10])
    now = int(time.time() * 1000)
    old = await add(client, src, 5, at_ms=now - 20 * 60_000)  # twenty minutes ago
    recent = await add(client, src, 5)
    await client.xgroup_create(src.stream, ARCHIVE_GROUP, id="0")
    await client.xack(src.stream, ARCHIVE_GROUP, *await read(client, src, ARCHIVE_GROUP, 100))
    sealer = archiving_sealer(client, tail_s=600)
    await seal_and_trim(sealer, Chain(src))
    assert await stream(client, src) == recent and old[0] not in recent


async def test_without_an_archive_events_stay_by_their_window(client: Redis) -> None:
    src = Source.workspace("t" + uuid.uuid4().hex[:10])
    ids = await add(client, src, 5)
    await client.xgroup_create(src.stream, ARCHIVE_GROUP, id="0")
    await client.xack(src.stream, ARCHIVE_GROUP, *await read(client, src, ARCHIVE_GROUP, 100))
    sealer = Sealer(Shards(client))  # no archive configured: the window (here none) decides
    await seal_and_trim(sealer, Chain(src))
    assert await stream(client, src) == ids
