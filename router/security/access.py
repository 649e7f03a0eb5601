"""Scopes: which agents and contacts a caller may see and act on.

- **agent**: only itself (`/agents/{id}/...` with `{id}` = its token's subject),
  contact actions only with its own `agent_id`, and only contacts that are or
  were offered or assigned to it.
- **supervisor**: agents of its teams (the agent's `team` in the token's
  `teams`, or the agent's `supervisor` = the token's subject) and contacts
  handled by them (offered or assigned, now or before); a static supervisor
  token, or `teams: "*"`, sees every team.
- **gateway**: contacts it created (their `gateway`), and acts on those alone.
- **admin**: everything.

A team-scoped supervisor's pools are those at least one agent of its teams is
a member of (pools belong to no team; their members do): it sees their queues
(`GET /pools/{id}/waiting`, masked) and may move the contacts waiting there
(`assign`, `transfer`) even before anyone of its teams handled them (or,
transferred to a named agent, when that agent is of its teams). Reading such a
contact in full (`GET /contacts/{id}`, with its timeline) still needs one of
its teams to have handled it.

A resource outside the caller's scope is refused with 403 whether or not it
exists, with the same body either way, so a refusal says nothing about other
people's agents or contacts. "Before" comes from the contact's timeline, which
lives and expires with its record; in an archived workspace, whose contacts keep
no timeline in Redis, from the holders the record keeps (`hd`), and for a
contact that has left Redis from its archived timeline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

import msgspec
from redis.asyncio import Redis

from router.routing.engine import Engine
from router.routing.model import AgentIn, ContactOut
from router.runtime.errors import Conflict, Forbidden, NotFound, RouterError
from router.runtime.settings import Token
from router.store.keys import WsKeys

ContactLookup = Callable[[str, str], Awaitable[ContactOut]]

# Timeline events that put a contact in an agent's hands.
_HANDLED = frozenset({"contact.offered", "contact.assigned"})


class _Step(msgspec.Struct):
    type: str
    agent: str | None = None


_STEP = msgspec.json.Decoder(_Step)


def unrestricted(tok: Token) -> bool:
    return tok.role == "admin" or (tok.role == "supervisor" and tok.teams is None)


def in_team_scope(tok: Token, team: str | None, supervisor: str | None) -> bool:
    if tok.teams is None:
        return True
    return bool(team and team in tok.teams) or (supervisor is not None and supervisor == tok.name)


def agent_denied(tok: Token, aid: str) -> Forbidden:
    if tok.role == "agent":
        return Forbidden(
            f"this token acts only as agent {tok.name!r}, not {aid!r}", field="agent_id"
        )
    return Forbidden(f"agent {aid!r} is not in this supervisor's teams", field="agent_id")


def contact_denied(tok: Token, cid: str) -> Forbidden:
    why = {
        "agent": f"was never offered or assigned to agent {tok.name!r}",
        "gateway": f"was not created by gateway {tok.name!r}",
    }.get(tok.role, "was not handled by an agent of this supervisor's teams")
    return Forbidden(f"contact {cid!r} {why}", field="contact_id")


async def _agents_in_scope(client: Redis, ws: WsKeys, tok: Token, aids: list[str]) -> bool:
    if not aids:
        return False
    pipe = client.pipeline(transaction=False)
    for aid in aids:
        pipe.hmget(ws.agent(aid), "team", "sup")
    rows = await pipe.execute()
    return any(in_team_scope(tok, team, sup) for team, sup in rows)


async def check_agent(
    tok: Token, engine: Engine, ws: str, aid: str, new: AgentIn | None = None
) -> None:
    """Refuses (403) an agent route outside the caller's scope; `new` is the body
    of a PUT (a supervisor may not move an agent into or out of its teams)."""
    if unrestricted(tok):
        return
    if tok.role == "agent":
        if aid != tok.name:
            raise agent_denied(tok, aid)
        return
    if tok.role != "supervisor":
        raise agent_denied(tok, aid)
    row = await engine.client(ws).hmget(WsKeys(ws).agent(aid), "id", "team", "sup")
    known, team, sup = cast(list[str | None], row)
    if known is not None and not in_team_scope(tok, team, sup):
        raise agent_denied(tok, aid)
    if new is not None:
        if not in_team_scope(tok, new.team, new.supervisor):
            raise agent_denied(tok, aid)
    elif known is None:  # same refusal as for an agent of another team
        raise agent_denied(tok, aid)


def pool_denied(pool: str, field: str = "pool_id") -> Forbidden:
    return Forbidden(f"pool {pool!r} is served by no agent of this supervisor's teams", field=field)


async def pools_in_scope(client: Redis, ws: WsKeys, tok: Token, pools: list[str]) -> bool:
    """Is any of the pools served by (has as a member) an agent of the caller's teams?"""
    if unrestricted(tok):
        return True
    for pool in pools:
        members = sorted(cast(set[str], await client.smembers(ws.members(pool))))
        if await _agents_in_scope(client, ws, tok, members):
            return True
    return False


async def check_pool(tok: Token, engine: Engine, ws: str, pool: str) -> None:
    """Refuses (403) a pool's queue outside a team-scoped supervisor's pools,
    with the same body whether or not the pool exists."""
    if unrestricted(tok):
        return
    await engine.configs.get(ws)  # an unknown workspace is a 404 first
    if tok.role != "supervisor" or not await pools_in_scope(
        engine.client(ws), WsKeys(ws), tok, [pool]
    ):
        raise pool_denied(pool)


