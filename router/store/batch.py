"""Coalesces concurrent script calls into one pipeline per event-loop tick.

Every request needs one FCALL (or EVALSHA); sending the calls that arrive in the same
loop iteration as one non-transactional pipeline turns N round trips into
one, which is where most of the per-request cost goes on a small machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from router.store.scripts import Lua, missing

Call = tuple[Lua, Sequence[str], Sequence[Any], "asyncio.Future[Any]"]


class ScriptBatcher:
    def __init__(self, client: Redis, max_batch: int = 512) -> None:
        self._client = client
        self._max_batch = max_batch
        self._pending: list[Call] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, script: Lua, keys: Sequence[str], args: Sequence[Any]) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, fut))
        if len(self._pending) >= self._max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[Call]) -> None:
        try:
            pipe = self._client.pipeline(transaction=False)
            for script, keys, args, _ in batch:
                script.queue(pipe, keys, args)
            results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # connection lost: every caller learns it
            for *_, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (script, keys, args, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, Exception) and missing(result):
                # Redis restarted empty or was flushed: the call loads the code.
                try:
                    fut.set_result(await script(keys=keys, args=args))
                except Exception as exc:
                    fut.set_exception(exc)
            elif isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
