"""The workspace's routing config: PUT (admin) and GET `/v1/workspaces/{ws}`."""

from __future__ import annotations

import msgspec
from aiohttp import web

from router.api.appkeys import ENGINE
from router.api.common import actor, json_response, path_id, roles
from router.routing.validation import parse_config

REDACTED = "whsec_<redacted>"


@roles("admin")
async def put_config(request: web.Request) -> web.Response:
    ws = path_id(request, "ws")
    cfg = parse_config(await request.read())
    expected = request.headers.get("If-Match")
    exp = int(expected.strip('"')) if expected and expected.strip('"').isdigit() else None
    stored = await request.app[ENGINE].put_config(ws, cfg, actor(request), exp)
    return json_response(stored)


@roles("supervisor", "gateway", "agent")
async def get_config(request: web.Request) -> web.Response:
    stored = await request.app[ENGINE].configs.get(path_id(request, "ws"))
    doc = msgspec.to_builtins(stored)
    for hook in doc["config"].get("webhooks", {}).values():
        for key in ("secret", "previous_secret"):
            if key in hook and hook[key] is not None:
                hook[key] = REDACTED  # send the real secrets again on PUT
    return json_response(doc)
