"""PATCH /contacts/{id}: change a waiting or served contact's routing (JSON Merge
Patch; `router/routing/updates.py` does the work)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from router.api.appkeys import ENGINE, TOKEN
from router.api.common import actor, body, json_response, path_id, roles
from router.routing.model import ContactPatch
from router.routing.records import contact_out
from router.routing.slaops import sla_clocks
from router.security.access import check_action
from router.security.privacy import present


@roles("gateway", "supervisor")
async def patch_contact(request: web.Request) -> web.Response:
    """The creating gateway, a supervisor in scope or an admin (who passes every role).
    The body is JSON Merge Patch (RFC 7396); sent as application/json it is the
    same document, so both are read alike (like every body here, by parsing it)."""
    ws, cid = path_id(request, "ws"), path_id(request, "contact_id")
    patch = await body(request, ContactPatch)
    engine = request.app[ENGINE]
    await check_action(request[TOKEN], engine, ws, cid, "update", None)
    raw, _changed = await engine.updates.update(ws, cid, patch, actor(request))
    contact = contact_out(raw, False)
    if raw.get("sla"):  # re-planned when another policy applies: shown like GET shows them
        contact = msgspec.structs.replace(contact, sla_clocks=sla_clocks(raw) or None)
    return json_response(present(request[TOKEN], contact))
