"""Lua scripts, read once from the package and registered with redis-py.

Each routing script is `lib.lua` followed by the script's own file, so shared
routing logic lives in one place while each operation stays one atomic script.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

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


class Scripts:
    """Registered scripts by name; redis-py's Script handles EVALSHA/NOSCRIPT."""

    def __init__(self, client: Redis) -> None:
        lib = _read("router", "lib")
        self.by_name: dict[str, AsyncScript] = {}
        for name in ROUTING_SCRIPTS:
            self.by_name[name] = client.register_script(lib + "\n" + _read("router", name))
        for name in TIMER_SCRIPTS:
            self.by_name[name] = client.register_script(_read("sla", name))
        for name in STANDALONE_SCRIPTS:
            self.by_name[name] = client.register_script(_read("router", name))

    def __getitem__(self, name: str) -> AsyncScript:
        return self.by_name[name]

    async def load_all(self, client: Redis) -> None:
        """Loads every script up front so /readyz can report them loaded."""
        for script in self.by_name.values():
            sha: Any = await client.script_load(script.script)
            script.sha = sha
