"""Contacts: create (idempotent on the gateway's id), read, and every action on one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from router.api.appkeys import ENGINE, TOKEN, Handler
from router.api.common import actor, body, json_response, path_id, roles
from router.routing.model import (
    AbandonIn,
    AgentRef,
    ClockIn,
    ContactIn,
    RatingIn,
    ReasonIn,
    TransferIn,
)
from router.runtime.errors import Conflict, FieldProblem, Forbidden, InvalidInput, NotFound
from router.security.access import action_failed, check_action, visible_contact
from router.security.privacy import present


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


@roles("gateway", "agent", "supervisor")
async def get_contact(request: web.Request) -> web.Response:
    contact = await visible_contact(
        request[TOKEN], request.app[ENGINE], path_id(request, "ws"), path_id(request, "contact_id")
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
    "complete": _action("complete", AgentRef, lambda b: [b.agent_id], "agent", "supervisor"),
    "abandon": _action("abandon", AbandonIn, lambda b: [b.reason or ""], "gateway", "supervisor"),
    "transfer": _action("transfer", TransferIn, _transfer_args, "agent", "supervisor", "gateway"),
    "resolve": _action("resolve", ReasonIn, lambda b: [b.reason or ""], "gateway", "supervisor"),
    "respond": _action("respond", AgentRef, lambda b: [b.agent_id], "agent", "supervisor"),
    "rating": _action("rate", RatingIn, lambda b: [str(b.score)], "gateway", "supervisor"),
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


CONTACT_ACTIONS["resume"] = contact_resume
