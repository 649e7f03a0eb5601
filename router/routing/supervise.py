"""A supervisor's hands: the agents list, a pool's waiting contacts, and
handing a waiting contact to a named agent.

Reads are plain Redis reads (a page is a snapshot, not a transaction); the
one state change here, `assign`, is one Lua function call (`lua/assign.lua`).
Who may see or do what is the security layer's (`router/security/access.py`):
these functions take what it decided (`visible`) and never mask (the API
presents contacts by caller, `router/security/privacy.py`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import cast

from router.routing.engine import Engine
from router.routing.model import (
    AgentListItem,
    AgentPage,
    ContactOut,
    HeldContact,
    WaitingContact,
    WaitingPage,
)
from router.routing.records import agent_out, contact_out, pairs
from router.runtime.errors import Conflict, NotFound
from router.store.keys import WsKeys

LIMIT_DEFAULT = 50
LIMIT_MAX = 500
# agents read per round trip while filling a page
_CHUNK = 200

# (team, supervisor) of an agent -> may the caller see it
Visible = Callable[[str | None, str | None], bool]


async def _now(engine: Engine, ws: str) -> float:
    """Redis TIME in seconds: the clock every script ranks and stamps with."""
    secs, micros = await engine.client(ws).time()
    return int(secs) + int(micros) / 1_000_000


async def list_agents(
    engine: Engine,
    ws: str,
    visible: Visible,
    *,
    cursor: str | None = None,
    limit: int = LIMIT_DEFAULT,
    state: str | None = None,
    team: str | None = None,
    pool: str | None = None,
) -> AgentPage:
    """Agents by id after `cursor`, those `visible` and matching the filters;
    every agent appears on exactly one page while the set does not change."""
    cfg = (await engine.configs.get(ws)).config
    keys, client = WsKeys(ws), engine.client(ws)
    if pool is not None and pool not in cfg.pools:
        raise NotFound(f"pool {pool!r} does not exist", field="pool")
    source = keys.members(pool) if pool is not None else keys.agents
    ids = sorted(cast(set[str], await client.smembers(source)))
    ids = [i for i in ids if cursor is None or i > cursor]
    now = await _now(engine, ws)
    found: list[dict[str, str]] = []
    more = False
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        pipe = client.pipeline(transaction=False)
        for aid in chunk:
            pipe.hgetall(keys.agent(aid))
        for raw in cast(list[dict[str, str]], await pipe.execute()):
            if not raw or not visible(raw.get("team") or None, raw.get("sup") or None):
                continue
            if (state is not None and raw.get("st") != state) or (
                team is not None and raw.get("team") != team
            ):
                continue
            if len(found) == limit:  # one more matches: there is a next page
                more = True
                break
            found.append(raw)
        if more:
            break
    items = await _list_items(engine, ws, found, now)
    return AgentPage(agents=items, next=items[-1].id if more else None)


async def _list_items(
    engine: Engine, ws: str, raws: list[dict[str, str]], now: float
) -> list[AgentListItem]:
    """The page's agents with the state of each contact they hold (one round trip)."""
    agents = [agent_out(raw) for raw in raws]
    pipe = engine.client(ws).pipeline(transaction=False)
    for agent in agents:
        for cid in agent.contacts:
            pipe.hget(WsKeys(ws).contact(cid), "st")
    states = iter(cast(list[str | None], await pipe.execute()))
    out = []
    for raw, agent in zip(raws, agents, strict=True):
        since = int(raw["since"]) / 1000 if raw.get("since") else None
        held = [HeldContact(id=c, state=next(states) or "unknown") for c in agent.contacts]
        out.append(
            AgentListItem(
                id=agent.id,
                state=agent.state,
                reason=agent.reason,
                since=since,
                time_in_state=round(max(now - since, 0.0), 3) if since is not None else None,
                load=agent.load,
                capacity=agent.capacity,
                team=agent.team,
                supervisor=agent.supervisor,
                pools=agent.pools,
                contacts=held,
            )
        )
    return out


def parse_rank_cursor(cursor: str) -> tuple[int, str] | None:
    """`<rank ms>:<contact id>` of the last contact of the previous page."""
    rank, sep, cid = cursor.partition(":")
    if not sep or not cid or not rank.lstrip("-").isdigit() or len(rank) > 21:
        return None
    return int(rank), cid


