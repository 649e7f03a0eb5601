"""Callbacks: a waiting contact turned into a call back, and each attempt's outcome
(router/routing/callbacks.py; README "Callbacks")."""

from __future__ import annotations

from aiohttp import web

from router.api.appkeys import ENGINE, TOKEN
from router.api.common import actor, body, json_response, path_id, roles
from router.routing.model import CallbackAttemptIn, CallbackIn
from router.runtime.errors import Conflict, NotFound
from router.security.access import action_failed, check_action
from router.security.privacy import present

CALLBACK = "/v1/workspaces/{ws}/contacts/{contact_id}/callback"


@roles("gateway", "supervisor")
async def post_callback(request: web.Request) -> web.Response:
    """The creating gateway (or a supervisor) turns a queued contact into a callback."""
    ws, cid = path_id(request, "ws"), path_id(request, "contact_id")
    parsed = await body(request, CallbackIn)
    engine = request.app[ENGINE]
    await check_action(request[TOKEN], engine, ws, cid, "callback", None)
    contact = await engine.callbacks.request(ws, cid, parsed, actor(request))
    return json_response(present(request[TOKEN], contact))


@roles("agent", "supervisor")
async def post_attempt(request: web.Request) -> web.Response:
    """The holding agent records one dial's outcome."""
    ws, cid = path_id(request, "ws"), path_id(request, "contact_id")
    parsed = await body(request, CallbackAttemptIn)
    engine = request.app[ENGINE]
    await check_action(request[TOKEN], engine, ws, cid, "callback_attempt", parsed.agent_id)
    try:
        contact = await engine.callbacks.attempt(ws, cid, parsed, actor(request))
    except (NotFound, Conflict) as exc:
        await action_failed(request[TOKEN], engine, ws, cid, exc)
        raise
    return json_response(present(request[TOKEN], contact))


def setup_callback_routes(app: web.Application) -> None:
    app.router.add_post(CALLBACK, post_callback)
    app.router.add_post(CALLBACK + "/attempts", post_attempt)
