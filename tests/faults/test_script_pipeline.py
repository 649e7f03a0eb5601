"""The script pipeline (router/store/batch.py) is written by hand on pooled
connections: every reply must reach the call that asked for it, an error reply
stays that call's own, and a batch cut short (here: Redis busy past the read
timeout) fails its calls and leaves no late reply behind for the next batch.

A function that answers with a record (`Function.record`) is sent as MULTI,
FCALL, a read of the whole record, EXEC: its reply carries the record as its
own call left it, whole, and its refusals and errors stay its own.

A private redis-server: the test holds it busy with a long script."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.store.batch import ScriptBatcher
from router.store.client import make_client
from router.store.local import LocalRedis
from router.store.scripts import Function, Library, Script
from router.store.shards import Shards

ECHO = Script("return ARGV[1]")
FAIL = Script("return redis.error_reply('ERR refused ' .. ARGV[1])")
SPIN = Script("local n = 0 for i = 1, tonumber(ARGV[1]) do n = n + 1 end return n")


@pytest.fixture
def server() -> Iterator[LocalRedis]:
    with LocalRedis() as local:
        yield local


async def _spin_for(client: Redis, seconds: float) -> int:
    """Loop iterations that keep this Redis busy about `seconds` (measured here)."""
    n = 2_000_000
    start = time.perf_counter()
    await SPIN([], [n], client=client)
    took = max(time.perf_counter() - start, 1e-3)
    return int(n * seconds / took)


async def test_replies_reach_their_calls_and_a_cut_batch_leaves_nothing_behind(
    server: LocalRedis,
) -> None:
    client = make_client(server.url, timeout=0.3)
    other = make_client(server.url, timeout=30)
    batcher = ScriptBatcher(Shards(client))
    try:
        # one batch of 200 calls, an error reply among them
        calls = [batcher.call(FAIL if i == 7 else ECHO, [], [f"v{i}"]) for i in range(200)]
        got = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(got[7], ResponseError) and "refused v7" in str(got[7])
        assert [g for i, g in enumerate(got) if i != 7] == [f"v{i}" for i in range(200) if i != 7]

        # Redis held busy past the 0.3 s read timeout: the batch's calls fail
        spin = asyncio.create_task(SPIN([], [await _spin_for(other, 1.2)], client=other))
        await asyncio.sleep(0.1)  # the spin has started: the next batch waits behind it
        cut = await asyncio.gather(
            *(batcher.call(ECHO, [], [f"late{i}"]) for i in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, RedisTimeoutError) for r in cut), cut
        await spin

        # the late replies are not read as the next batch's
        again = await asyncio.gather(*(batcher.call(ECHO, [], [f"w{i}"]) for i in range(50)))
        assert again == [f"w{i}" for i in range(50)]
    finally:
        await batcher.close()
        await client.aclose()
        await other.aclose()


RECORDS = Library(
    "records_test",
    "#!lua name=records_test\n"
    "redis.register_function('put_t', function(keys, argv)\n"
    "  if argv[1] == 'refuse' then return { -1, 'refused' } end\n"
    "  if argv[1] == 'fail' then return redis.error_reply('ERR failed') end\n"
    "  redis.call('HSET', keys[2], 'v', argv[1], 'n', 1)\n"
    "  return { 1 }\n"
    "end)\n",
    "t",
)
PUT = Function(RECORDS, "put", record=1)


async def test_a_record_function_answers_with_its_own_record(server: LocalRedis) -> None:
    client = make_client(server.url, timeout=5)
    batcher = ScriptBatcher(Shards(client))
    try:
        # not loaded yet: the first batch finds no function, loads it, sends again
        values = [
            "refuse" if i % 10 == 3 else "fail" if i % 10 == 7 else f"v{i}" for i in range(60)
        ]
        got = await asyncio.gather(
            *(batcher.call(PUT, ["rt", f"rec:{i % 20}"], [v]) for i, v in enumerate(values)),
            return_exceptions=True,
        )
        for i, (v, g) in enumerate(zip(values, got, strict=True)):
            if v == "refuse":
                assert g == [-1, "refused"], (i, g)
            elif v == "fail":
                assert isinstance(g, ResponseError) and "failed" in str(g), (i, g)
            else:
                # three calls share each key in one batch: each sees its own write
                assert g == [1, {"v": v, "n": "1"}], (i, g)
        # a record of any size and encoding comes whole, as HGETALL reads it: small
        # (a listpack, as contacts are), past the listpack limit, with empty values
        for n in (40, 600):
            key = f"rec:big{n}"
            await client.hset(
                key, mapping={f"f{j}": "" if j % 9 == 0 else f"x{j}" for j in range(n)}
            )
            reply = await batcher.call(PUT, ["rt", key], ["w"])
            assert reply[0] == 1 and reply[1] == await client.hgetall(key), n
            assert len(reply[1]) == n + 2
        # called alone, outside the batcher, it answers alike
        assert await PUT(["rt", "rec:solo"], ["alone"], client=client) == [
            1,
            {"v": "alone", "n": "1"},
        ]
    finally:
        await batcher.close()
        await client.aclose()


async def test_a_ticks_calls_go_in_chunks_and_a_burst_stays_within_the_pool(
    server: LocalRedis,
) -> None:
    # Pipelines of 16 while few are out, so Redis works on the first while the
    # router reads the rest; a burst past that goes in pipelines of up to 512,
    # since each one out holds a pooled connection: 3,000 calls in one tick on
    # a pool of 24 connections are all answered, none refused for connections.
    client = make_client(server.url, timeout=5, max_connections=24)
    batcher = ScriptBatcher(Shards(client))
    sizes: list[int] = []
    execute = batcher._execute

    async def counted(c: Redis, batch: list[Any]) -> Any:
        sizes.append(len(batch))
        return await execute(c, batch)

    batcher._execute = counted  # type: ignore[method-assign]
    try:
        assert await batcher.call(ECHO, [], ["loaded"]) == "loaded"  # (the script cached)
        sizes.clear()
        got = await asyncio.gather(*(batcher.call(ECHO, [], [f"v{i}"]) for i in range(40)))
        assert got == [f"v{i}" for i in range(40)]
        assert sizes == [16, 16, 8]  # each reply to its call, across the pipelines
        sizes.clear()
        burst = await asyncio.gather(
            *(batcher.call(ECHO, [], [f"b{i}"]) for i in range(3000)), return_exceptions=True
        )
        assert burst == [f"b{i}" for i in range(3000)]
        assert sizes[:16] == [16] * 16 and max(sizes) == 512 and sum(sizes) == 3000
        assert len(sizes) <= 16 + 3000 // 512 + 1
    finally:
        await batcher.close()
        await client.aclose()