async def _after(
    engine: Engine, key: str, ws: str, cursor: tuple[int, str] | None, want: int
) -> list[tuple[int, str]]:
    """Up to `want` (rank, id) of one queue after `cursor`, in the sorted set's
    own order (rank, then id), which is the order pages are cut in."""
    client = engine.client(ws)
    low = cursor[0] if cursor else "-inf"
    got: list[tuple[int, str]] = []
    offset = 0
    while len(got) < want:
        # ties at the cursor's rank are read past, a page of them at a time
        items = cast(
            list[tuple[str, float]],
            await client.zrangebyscore(key, low, "+inf", offset, want, withscores=True),
        )
        if not items:
            break
        offset += len(items)
        got += [(int(s), m) for m, s in items if cursor is None or (int(s), m) > cursor]
    return got[:want]


async def waiting(
    engine: Engine,
    ws: str,
    pool: str,
    *,
    cursor: tuple[int, str] | None = None,
    limit: int = LIMIT_DEFAULT,
) -> WaitingPage:
    """The contacts waiting in `pool` in rank order (every channel's queue
    merged by rank, ties by id), after `cursor`; personal fields unmasked."""
    cfg = (await engine.configs.get(ws)).config
    spec = cfg.pools.get(pool)
    if spec is None:
        raise NotFound(f"pool {pool!r} does not exist", field="pool_id")
    keys = WsKeys(ws)
    queues = [
        await _after(engine, keys.queue(pool, ch), ws, cursor, limit + 1) for ch in spec.channels
    ]
    merged = list(heapq.merge(*queues))[: limit + 1]
    page, more = merged[:limit], len(merged) > limit
    pipe = engine.client(ws).pipeline(transaction=False)
    for _, cid in page:
        pipe.hgetall(keys.contact(cid))
    rows = cast(list[dict[str, str]], await pipe.execute())
    now = await _now(engine, ws)
    position = await _position(engine, ws, pool, spec.channels, cursor)
    out: list[WaitingContact] = []
    for raw in rows:
        if not raw:  # ended between the two reads
            continue
        position += 1
        out.append(_waiting_item(contact_out(raw, False), position, now))
    last = page[-1] if page else None
    return WaitingPage(
        pool=pool, waiting=out, next=f"{last[0]}:{last[1]}" if more and last else None
    )


async def _position(
    engine: Engine, ws: str, pool: str, channels: list[str], cursor: tuple[int, str] | None
) -> int:
    """Contacts ahead of the page: those ranked at or before the cursor."""
    if cursor is None:
        return 0
    client, keys = engine.client(ws), WsKeys(ws)
    ahead = 0
    for ch in channels:
        key = keys.queue(pool, ch)
        ahead += int(await client.zcount(key, "-inf", f"({cursor[0]}"))
        ties = cast(list[str], await client.zrangebyscore(key, cursor[0], cursor[0]))
        ahead += sum(1 for m in ties if m <= cursor[1])
    return ahead


def _waiting_item(c: ContactOut, position: int, now: float) -> WaitingContact:
    return WaitingContact(
        position=position,
        id=c.id,
        channel=c.channel,
        tier=c.tier,
        intent=c.intent,
        customer_id=c.customer_id,
        rank=c.rank,
        priority_offset=c.priority_offset,
        enqueued_at=c.enqueued_at,
        waited=round(max(now - c.enqueued_at, 0.0), 3),
        stage=c.stage,
        pools=c.pools,
        sla=c.sla,
        personal=c.personal,
    )


async def assign(engine: Engine, ws: str, cid: str, aid: str, actor: str) -> ContactOut:
    """Offers waiting contact `cid` to agent `aid` now (assign.lua), or says
    why not: 409 naming the field (`agent_id` with the agent's state, `skills`,
    `channel`, `capacity`) or, for a contact not waiting, its state."""
    await engine.configs.get(ws)
    keys = WsKeys(ws)
    # through the engine's runner: timed with the other decisions, by operation
    res = await engine._run("assign", keys, keys.contact(cid), [actor, aid])
    code = res[0]
    if code == -1:
        raise NotFound(f"contact {cid!r} does not exist", field="contact_id")
    if code == -2:
        raise Conflict(f"cannot assign: {res[2]}", state=res[1], field="contact_id")
    if code == -3:
        raise Conflict(f"cannot assign: {res[3]}", state=res[2], field=res[1])
    if code == -5:
        raise NotFound(f"agent {aid!r} does not exist", field="agent_id")
    return contact_out(pairs(res[1]), False)
