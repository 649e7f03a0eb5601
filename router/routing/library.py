"""The routing operations as one Redis Functions library, and every script by name.

The library is the shared routing logic (`lua/lib/*.lua`, sections joined in
the order of `LIB_SECTIONS`) followed by each operation's file, wrapped as a
registered function. A library's top level runs once, when
it is loaded, so the ~70 local functions and constant tables of the shared code are
built once rather than on every call; with EVAL they were rebuilt per call,
which measured ~30 µs of Redis time a call (`benchmarks/redis_ceiling.py`).
Each operation stays one atomic call.

Library and function names carry a digest of the code: replicas of two
versions during a rolling upgrade each call their own code, as EVALSHA did.
Redis keeps functions in its RDB/AOF and replicates them; when they are still
missing (a flushed or brand-new server) a call loads the library and retries.

The timer scripts (`sla/lua`) and the read-only `config_versions` and
`config_version` stay EVALSHA scripts: they need nothing from the library.
"""

from __future__ import annotations

from hashlib import sha256
from importlib import resources

from redis.asyncio import Redis

from router.store.scripts import Function, Library, Lua, Script, read_lua

PACKAGE = "router.routing"
ROUTING_SCRIPTS = (
    "create",
    "agent_upsert",
    "agent_state",
    "accept",
    "reject",
    "complete",
    "abandon",
    "transfer",
    "assign",
    "fire",
    "config_put",
    "resolve",
    "respond",
    "sla_pause",
    "sla_resume",
    "sla_replan",
    "rate",
    "restore",
    "update",
    "callback",
    "callback_attempt",
    "agent_view",
)
# Functions whose effect no one is answered for: `agent_view` only reads (a
# write guarantee's WAIT would only delay a desktop's view). Every other: with a write
# guarantee set, every caller hears of its change only once the replicas have
# it. Timer effects are durable too: an offer a timer made is shown to a
# desktop at once, and must not vanish in a failover. (`rate` is the rating,
# whose gateway is answered and whose low score starts follow-ups; it was
# once listed here, mistaken for the rate limiter's count, which is an
# EVALSHA script outside this library and never waits.)
NOT_DURABLE: frozenset[str] = frozenset({"agent_view"})
# Functions that answer with the contact they acted on: their KEYS[2] (`Function.record`,
# read after the call in the same transaction; lib/80_lifecycle.lua contact_reply).
CONTACT_REPLIES: frozenset[str] = frozenset(
    {"create", "accept", "reject", "complete", "abandon", "transfer", "assign", "resolve",
     "respond", "sla_pause", "sla_resume", "sla_replan", "rate", "update", "callback",
     "callback_attempt"}
)  # fmt: skip
TIMER_SCRIPTS = ("claim", "handback", "ack")
# Read-only router scripts that need nothing from the routing library.
STANDALONE_SCRIPTS = ("config_versions", "config_version")


# The shared code, in the order it is joined: Lua locals must be defined before
# the functions that call them, so a section only uses those above it.
LIB_SECTIONS = (
    "00_state",  # per-call state, key builders, small helpers
    "10_runtime",  # the runtime hash: channels, pools, config numbers
    "20_events",  # events, timelines, statistics, agent notifications
    "30_agents",  # agent records, readiness per pool and channel
    "40_contacts",  # contact records, queues, timers
    "50_sla",  # SLA clocks: start, stop, steps, notify targets, follow-ups
    "60_selection",  # eligibility, ranking, offers, selecting an agent
    "70_pull",  # a freed agent takes the best waiting contact; bullseye stages
    "75_handoff",  # bot hand-offs: counts, the agent's disposition
    "80_lifecycle",  # endings, re-queues, holders
    "85_callbacks",  # callbacks: held for a window or a retry, window missed
    "90_begin",  # the start of every function call
)


def shared_code() -> str:
    """The library's top level: the routing logic every operation calls."""
    lib = resources.files(PACKAGE).joinpath("lua", "lib")
    return "\n".join(lib.joinpath(name + ".lua").read_text("utf-8") for name in LIB_SECTIONS)


def routing_library() -> tuple[str, str]:
    """The library's source and the digest its names carry."""
    lib = shared_code()
    bodies = [(name, read_lua(PACKAGE, name)) for name in ROUTING_SCRIPTS]
    digest = sha256("\n".join([lib, *(b for _, b in bodies)]).encode()).hexdigest()[:12]
    parts = [f"#!lua name=router_{digest}", lib]
    for name, body in bodies:
        # The body is a function of its own so that its every `return` passes
        # through finish_call(), which publishes the call's agent notifications.
        parts.append(
            f"local function op_{name}()\n{body}\nend\n"
            f"redis.register_function('{name}_{digest}', function(keys_, argv_)\n"
            f"begin(keys_, argv_)\nreturn finish_call(op_{name}())\nend)"
        )
    return "\n".join(parts) + "\n", digest


class Scripts:
    """Every routing function and script, by name."""

    def __init__(self) -> None:
        code, digest = routing_library()
        self.library = Library("router_" + digest, code, digest)
        self.scripts: dict[str, Script] = {}
        for name in TIMER_SCRIPTS:
            self.scripts[name] = Script(read_lua("sla", name))
        for name in STANDALONE_SCRIPTS:
            self.scripts[name] = Script(read_lua(PACKAGE, name))
        self.by_name: dict[str, Lua] = {
            n: Function(
                self.library,
                n,
                durable=n not in NOT_DURABLE,
                record=1 if n in CONTACT_REPLIES else None,
            )
            for n in ROUTING_SCRIPTS
        }
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
