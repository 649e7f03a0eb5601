"""Coalesces concurrent script calls into pipelines, per event-loop tick.

Every request needs one FCALL (or EVALSHA); sending the calls that arrive in the same
loop iteration as non-transactional pipelines (of up to 16 calls while few are
out, see `ScriptBatcher`) turns N round trips into a few, which is where most
of the per-request cost goes on a small machine.

The write guarantee rides on the same pipeline: with `wait_replicas` set, a
batch holding a durable call ends with `WAIT n timeout`, which returns once the
primary's replicas have every write made before it on that connection. When
fewer than `n` confirm in time, every durable call of the batch fails with
`NotReplicated` (503) instead of being acknowledged; reads and non-durable
calls keep their results. One WAIT covers the whole batch, so its cost is one
round trip to the replicas per batch, not per request.

On a cluster a batch is split by the primary that holds each call's keys (its
first key decides, as every script's keys share one slot): one pipeline per
primary, sent concurrently, each with its own WAIT for that primary's
replicas. An error that means the slot map moved is reported to the shards.

A function that answers with a record (`Function.record`: the contact it acted
on) goes as MULTI, FCALL, a read of the whole record, EXEC: the record is read
outside Lua (cheaper for Redis) and still as the call left it. The read is
`HRANDFIELD key <more than any hash holds> WITHVALUES`, which Redis answers
with the whole hash, in HGETALL's order at HGETALL's cost; HGETALL's RESP3 map
takes hiredis ~2.5x as long to parse as these pairs (6.5 against 2.6 µs for a
21-field contact, 9.2 against 3.7 with SLA clocks), three times a lifecycle.

The pipeline is written by hand on one of the client's pooled connections:
every command packed by hiredis' C packer into one write, the replies read
under one timeout for the batch. redis-py's `Pipeline` packs in Python (each
argument type-checked and encoded one by one) and arms a timeout per reply:
on `POST /contacts` that was a fifth of the router's CPU (benchmarks/RESULTS.md).
The connection is redis-py's own (Sentinel's checks of the primary and
health checks included); a batch is never sent twice: a connection lost
mid-batch fails its calls (503), as an unknown outcome must.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.runtime.errors import NotReplicated
from router.store.scripts import Lua, missing, with_record
from router.store.shards import Shards

Call = tuple[Lua, Sequence[str], Sequence[Any], "asyncio.Future[Any]"]
# hiredis' packer, typed for a command of any length (its stub names a 1-tuple)
pack_command = cast(Callable[[tuple[Any, ...]], bytes], hiredis.pack_command)
_MULTI, _EXEC = pack_command(("MULTI",)), pack_command(("EXEC",))
# HRANDFIELD with a count at or above the hash's length answers every field once
# (a count this large is never reached: a contact record holds a few dozen)
_WHOLE = 1 << 30


def _whole(key: str) -> tuple[Any, ...]:
    """The command that reads a whole record as field-value pairs (see above)."""
    return ("HRANDFIELD", key, _WHOLE, "WITHVALUES")


def _pairs_of(reply: Any) -> Any:
    """The record as a dict (RESP3: a list of [field, value] pairs) or, on RESP2,
    the flat list of fields and values (`router/routing/records.py` pairs)."""
    if isinstance(reply, list) and reply and isinstance(reply[0], list):
        return dict(reply)
    return reply


class ScriptBatcher:
    """`chunk`: a tick's calls go in pipelines of this many while fewer than
    `chunks_in_flight` are out, so Redis runs the first while the router reads
    the rest and the replies come back in turn. One pipeline of every call of a
    tick made the two take turns: at 64 connections Redis answered 64 creates
    at once (~4 ms) while the router idled, then the router wrote 64 answers
    (~9 ms) while Redis idled; in chunks of 16 the router is busy 0.93 of the
    time, not 0.76, and admits 10-28% more (benchmarks/history/2026-12.md,
    eighth pass). Past that many out, a tick's calls go in pipelines of up to
    `max_batch`: every pipeline out holds a pooled connection."""

    def __init__(
        self,
        shards: Shards,
        max_batch: int = 512,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        chunk: int = 16,
        chunks_in_flight: int = 16,
    ) -> None:
        self._shards = shards
        self._max_batch = max_batch
        self._chunk = chunk
        self._chunks_in_flight = chunks_in_flight
        self.wait_replicas = wait_replicas
        self._wait_ms = max(1, round(wait_timeout * 1000))
        self._pending: list[Call] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, script: Lua, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self.submit(script, keys, args)

    def submit(self, script: Lua, keys: Sequence[str], args: Sequence[Any]) -> asyncio.Future[Any]:
        """Queues the call for this tick's pipeline; its reply comes as the future's result."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, fut))
        if len(self._pending) >= (
            self._chunk if len(self._tasks) < self._chunks_in_flight else self._max_batch
        ):
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        loop = asyncio.get_running_loop()
        for client, calls in self._by_primary(batch):
            task = loop.create_task(self._send(client, calls))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _by_primary(self, batch: list[Call]) -> list[tuple[Redis, list[Call]]]:
        if not self._shards.clustered:
            return [(self._shards.of(""), batch)]
        groups: dict[int, tuple[Redis, list[Call]]] = {}
        for call in batch:
            try:
                client = self._shards.of(call[1][0])
            except Exception as exc:  # no primary known for the slot: 503
                if not call[3].done():
                    call[3].set_exception(exc)
                continue
            groups.setdefault(id(client), (client, []))[1].append(call)
        return list(groups.values())

    async def _send(self, client: Redis, batch: list[Call], reloaded: bool = False) -> None:
        try:
            results, unconfirmed = await self._execute(client, batch)
        except BaseException as exc:  # connection lost: every caller learns it
            self._shards.suspect(exc)
            for *_, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        retry: list[Call] = []
        for call, result in zip(batch, results, strict=True):
            script, fut = call[0], call[3]
            if fut.done():
                continue
            if isinstance(result, Exception) and missing(result) and not reloaded:
                retry.append(call)  # Redis restarted empty or was flushed
            elif isinstance(result, Exception):
                self._shards.suspect(result)  # MOVED, CLUSTERDOWN ...: the map moved
                fut.set_exception(result)
            elif unconfirmed is not None and script.durable:
                fut.set_exception(unconfirmed)
            else:
                fut.set_result(result)
        if retry:
            await self._reload_and_resend(client, retry)

    async def _execute(
        self, client: Redis, batch: list[Call]
    ) -> tuple[list[Any], NotReplicated | None]:
        """One pipeline: the calls, then WAIT when the batch holds a durable call."""
        packed: list[bytes] = []
        replies: list[int] = []  # replies to read per call
        for script, keys, args, _ in batch:
            cmd = pack_command(script.command(keys, args))
            record = script.record
            if record is None:
                packed.append(cmd)
                replies.append(1)
            else:
                packed.append(_MULTI + cmd + pack_command(_whole(keys[record])) + _EXEC)
                replies.append(4)
        wait = self.wait_replicas > 0 and any(call[0].durable for call in batch)
        if wait:
            packed.append(pack_command(("WAIT", self.wait_replicas, self._wait_ms)))
            replies.append(1)
        got = await send_packed(client, packed, sum(replies))
        results: list[Any] = []
        i = 0
        for n in replies:
            results.append(got[i] if n == 1 else _transaction_result(got[i : i + n]))
            i += n
        return results, (self._unconfirmed(results.pop()) if wait else None)

    async def _reload_and_resend(self, client: Redis, calls: list[Call]) -> None:
        """Loads the code Redis lost, then sends those calls again as one batch
        (with its WAIT, so the write guarantee holds for them too)."""
        try:
            for script in {id(c[0]): c[0] for c in calls}.values():
                await script.load(client)
        except Exception as exc:
            for *_, fut in calls:
                if not fut.done():
                    fut.set_exception(exc)
            return
        await self._send(client, calls, reloaded=True)

    def _unconfirmed(self, reply: Any) -> NotReplicated | None:
        """The error for the batch's durable calls when WAIT fell short, else None."""
        if isinstance(reply, int) and reply >= self.wait_replicas:
            return None
        got = reply if isinstance(reply, int) else 0
        return NotReplicated(
            f"the change reached {got} of {self.wait_replicas} Redis replicas within "
            f"{self._wait_ms} ms and is not acknowledged; retry"
        )

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _transaction_result(got: list[Any]) -> Any:
    """MULTI, FCALL, the record's read, EXEC's four replies as the call's result: the
    function's reply with the record, or the error that stopped it (one met
    while queueing, such as MOVED or READONLY, aborts the transaction and names
    the cause better than EXECABORT)."""
    queued, exec_reply = got[1], got[3]
    if isinstance(queued, Exception):
        return queued
    if isinstance(exec_reply, Exception) or not isinstance(exec_reply, list):
        return exec_reply if isinstance(exec_reply, Exception) else ResponseError(str(exec_reply))
    reply, record = exec_reply
    if isinstance(reply, Exception):
        return reply  # raised by the function: its own error, or not loaded
    return with_record(reply, _pairs_of(record))


