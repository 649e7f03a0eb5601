"""A supervisor's hands: list agents, see a pool's queue, hand a waiting contact
to a named agent. Scopes are `router/security/access.py`'s: a team-scoped
supervisor lists only its teams' agents, sees the queues of pools its teams
serve, and assigns contacts waiting there to agents of its teams."""

from __future__ import annotations

import re

from aiohttp import web

from router.api.appkeys import ENGINE, TOKEN
from router.api.common import ID_PATTERN, actor, body, json_response, path_id, roles
from router.routing import supervise
from router.routing.model import AgentStateName, AssignIn
from router.runtime.errors import FieldProblem, InvalidInput
from router.security.access import check_action, check_agent, check_pool, in_team_scope
from router.security.privacy import present, present_waiting

_STATES = frozenset(AgentStateName.__args__)  # type: ignore[attr-defined]
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _limit(request: web.Request) -> int:
    value = request.query.get("limit")
    if value is None:
        return supervise.LIMIT_DEFAULT
    if not value.isdigit() or not 1 <= int(value) <= supervise.LIMIT_MAX:
        why = f"must be an integer from 1 to {supervise.LIMIT_MAX}"
        raise InvalidInput([FieldProblem("limit", why)])
    return int(value)


def _name(request: web.Request, field: str) -> str | None:
    value = request.query.get(field)
    if value is not None and not _NAME.match(value):
        raise InvalidInput([FieldProblem(field, "not a valid name")])
    return value


@roles("supervisor")
async def list_agents(request: web.Request) -> web.Response:
    """Agents by id, paged (`cursor`: the previous page's `next`), filtered by
    `state`, `team`, `pool`; a team-scoped supervisor sees its teams' only."""
    ws, tok = path_id(request, "ws"), request[TOKEN]
    state = request.query.get("state")
    if state is not None and state not in _STATES:
        raise InvalidInput([FieldProblem("state", "not one of the agent states")])
    cursor = request.query.get("cursor")
    if cursor is not None and not ID_PATTERN.match(cursor):
        raise InvalidInput([FieldProblem("cursor", "not an agent id")])
    page = await supervise.list_agents(
        request.app[ENGINE],
        ws,
        lambda team, sup: in_team_scope(tok, team, sup),
        cursor=cursor,
        limit=_limit(request),
        state=state,
        team=_name(request, "team"),
        pool=_name(request, "pool"),
    )
    return json_response(page)


@roles("supervisor")
async def pool_waiting(request: web.Request) -> web.Response:
    """The pool's waiting contacts in rank order, masked, paged by `cursor`."""
    ws, pool, tok = path_id(request, "ws"), path_id(request, "pool_id"), request[TOKEN]
    raw = request.query.get("cursor")
    cursor = supervise.parse_rank_cursor(raw) if raw is not None else None
    if raw is not None and cursor is None:
        raise InvalidInput([FieldProblem("cursor", "not a waiting-list cursor")])
    limit = _limit(request)
    await check_pool(tok, request.app[ENGINE], ws, pool)
    page = await supervise.waiting(request.app[ENGINE], ws, pool, cursor=cursor, limit=limit)
    items = [present_waiting(w) for w in page.waiting]
    return json_response({"pool": page.pool, "waiting": items, "next": page.next})


@roles("supervisor")
async def contact_assign(request: web.Request) -> web.Response:
    """Offers a waiting contact to the named agent now, or 409 saying why not."""
    ws, cid, tok = path_id(request, "ws"), path_id(request, "contact_id"), request[TOKEN]
    parsed = await body(request, AssignIn)
    engine = request.app[ENGINE]
    await check_action(tok, engine, ws, cid, "assign", None)
    await check_agent(tok, engine, ws, parsed.agent_id)
    contact = await supervise.assign(engine, ws, cid, parsed.agent_id, actor(request))
    return json_response(present(tok, contact))
