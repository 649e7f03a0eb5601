"""Running Lua in Redis: EVALSHA scripts and Redis Functions libraries.

Generic pieces only: what code a library holds is decided above this package
(`router/routing/library.py` builds the routing library and names every
script). Lua files ship inside the package that owns them and are read once
with `importlib.resources` (`read_lua`).

A `Library` is loaded with FUNCTION LOAD; a `Function` is one FCALL of it and
loads the library again when Redis lost it (a flushed or brand-new server, a
cluster primary that never ran it), then retries. A `Script` is an EVALSHA
script, loaded again on NOSCRIPT. Both queue into a pipeline the same way
(`Lua`), which is what the batcher (`router/store/batch.py`) needs. None of
them is bound to a client: the caller names the Redis that holds the keys
(`router/store/shards.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha1
from importlib import resources
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError, ResponseError


def read_lua(package: str, name: str) -> str:
    """`<package>/lua/<name>.lua`, read from the installed package."""
    return resources.files(package).joinpath("lua", name + ".lua").read_text("utf-8")


def missing(exc: BaseException) -> bool:
    """Redis does not have the code (restarted empty, flushed): load and retry."""
    return isinstance(exc, NoScriptError) or (
        isinstance(exc, ResponseError) and "function not found" in str(exc).lower()
    )


class Lua(Protocol):
    """A script or library function: queued in a pipeline, or called alone
    (loading the code first when Redis lacks it). `durable`: its effect is a
    state change acknowledged to a caller, so it waits for the replicas the
    write guarantee names (`router/store/batch.py`). `record`: see `Function`."""

    durable: bool
    record: int | None

    def command(self, keys: Sequence[str], args: Sequence[Any]) -> tuple[Any, ...]:
        """The command that runs it, for a pipeline written by hand (batch.py)."""
        ...

    def queue(self, pipe: Pipeline, keys: Sequence[str], args: Sequence[Any]) -> None: ...

    async def load(self, client: Redis) -> None: ...

    async def __call__(self, keys: Sequence[str], args: Sequence[Any], *, client: Redis) -> Any: ...


class Script:
    """An EVALSHA script, loaded again when Redis answers NOSCRIPT."""

    def __init__(self, text: str, durable: bool = False) -> None:
        self.text = text
        self.sha = sha1(text.encode(), usedforsecurity=False).hexdigest()
        self.durable = durable
        self.record: int | None = None

    def command(self, keys: Sequence[str], args: Sequence[Any]) -> tuple[Any, ...]:
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    def queue(self, pipe: Pipeline, keys: Sequence[str], args: Sequence[Any]) -> None:
        pipe.evalsha(self.sha, len(keys), *keys, *args)

    async def __call__(self, keys: Sequence[str], args: Sequence[Any], *, client: Redis) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.load(client)
        return await client.evalsha(self.sha, len(keys), *keys, *args)

    async def load(self, client: Redis) -> None:
        await client.script_load(self.text)

    async def loaded(self, client: Redis) -> bool:
        return bool((await client.script_exists(self.sha))[0])


class Library:
    """A Redis Functions library, loaded once per Redis. `code` starts with its
    `#!lua name=<name>` line; `digest` is the suffix of its function names."""

    def __init__(self, name: str, code: str, digest: str) -> None:
        self.code, self.digest, self.name = code, digest, name

    async def load(self, client: Redis) -> None:
        try:
            await client.function_load(self.code)
        except ResponseError as exc:
            if "already exists" not in str(exc):  # another replica loaded it first
                raise

    async def loaded(self, client: Redis) -> bool:
        return bool(await client.function_list(library=self.name))


class Function:
    """One function of a library, called with FCALL.

    `record`: the index of the key whose hash the reply carries. Such a function
    answers `{code}` and the caller reads the hash right after it, in the same
    MULTI/EXEC (so no other client's write comes between): `[code, record]`
    when the code is 0 or 1, the function's own reply otherwise (a refusal).
    Returned from Lua, a 30-field record cost Redis ~5 µs more than read
    outside it (converted into Lua values and back; benchmarks/history/2026-12.md).
    """

    def __init__(
        self, library: Library, name: str, durable: bool = True, record: int | None = None
    ) -> None:
        self.library = library
        self.fname = f"{name}_{library.digest}"
        self.durable = durable
        self.record = record

    async def load(self, client: Redis) -> None:
        await self.library.load(client)

    def command(self, keys: Sequence[str], args: Sequence[Any]) -> tuple[Any, ...]:
        return ("FCALL", self.fname, len(keys), *keys, *args)

    def queue(self, pipe: Pipeline, keys: Sequence[str], args: Sequence[Any]) -> None:
        pipe.fcall(self.fname, len(keys), *keys, *args)

    async def __call__(self, keys: Sequence[str], args: Sequence[Any], *, client: Redis) -> Any:
        try:
            return await self._call(keys, args, client)
        except ResponseError as exc:
            if not missing(exc):
                raise
        await self.library.load(client)
        return await self._call(keys, args, client)

    async def _call(self, keys: Sequence[str], args: Sequence[Any], client: Redis) -> Any:
        if self.record is None:
            return await client.fcall(self.fname, len(keys), *keys, *args)
        pipe = client.pipeline(transaction=True)
        pipe.fcall(self.fname, len(keys), *keys, *args)
        pipe.hgetall(keys[self.record])
        reply, record = await pipe.execute()
        return with_record(reply, record)


def with_record(reply: Any, record: Any) -> Any:
    """A record function's reply with the record read after it (`Function.record`)."""
    if isinstance(reply, list) and len(reply) == 1 and reply[0] in (0, 1):
        return [reply[0], record]
    return reply
