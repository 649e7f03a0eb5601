"""Lua code, read once from the package and registered with Redis.

The routing operations are one Redis Functions library: `lib.lua` (shared
routing logic) followed by each operation's file, wrapped as a registered
function. A library's top level runs once, when it is loaded, so the ~70 local
functions and constant tables of `lib.lua` are built once rather than on every
call; with EVAL they were rebuilt per call, which measured ~30 µs of Redis time
a call (`benchmarks/redis_ceiling.py`). Each operation stays one atomic call.

Library and function names carry a digest of the code: replicas of two
versions during a rolling upgrade each call their own code, as EVALSHA did.
Redis keeps functions in its RDB/AOF and replicates them; when they are still
missing (a flushed or brand-new server) a call loads the library and retries.

The timer scripts (`sla/lua`) and the read-only `agent_view` stay EVALSHA
scripts: they need nothing from the library.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256
from importlib import resources
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

ROUTING_SCRIPTS = (
    "create",
    "agent_upsert",
    "agent_state",
    "accept",
    "reject",
    "complete",
    "abandon",
    "transfer",
    "fire",
    "config_put",
    "resolve",
    "respond",
    "sla_pause",
    "sla_resume",
    "sla_replan",
    "rate",
)
TIMER_SCRIPTS = ("claim", "handback", "ack")
# Read-only router scripts that need nothing from the routing library.
STANDALONE_SCRIPTS = ("agent_view",)


def _read(package: str, name: str) -> str:
    return resources.files(package).joinpath("lua", name + ".lua").read_text("utf-8")


def routing_library() -> tuple[str, str]:
    """The library's source and the digest its names carry."""
    lib = _read("router", "lib")
    bodies = [(name, _read("router", name)) for name in ROUTING_SCRIPTS]
    digest = sha256("\n".join([lib, *(b for _, b in bodies)]).encode()).hexdigest()[:12]
    parts = [f"#!lua name=router_{digest}", lib]
    for name, body in bodies:
        parts.append(
            f"redis.register_function('{name}_{digest}', function(keys_, argv_)\n"
            f"begin(keys_, argv_)\n{body}\nend)"
        )
    return "\n".join(parts) + "\n", digest


def missing(exc: BaseException) -> bool:
    """Redis does not have the code (restarted empty, flushed): load and retry."""
    return isinstance(exc, NoScriptError) or (
        isinstance(exc, ResponseError) and "function not found" in str(exc).lower()
    )


class Lua(Protocol):
    """A script or library function: queued in a pipeline, or called alone
    (loading the code first when Redis lacks it)."""

    def queue(self, pipe: Pipeline, keys: Sequence[str], args: Sequence[Any]) -> None: ...

    async def __call__(
        self, keys: Sequence[str] = (), args: Sequence[Any] = (), client: Redis | None = None
    ) -> Any: ...


class Script:
    """An EVALSHA script (redis-py's Script reloads it on NOSCRIPT)."""

    def __init__(self, script: AsyncScript) -> None:
        self.script = script

    @classmethod
    def register(cls, client: Redis, text: str) -> Script:
        return cls(client.register_script(text))

    @property
    def sha(self) -> str:
        return str(self.script.sha)

    def queue(self, pipe: Pipeline, keys: Sequence[str], args: Sequence[Any]) -> None:
        pipe.evalsha(self.sha, len(keys), *keys, *args)

    async def __call__(
        self, keys: Sequence[str] = (), args: Sequence[Any] = (), client: Redis | None = None
    ) -> Any:
        return await self.script(keys=list(keys), args=list(args), client=client)

    async def load(self, client: Redis) -> None:
        self.script.sha = await client.script_load(self.script.script)

    async def loaded(self, client: Redis) -> bool:
        return bool((await client.script_exists(self.sha))[0])


class Library:
    """The routing functions library, loaded once per Redis."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.code, self.digest = routing_library()
        self.name = "router_" + self.digest

    async def load(self, client: Redis | None = None) -> None:
        try:
            await (client or self.client).function_load(self.code)
        except ResponseError as exc:
            if "already exists" not in str(exc):  # another replica loaded it first
                raise

    async def loaded(self, client: Redis) -> bool:
        return bool(await client.function_list(library=self.name))


class Function:
    """One routing operation of the library, called with FCALL."""

    def __init__(self, library: Library, name: str) -> None:
        self.library = library
        self.fname = f"{name}_{library.digest}"

    def queue(self, pipe: Pipeline, keys: Sequence[str], args: Sequence[Any]) -> None:
        pipe.fcall(self.fname, len(keys), *keys, *args)

    async def __call__(
        self, keys: Sequence[str] = (), args: Sequence[Any] = (), client: Redis | None = None
    ) -> Any:
        c = client or self.library.client
        try:
            return await c.fcall(self.fname, len(keys), *keys, *args)
        except ResponseError as exc:
            if not missing(exc):
                raise
        await self.library.load(c)
        return await c.fcall(self.fname, len(keys), *keys, *args)


class Scripts:
    """Every routing function and script, by name."""

    def __init__(self, client: Redis) -> None:
        self.library = Library(client)
        self.scripts: dict[str, Script] = {}
        for name in TIMER_SCRIPTS:
            self.scripts[name] = Script.register(client, _read("sla", name))
        for name in STANDALONE_SCRIPTS:
            self.scripts[name] = Script.register(client, _read("router", name))
        self.by_name: dict[str, Lua] = {n: Function(self.library, n) for n in ROUTING_SCRIPTS}
        self.by_name.update(self.scripts)

    def __getitem__(self, name: str) -> Lua:
        return self.by_name[name]

    async def load_all(self, client: Redis) -> None:
        """Loads everything up front so /readyz can report it loaded."""
        await self.library.load(client)
        for script in self.scripts.values():
            await script.load(client)

    async def loaded(self, client: Redis) -> bool:
        """Is every function and script in this Redis?"""
        if not await self.library.loaded(client):
            return False
        shas = [s.sha for s in self.scripts.values()]
        return all(await client.script_exists(*shas))
