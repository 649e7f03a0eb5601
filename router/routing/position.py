"""A waiting contact's place in its pools and its expected wait (read only).

The places come from one MULTI/EXEC of ZCOUNT / ZRANGEBYSCORE over every
channel queue of every pool the contact waits in: one snapshot, consistent
with each other, taken between two routing decisions. The service figures
(answers of the last 15 minutes, agents signed in, handle time) are read
around it without a transaction: they move slowly and only scale the wait.
"""

from __future__ import annotations

from typing import Literal, cast

from router.routing.config import RoutingConfig
from router.routing.model import PoolPosition, PositionOut
from router.runtime.errors import Conflict, NotFound
from router.store.keys import WsKeys
from router.store.shards import Shards

WINDOW_MINUTES = 15  # the `15m` window of router/wfm/stats.py


async def contact_position(
    shards: Shards, cfg: RoutingConfig, ws_name: str, cid: str
) -> PositionOut:
    keys = WsKeys(ws_name)
    client = shards.of(keys.tag)
    pipe = client.pipeline(transaction=False)
    pipe.time()
    fields = ("id", "st", "ch", "rank", "enq", "restored", "tgt", "stages", "stage", "off")
    pipe.hmget(keys.contact(cid), *fields)
    (secs, micros), row = await pipe.execute()
    known, state, channel, rank, enq, restored, target, stages, stage, off = row
    if not known or restored:
        raise NotFound(f"contact {cid!r} does not exist", field="contact_id")
    if state != "queued":
        raise Conflict(f"contact is not waiting (it is {state})", state=state, field="contact_id")
    now_ms = secs * 1000 + micros // 1000
    waited = max(0, now_ms - int(float(enq))) / 1000
    # how far ahead of an arrival at the same moment it ranks, in seconds:
    # later arrivals with a larger offset than this still go before it
    lead = float(off or 0) / 1000 + waited
    pools = [] if target else _reached(stages or "", int(stage or "1"), cfg)
    places = await _places(shards, keys, cfg, pools, rank, cid)
    out = [
        await _service(shards, keys, cfg, p, place, now_ms, lead)
        for p, place in zip(pools, places, strict=True)
    ]
    return PositionOut(
        contact_id=cid,
        state=state,
        channel=channel,
        waited=round(waited, 3),
        expected_wait=min((p.expected_wait for p in out), default=None),
        pools=out,
    )


def _reached(stages: str, stage: int, cfg: RoutingConfig) -> list[str]:
    """Pools of the stages reached so far (router/routing/lua/lib/40_contacts.lua)."""
    out: list[str] = []
    for part in [s for s in stages.split("|") if s][:stage]:
        out += [p for p in part.partition(":")[2].split(",") if p not in out and p in cfg.pools]
    return out


async def _places(
    shards: Shards, keys: WsKeys, cfg: RoutingConfig, pools: list[str], rank: str, cid: str
) -> list[tuple[int, int]]:
    """(place, waiting) per pool: contacts ranked before it across the pool's channels."""
    pipe = shards.of(keys.tag).pipeline(transaction=True)
    for p in pools:
        for ch in cfg.pools[p].channels:
            pipe.zcount(keys.queue(p, ch), "-inf", f"({rank}")
            pipe.zrangebyscore(keys.queue(p, ch), rank, rank)
            pipe.zcard(keys.queue(p, ch))
    res = await pipe.execute() if pools else []
    out: list[tuple[int, int]] = []
    i = 0
    for p in pools:
        ahead = waiting = 0
        for _ in cfg.pools[p].channels:
            before, ties, size = res[i : i + 3]
            ahead += int(before) + sum(1 for m in ties if m < cid)
            waiting += int(size)
            i += 3
        out.append((ahead + 1, waiting))
    return out


def _span(per_minute: list[int], minute: int, now_ms: int) -> float:
    """Seconds since the start of the oldest minute with a count, at least 60:
    a pool that started answering (or taking arrivals) 2 minutes ago is not
    spread over 15."""
    first = next((i for i, n in enumerate(per_minute) if n), WINDOW_MINUTES - 1)
    start_ms = (minute - WINDOW_MINUTES + 1 + first) * 60_000
    return round(max(60.0, (now_ms - start_ms) / 1000), 3)


def expected_wait(place: int, per_answer: float, overtaking: list[tuple[float, float]]) -> float:
    """The least W with W = (place + overtakers(W)) * per_answer, where
    overtakers(W) = sum(rate * min(W, window)) over `overtaking` (rate, window):
    arrivals at `rate` a second rank ahead of the contact while they come within
    `window` seconds (their offset exceeds its own by more than it has waited).
    The right side rises with W and is bounded, so iterating from place *
    per_answer climbs to the least fixed point."""
    wait = place * per_answer
    for _ in range(200):
        nxt = (place + sum(rate * min(wait, window) for rate, window in overtaking)) * per_answer
        if nxt - wait < 1e-4:
            return nxt
        wait = nxt
    return wait


async def _service(
    shards: Shards,
    keys: WsKeys,
    cfg: RoutingConfig,
    pool: str,
    place: tuple[int, int],
    now_ms: int,
    lead: float,
) -> PoolPosition:
    client = shards.of(keys.tag)
    minute = now_ms // 60_000
    pipe = client.pipeline(transaction=False)
    for m in range(minute - WINDOW_MINUTES + 1, minute + 1):
        pipe.hgetall(keys.pool_minute(pool, m))
    pipe.hget(keys.pool_stats(pool), "aht")
    pipe.smembers(keys.members(pool))
    res = await pipe.execute()
    minutes = cast(list[dict[str, str]], res[:WINDOW_MINUTES])  # oldest first
    per_minute = [int(c.get("answered", 0)) for c in minutes]
    answered = sum(per_minute)
    observed = _span(per_minute, minute, now_ms)  # as answered
    arrivals_observed = _span([int(c.get("arrived", 0)) for c in minutes], minute, now_ms)
    ahead_by: dict[float, int] = {}  # arrivals by their offset in seconds
    for counts in minutes:
        for field, count in counts.items():
            if field.startswith("ao."):
                ahead_by[float(field[3:])] = ahead_by.get(float(field[3:]), 0) + int(count)
    overtaking = [
        (count / arrivals_observed, offset - lead)
        for offset, count in ahead_by.items()
        if offset > lead
    ]
    aht_raw, members = res[WINDOW_MINUTES:]
    handle_time = float(aht_raw) / 1000 if aht_raw else cfg.pools[pool].handle_time
    pipe = client.pipeline(transaction=False)
    ids = sorted(cast(set[str], members))
    for aid in ids:
        pipe.hget(keys.agent(aid), "st")
    states = await pipe.execute() if ids else []
    signed_in = sum(1 for st in states if st and st != "offline")
    n = place[0]
    basis: Literal["recent_service", "handle_time"]
    if answered:
        basis, per_answer = "recent_service", observed / answered
    else:
        basis, per_answer = "handle_time", handle_time / max(1, signed_in)
    wait = expected_wait(n, per_answer, overtaking)
    overtakers = sum(rate * min(wait, window) for rate, window in overtaking)
    return PoolPosition(
        pool=pool,
        place=n,
        ahead=n - 1,
        waiting=place[1],
        expected_wait=round(wait, 3),
        basis=basis,
        answered_recently=answered,
        observed=observed if answered else None,
        agents_signed_in=signed_in,
        handle_time=handle_time,
        overtakers=round(overtakers, 3),
        arrivals_observed=arrivals_observed if ahead_by else None,
    )
