"""PATCH /contacts/{id}: change a waiting or served contact's routing (JSON Merge
Patch; `router/routing/updates.py` does the work)."""

from __future__ import annotations

from aiohttp import web

from router.api.appkeys import ENGINE, TOKEN
from router.api.common import actor, body, json_response, path_id, roles
from router.routing.engine import contact_out
from router.routing.model import ContactPatch
from router.security.access import check_action
from router.security.privacy import present

# JSON Merge Patch (RFC 7396) is what PATCH means here; plain JSON is the same
# document, so both are read alike (like every other body, by parsing it).
MEDIA_TYPES = ("application/merge-patch+json", "application/json")


@roles("gateway", "supervisor")
async def patch_contact(request: web.Request) -> web.Response:
    """The creating gateway, a supervisor in scope or an admin (who passes every role)."""
    ws, cid = path_id(request, "ws"), path_id(request, "contact_id")
    patch = await body(request, ContactPatch)
    engine = request.app[ENGINE]
    await check_action(request[TOKEN], engine, ws, cid, "update", None)
    raw, _changed = await engine.updates.update(ws, cid, patch, actor(request))
    return json_response(present(request[TOKEN], contact_out(raw, False)))