async def call_once(client: Redis, script: Lua, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """One script call outside the batcher, packed by hiredis: for calls with
    many arguments (a seal of 250 audit records has 750), which redis-py's
    packer encodes one by one in Python. Sent once, like a batch; the code is
    loaded when Redis lacks it, then the call is sent again."""
    packed = [pack_command(script.command(keys, args))]
    (result,) = await send_packed(client, packed)
    if isinstance(result, Exception) and missing(result):
        await script.load(client)
        (result,) = await send_packed(client, packed)
    if isinstance(result, Exception):
        raise result
    return result


async def _read_replies(conn: Connection, n: int) -> list[Any]:
    """`n` replies; an error reply is the command's result. With hiredis' parser
    (a dependency, always present) they are taken straight from its reader:
    redis-py's `read_response` passes each reply through three coroutines, a
    timeout check and a raise-and-catch per error reply, ~1 µs a reply, and a
    batch reads several per request (the record functions read four)."""
    parser = conn._parser
    reader = getattr(parser, "_reader", None)
    if not isinstance(parser, _AsyncHiredisParser) or reader is None:
        out: list[Any] = []
        for _ in range(n):
            try:
                out.append(await conn.read_response(timeout=math.inf))
            except ResponseError as exc:
                out.append(exc)
        return out
    results: list[Any] = []
    while len(results) < n:
        reply = reader.gets()
        if reply is NOT_ENOUGH_DATA:
            await parser.read_from_socket()  # type: ignore[no-untyped-call]
        elif isinstance(reply, RedisConnectionError):  # e.g. LOADING: read_response raises it
            raise reply
        else:
            results.append(reply)
    if conn.health_check_interval:  # as read_response does: the connection is known alive
        conn.next_health_check = asyncio.get_running_loop().time() + conn.health_check_interval
    return results


async def send_packed(client: Redis, packed: list[bytes], replies: int | None = None) -> list[Any]:
    """Sends the packed commands in one write and reads one reply each (or
    `replies` in all: an element may hold several commands); an error reply is
    that command's result, as in a pipeline with `raise_on_error=False`."""
    pool = client.connection_pool
    try:
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    except RuntimeError as exc:
        # uvloop's "unable to perform operation on <TCPTransport closed=True>":
        # the server closed a connection redis-py was still setting up (a
        # primary killed mid-connect); redis-py lets it through as is
        raise RedisConnectionError(f"connection closed while connecting: {exc}") from exc
    try:
        # one buffer: a list would be handed to the transport piece by piece
        await conn.send_packed_command(b"".join(packed))
        n = len(packed) if replies is None else replies
        try:  # one timeout for the batch; each reply read without arming its own
            async with asyncio.timeout(conn.socket_timeout):
                return await _read_replies(conn, n)
        except TimeoutError:
            raise RedisTimeoutError("Timeout reading a batch of script replies") from None
    except BaseException:
        # a batch cut short leaves replies on the wire: never reuse the connection
        await conn.disconnect(nowait=True)
        raise
    finally:
        await pool.release(conn)
