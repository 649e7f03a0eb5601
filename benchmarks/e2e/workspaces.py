"""The workspaces: admission (ready agents) and agent-freed (queues behind busy agents)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import redis


def admission_config() -> dict[str, Any]:
    """tests/support/client.py small_config with offers that do not time out during a run."""
    return {
        "tiers": {"vip": {"priority_offset": 120}, "standard": {"priority_offset": 0}},
        "channels": {
            "voice": {"weight": 100, "offer_timeout": 3600, "wrap_up": 0},
            "chat": {"weight": 25, "offer_timeout": 3600, "wrap_up": 0},
        },
        "skills": ["cards", "loans"],
        "pools": {
            "cards": {"skills": [{"skill": "cards", "min": 1}], "channels": ["voice", "chat"]},
            "loans": {"skills": [{"skill": "loans", "min": 1}], "channels": ["voice", "chat"]},
        },
        "rules": [
            {"name": "loans", "when": {"intent": ["loan"]}, "stages": [{"pools": ["loans"]}]}
        ],
        "defaults": {"tier": "standard", "stages": [{"pools": ["cards"]}]},
    }


def freed_config(agents: int) -> dict[str, Any]:
    """One pool (and intent rule) per agent, so the loader knows which contact an agent
    is handed next: its own queue, in arrival order. Voice is auto-accepted with no
    wrap-up, so completing a contact frees the agent at once."""
    ids = [f"{i:03d}" for i in range(agents)]
    return {
        "tiers": {"standard": {"priority_offset": 0}},
        "channels": {
            "voice": {"weight": 100, "offer_timeout": 3600, "auto_accept": True, "wrap_up": 0}
        },
        "skills": [f"k{i}" for i in ids],
        "pools": {
            f"p{i}": {"skills": [{"skill": f"k{i}", "min": 1}], "channels": ["voice"]} for i in ids
        },
        "rules": [
            {"name": f"r{i}", "when": {"intent": [f"i{i}"]}, "stages": [{"pools": [f"p{i}"]}]}
            for i in ids
        ],
        "defaults": {"tier": "standard", "stages": []},
    }


async def _gather_chunks(coros: list[Any], chunk: int = 500) -> None:
    for i in range(0, len(coros), chunk):
        await asyncio.gather(*coros[i : i + chunk])


async def _setup(
    url: str,
    ws: str,
    cfg: dict[str, Any],
    agents: list[tuple[str, dict[str, int]]],
    contacts: list[tuple[str, str]],
) -> None:
    """Config, available agents, then contacts (id, intent) in order, through the engine."""
    from redis.asyncio import Redis

    from router.routing.engine import Engine
    from router.routing.model import AgentIn, AgentStateIn, ContactIn, Customer
    from router.routing.validation import parse_config
    from router.store.batch import ScriptBatcher
    from router.store.shards import Shards

    client = Redis.from_url(url, decode_responses=True, max_connections=64, socket_timeout=60)
    engine = Engine(Shards(client))
    try:
        await engine.scripts.load_all(client)
        await engine.put_config(ws, parse_config(json.dumps(cfg).encode()), "admin:bench")

        async def agent(aid: str, skills: dict[str, int]) -> None:
            await engine.upsert_agent(ws, aid, AgentIn(skills=skills, capacity=100), "admin:bench")
            await engine.set_agent_state(ws, aid, AgentStateIn(state="available"), "admin:bench")

        await _gather_chunks([agent(a, s) for a, s in agents])
        # Contacts must be admitted in order (an agent's queue is then its chain in
        # order: ranks tie within a millisecond and ids sort in order), so each chunk
        # is one pipeline and chunks go one after another. The router's batcher
        # splits a tick's calls into pipelines of 16 on several connections, which
        # Redis may run in any order: here a tick's calls go as one.
        engine.batcher = ScriptBatcher(engine.shards, chunk=512)
        for i in range(0, len(contacts), 500):
            await asyncio.gather(
                *(
                    engine.create_contact(
                        ws,
                        ContactIn(
                            id=cid,
                            channel="voice",
                            intent=intent,
                            customer=Customer(id="cu-" + cid),
                        ),
                        "gateway:bench",
                    )
                    for cid, intent in contacts[i : i + 500]
                )
            )
    finally:
        await engine.close()
        await client.aclose()


def setup_admission(url: str, ws: str, agents: int) -> None:
    asyncio.run(
        _setup(
            url, ws, admission_config(), [(f"adm-{i:05d}", {"cards": 5}) for i in range(agents)], []
        )
    )


def setup_freed(url: str, ws: str, agents: int, per_agent: int) -> None:
    contacts = [
        (f"{ws}-c-{a:04d}-{n:06d}", f"i{a:03d}") for n in range(per_agent) for a in range(agents)
    ]
    asyncio.run(
        _setup(
            url,
            ws,
            freed_config(agents),
            [(f"{ws}-a-{a:04d}", {f"k{a:03d}": 5}) for a in range(agents)],
            contacts,
        )
    )


def check_freed(r: redis.Redis, ws: str, agents: int) -> None:
    """Every agent holds its contact 0, and contact 1 heads its queue."""
    tag = "{ws:" + ws + "}"
    for a in range(agents):
        keys = cast("list[str]", r.hkeys(f"{tag}:a:{ws}-a-{a:04d}"))  # str: decode_responses
        held = [k for k in keys if k.startswith("h:")]
        head = r.zrange(f"{tag}:q:p{a:03d}:voice", 0, 0)
        if held != [f"h:{ws}-c-{a:04d}-000000"] or head != [f"{ws}-c-{a:04d}-000001"]:
            raise RuntimeError(f"freed setup: agent {a} holds {held}, queue head {head}")