def _reached(stages: str, stage: int) -> list[str]:
    """Pools of the stages a contact reached ("after_ms:p1,p2|after_ms:p3")."""
    out: list[str] = []
    for part in [p for p in stages.split("|") if p][:stage]:
        out += [p for p in part.partition(":")[2].split(",") if p and p not in out]
    return out


async def _waiting_in_scope(client: Redis, ws: WsKeys, tok: Token, cid: str) -> bool:
    """A queued contact waiting in one of the supervisor's pools (or transferred
    to an agent of its teams)."""
    row = await client.hmget(ws.contact(cid), "st", "stages", "stage", "tgt")
    st, stages, stage, tgt = cast(list[str | None], row)
    if tok.role != "supervisor" or st != "queued":
        return False
    if tgt:
        return await _agents_in_scope(client, ws, tok, [tgt])
    return await pools_in_scope(client, ws, tok, _reached(stages or "", int(stage or "1")))


def handlers_of(agent: str | None, timeline: list[str]) -> set[str]:
    """Agents the contact is or was offered or assigned to."""
    out = {agent} if agent else set()
    for raw in timeline:
        step = _STEP.decode(raw)
        if step.type in _HANDLED and step.agent:
            out.add(step.agent)
    return out


async def _may_see(
    client: Redis, ws: WsKeys, tok: Token, gateway: str | None, handlers: set[str]
) -> bool:
    if unrestricted(tok):
        return True
    if tok.role == "gateway":
        return gateway is not None and gateway == tok.name
    if tok.role == "agent":
        return tok.name in handlers
    return tok.role == "supervisor" and await _agents_in_scope(client, ws, tok, sorted(handlers))


async def visible_contact(
    tok: Token, engine: Engine, ws: str, cid: str, lookup: ContactLookup | None = None
) -> ContactOut:
    """GET /contacts/{id}: the contact (with timeline) when the caller may see it.
    `lookup` finds it (default: in Redis; the app's also looks in the archive)."""
    try:
        contact = await (lookup or engine.get_contact)(ws, cid)
    except NotFound as exc:
        if exc.field == "contact_id" and not unrestricted(tok):
            raise contact_denied(tok, cid) from None
        raise
    if unrestricted(tok):
        return contact
    timeline = contact.timeline or []
    handlers = {contact.agent} if contact.agent else set()
    handlers |= {e.agent for e in timeline if e.type in _HANDLED and e.agent}
    if not await _may_see(engine.client(ws), WsKeys(ws), tok, contact.gateway, handlers):
        raise contact_denied(tok, cid)
    return contact


async def _read(
    client: Redis, ws: WsKeys, cid: str, history: bool
) -> tuple[bool, str | None, set[str]]:
    """(exists, creating gateway, handlers now and before) of a contact."""
    pipe = client.pipeline(transaction=False)
    pipe.hmget(ws.contact(cid), "id", "gw", "agent", "hd")
    if history:
        pipe.lrange(ws.timeline(cid), 0, -1)
    rows = await pipe.execute()
    known, gw, agent, held = rows[0]
    timeline = cast(list[str], rows[1]) if history else []
    handlers = handlers_of(agent, timeline)
    if history and held:  # an archived workspace keeps the holders, not a timeline
        handlers.update(held.split(","))
    return known is not None, gw, handlers


# A supervisor's actions on waiting work: allowed on a contact waiting in one
# of its pools, besides those its teams handled.
QUEUE_ACTIONS = frozenset({"assign", "transfer"})
# Actions whose body names the acting agent (`agent_id`).
AGENT_ACTIONS = frozenset({"accept", "reject", "complete", "respond", "callback_attempt"})


async def check_action(
    tok: Token, engine: Engine, ws: str, cid: str, action: str, agent_id: str | None
) -> None:
    """Before a contact action: refuses (403) what the caller may not do. An
    agent's own accept / reject / complete / respond needs no read: the script
    itself refuses a contact the agent does not hold (see `action_failed`)."""
    if unrestricted(tok):
        return
    await engine.configs.get(ws)  # an unknown workspace is a 404 first
    keys, client = WsKeys(ws), engine.client(ws)
    if tok.role == "agent":
        if action in AGENT_ACTIONS:
            if agent_id != tok.name:
                raise agent_denied(tok, agent_id or "")
            return
        _, _, holder = await _read(client, keys, cid, history=False)
        if tok.name not in holder:  # e.g. transfer: only the agent holding it now
            raise contact_denied(tok, cid)
        return
    if tok.role == "supervisor" and action in AGENT_ACTIONS and agent_id is not None:
        await check_agent(tok, engine, ws, agent_id)
    known, gw, handlers = await _read(client, keys, cid, history=tok.role == "supervisor")
    if known and await _may_see(client, keys, tok, gw, handlers):
        return
    if known and action in QUEUE_ACTIONS and await _waiting_in_scope(client, keys, tok, cid):
        return
    raise contact_denied(tok, cid)


async def action_failed(tok: Token, engine: Engine, ws: str, cid: str, exc: RouterError) -> None:
    """After an agent's action failed as unknown or held by someone else: a contact
    never in its hands is refused like any other (no hint it exists or its state)."""
    if tok.role != "agent" or not isinstance(exc, NotFound | Conflict):
        return
    if isinstance(exc, NotFound) and exc.field != "contact_id":
        return
    _, _, handlers = await _read(engine.client(ws), WsKeys(ws), cid, history=True)
    if tok.name not in handlers:
        raise contact_denied(tok, cid) from None
