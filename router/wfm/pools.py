"""Live pool statistics read from Redis (supervisor reads, not the hot path).

They still run on the event loop that serves the hot path: a floor of 5,000
agents read pool by pool was 25,000 commands packed in one go, which held the
loop for ~300 ms at every metrics scrape. Agents are read once for all pools
(`agent_rows`, each agent's state, load, capacity and reason) by a script,
`CHUNK` agents a call, awaiting between calls, so other requests run in between.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import cast

from msgspec import Struct
from redis.asyncio import Redis

from router.routing.config import Pool
from router.runtime.errors import NotFound
from router.store.keys import WsKeys
from router.store.scripts import Script, read_lua

CHUNK = 500  # agents per script call (~0.5 ms of Redis)
AGENT_ROWS = Script(read_lua("router.wfm", "agent_rows"))
# an agent's (state, load, capacity, not-ready reason) as stored
AgentRow = tuple[str | None, str | None, str | None, str | None]


async def agent_rows(client: Redis, ws_name: str, ids: Iterable[str]) -> dict[str, AgentRow]:
    """The agents' rows, CHUNK agents a script call."""
    ws = WsKeys(ws_name)
    order = sorted(ids)
    out: dict[str, AgentRow] = {}
    for i in range(0, len(order), CHUNK):
        part = order[i : i + CHUNK]
        flat = await AGENT_ROWS([ws.agent(aid) for aid in part], [], client=client)
        for n, aid in enumerate(part):
            st, ld, cp, reason = flat[4 * n : 4 * n + 4]
            out[aid] = (st, ld, cp, reason)
    return out


async def all_agent_rows(client: Redis, ws_name: str) -> dict[str, AgentRow]:
    """Every agent of the workspace, for statistics over several pools."""
    ids = cast(set[str], await client.smembers(WsKeys(ws_name).agents))
    return await agent_rows(client, ws_name, ids)


class PoolStats(Struct, frozen=True):
    id: str
    channels: list[str]
    strategy: str
    depth: int
    depth_by_channel: dict[str, int]
    longest_wait: float
    agents: int
    agents_by_state: dict[str, int]
    ready_agents: int
    occupancy: float
    average_handle_time: float
    estimated_wait: float | None
    service_level_target: dict[str, float]


_GONE: AgentRow = (None, None, None, None)  # a member deleted since the read


async def pool_stats(
    client: Redis,
    ws_name: str,
    pool_id: str,
    pool: Pool | None,
    agents: Mapping[str, AgentRow] | None = None,
) -> PoolStats:
    """`agents`: every agent's row read once (`all_agent_rows`) when several
    pools are wanted; else the pool's members are read."""
    if pool is None:
        raise NotFound(f"pool {pool_id!r} does not exist", field="pool_id")
    ws = WsKeys(ws_name)
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.zcard(ws.queue_age(pool_id))
    pipe.zrange(ws.queue_age(pool_id), 0, 0, withscores=True)
    pipe.smembers(ws.members(pool_id))
    pipe.hget(ws.pool_stats(pool_id), "aht")
    for ch in pool.channels:
        pipe.zcard(ws.queue(pool_id, ch))
        pipe.zcard(ws.ready(pool_id, ch))
    res = await pipe.execute()
    (secs, micros), depth, oldest, members, aht_raw = res[:5]
    now_ms = secs * 1000 + micros // 1000
    per_channel = res[5:]
    by_channel = {ch: per_channel[2 * i] for i, ch in enumerate(pool.channels)}
    ready = max((per_channel[2 * i + 1] for i in range(len(pool.channels))), default=0)
    ids = sorted(members)
    if agents is None:
        agents = await agent_rows(client, ws_name, ids)
    by_state: dict[str, int] = {}
    load = cap = staffed = 0
    for st, ld, cp, _ in (agents.get(aid, _GONE) for aid in ids):
        state = st or "offline"
        if state == "available" and int(ld or 0) > 0:
            state = "busy"
        by_state[state] = by_state.get(state, 0) + 1
        if st and st != "offline":
            staffed += 1
            load += int(ld or 0)
            cap += int(cp or 0)
    aht_ms = float(aht_raw) if aht_raw else pool.handle_time * 1000
    if ready:
        ewt: float | None = 0.0
    elif staffed:
        ewt = (depth + 1) * aht_ms / staffed / 1000
    else:
        ewt = None  # nobody staffed: no estimate
    return PoolStats(
        id=pool_id,
        channels=list(pool.channels),
        strategy=pool.strategy,
        depth=depth,
        depth_by_channel=by_channel,
        longest_wait=max(0.0, (now_ms - oldest[0][1]) / 1000) if oldest else 0.0,
        agents=len(ids),
        agents_by_state=by_state,
        ready_agents=ready,
        occupancy=round(load / cap, 4) if cap else 0.0,
        average_handle_time=round(aht_ms / 1000, 3),
        estimated_wait=ewt,
        service_level_target={
            "percent": pool.service_level.percent,
            "seconds": pool.service_level.seconds,
        },
    )
