"""Live pool statistics read from Redis (supervisor reads, not the hot path)."""

from __future__ import annotations

from msgspec import Struct
from redis.asyncio import Redis

from router.routing.config import Pool
from router.runtime.errors import NotFound
from router.store.keys import WsKeys


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


async def pool_stats(client: Redis, ws_name: str, pool_id: str, pool: Pool | None) -> PoolStats:
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
    pipe = client.pipeline(transaction=False)
    ids = sorted(members)
    for aid in ids:
        pipe.hmget(ws.agent(aid), "st", "load", "cap")
    rows = await pipe.execute() if ids else []
    by_state: dict[str, int] = {}
    load = cap = staffed = 0
    for st, ld, cp in rows:
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
