"""Contacts: create (idempotent on the gateway's id), read, and every action on one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import web

from router.api.appkeys import ENGINE, HISTORY, TOKEN, Handler
from router.api.common import actor, body, json_response, path_id, roles
from router.routing.model import (
    AbandonIn,
    AgentRef,
    ClockIn,
    CompleteIn,
    ContactIn,
    ContactOut,
    RatingIn,
    ReasonIn,
    TransferIn,
)
from router.routing.surveys import checked_rating
from router.runtime.errors import Conflict, FieldProblem, Forbidden, InvalidInput, NotFound
from router.security.access import (
    ContactLookup,
    action_failed,
    check_action,
    check_agent,
    visible_contact,
)
from router.security.privacy import present
from router.store.keys import WsKeys


@roles("gateway")
async def post_contact(request: web.Request) -> web.Response:
    tok = request[TOKEN]
    contact = await request.app[ENGINE].create_contact(
        path_id(request, "ws"), await body(request, ContactIn), actor(request), gateway=tok.name
    )
    if not contact.created and contact.gateway != tok.name and tok.role != "admin":
        # idempotent retries are the creating gateway's; another's id is not shown
        raise Forbidden(f"contact id {contact.id!r} belongs to another gateway", field="id")
    return json_response(present(tok, contact), status=201 if contact.created else 200)


def contact_lookup(app: web.Application) -> ContactLookup:
    """Finds a contact in Redis and, with an archive, in the archive once it has
    left Redis; a live contact of an archived workspace gets its timeline there."""
    engine = app[ENGINE]
    history = app.get(HISTORY)
    if history is None:
        return engine.get_contact

    async def lookup(ws: str, cid: str) -> ContactOut:
        try:
            contact = await engine.get_contact(ws, cid)
        except NotFound as exc:
            archived = await history.contact(ws, cid) if exc.field == "contact_id" else None
            if archived is None:
                raise
            return archived
        if contact.timeline:  # kept in Redis (created before the workspace was archived)
            return contact
        timeline = await history.live_timeline(engine.client(ws), ws, cid)
        return msgspec.structs.replace(contact, timeline=timeline)

    return lookup


@roles("gateway", "agent", "supervisor")
async def get_contact(request: web.Request) -> web.Response:
    contact = await visible_contact(
        request[TOKEN],
        request.app[ENGINE],
        path_id(request, "ws"),
        path_id(request, "contact_id"),
        contact_lookup(request.app),
    )
    return json_response(present(request[TOKEN], contact))


def _action(name: str, typ: type[Any], args: Callable[[Any], list[str]], *who: str) -> Handler:
    @roles(*who)
    async def handler(request: web.Request) -> web.Response:
        ws, cid = path_id(request, "ws"), path_id(request, "contact_id")
        parsed = await body(request, typ)
        await check_action(
            request[TOKEN], request.app[ENGINE], ws, cid, name, getattr(parsed, "agent_id", None)
        )
        if name == "transfer" and parsed.agent_id and request[TOKEN].role == "supervisor":
            # a team-scoped supervisor hands work only to its teams' agents (as assign)
            await check_agent(request[TOKEN], request.app[ENGINE], ws, parsed.agent_id)
        try:
            contact = await request.app[ENGINE].contact_action(
                ws, cid, name, args(parsed), actor(request)
            )
        except (NotFound, Conflict) as exc:
            await action_failed(request[TOKEN], request.app[ENGINE], ws, cid, exc)
            raise
        return json_response(present(request[TOKEN], contact))

    handler.__name__ = f"contact_{name}"
    return handler


def _transfer_args(t: TransferIn) -> list[str]:
    if (t.pool is None) == (t.agent_id is None):
        raise InvalidInput([FieldProblem("pool", "give exactly one of pool or agent_id")])
    return [t.pool or "", t.agent_id or "", t.reason or ""]


CONTACT_ACTIONS: dict[str, Handler] = {
    "accept": _action("accept", AgentRef, lambda b: [b.agent_id], "agent", "supervisor"),
    "reject": _action("reject", AgentRef, lambda b: [b.agent_id, ""], "agent", "supervisor"),
    "complete": _action(
        "complete", CompleteIn, lambda b: [b.agent_id, b.intent or ""], "agent", "supervisor"
    ),
    "abandon": _action("abandon", AbandonIn, lambda b: [b.reason or ""], "gateway", "supervisor"),
    "transfer": _action("transfer", TransferIn, _transfer_args, "agent", "supervisor", "gateway"),
    "resolve": _action("resolve", ReasonIn, lambda b: [b.reason or ""], "gateway", "supervisor"),
    "respond": _action("respond", AgentRef, lambda b: [b.agent_id], "agent", "supervisor"),
    "pause": _action(
        "sla_pause", ClockIn, lambda b: [b.clock, b.reason or ""], "gateway", "supervisor"
    ),
}


@roles("gateway", "supervisor")
async def contact_resume(request: web.Request) -> web.Response:
    """Resumes a paused SLA clock with the budget it had left."""
    ws, cid = path_id(request, "ws"), path_id(request, "contact_id")
    parsed = await body(request, ClockIn)
    await check_action(request[TOKEN], request.app[ENGINE], ws, cid, "resume", None)
    contact = await request.app[ENGINE].sla.resume_clock(ws, cid, parsed.clock, actor(request))
    return json_response(present(request[TOKEN], contact))


@roles("gateway", "supervisor")
async def contact_rating(request: web.Request) -> web.Response:
    """One survey answer (CSAT or NPS) about a served contact, checked against
    the kinds the workspace collects and the kind's scale."""
    ws, cid = path_id(request, "ws"), path_id(request, "contact_id")
    parsed = await body(request, RatingIn)
    engine = request.app[ENGINE]
    history = request.app.get(HISTORY)
    if history is not None and not await engine.client(ws).exists(WsKeys(ws).contact(cid)):
        # left Redis after its grace: a survey answer may still come, days later
        fields = await history.shell(ws, cid)
        if fields is not None:
            await engine.restore_contact(ws, cid, fields)
    await check_action(request[TOKEN], engine, ws, cid, "rate", None)
    surveys = (await engine.configs.get(ws)).config.surveys
    kind, score = checked_rating(surveys, parsed.kind, parsed.score)
    try:
        contact = await engine.contact_action(ws, cid, "rate", [kind, str(score)], actor(request))
    except (NotFound, Conflict) as exc:
        await action_failed(request[TOKEN], engine, ws, cid, exc)
        raise
    return json_response(present(request[TOKEN], contact))


CONTACT_ACTIONS["resume"] = contact_resume
CONTACT_ACTIONS["rating"] = contact_rating
