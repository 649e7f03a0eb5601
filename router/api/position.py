"""GET /contacts/{id}/position: a waiting contact's place and expected wait."""

from __future__ import annotations

from aiohttp import web

from router.api.appkeys import ENGINE, TOKEN
from router.api.common import json_response, path_id, roles
from router.routing.position import contact_position
from router.security.access import visible_contact


@roles("gateway", "supervisor")
async def get_position(request: web.Request) -> web.Response:
    """The creating gateway's, or a supervisor's of the contact's teams (admins too)."""
    ws, cid = path_id(request, "ws"), path_id(request, "contact_id")
    engine = request.app[ENGINE]
    await visible_contact(request[TOKEN], engine, ws, cid)  # 404/403 as GET /contacts/{id}
    cfg = (await engine.configs.get(ws)).config
    return json_response(await contact_position(engine.shards, cfg, ws, cid))
