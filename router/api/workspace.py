"""The workspace's routing config: PUT (admin) and GET `/v1/workspaces/{ws}`."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from router.api.appkeys import ENGINE
from router.api.common import actor, json_response, path_id, roles
from router.routing.validation import parse_config

REDACTED = "whsec_<redacted>"
SECRETS = ("secret", "previous_secret")


def redacted(stored: object) -> dict[str, Any]:
    """A stored config (`{..., "config": {...}}`) as builtins, webhook secrets redacted."""
    doc: dict[str, Any] = msgspec.to_builtins(stored)
    for hook in doc["config"].get("webhooks", {}).values():
        for key in SECRETS:
            if key in hook and hook[key] is not None:
                hook[key] = REDACTED  # send the real secrets again on PUT
    return doc


def if_match(request: web.Request) -> int | None:
    """The version a write expects (`If-Match`, quoted or not); None: any."""
    expected = request.headers.get("If-Match")
    return int(expected.strip('"')) if expected and expected.strip('"').isdigit() else None


@roles("admin")
async def put_config(request: web.Request) -> web.Response:
    ws = path_id(request, "ws")
    cfg = parse_config(await request.read())
    stored = await request.app[ENGINE].put_config(ws, cfg, actor(request), if_match(request))
    return json_response(stored)


@roles("supervisor", "gateway", "agent")
async def get_config(request: web.Request) -> web.Response:
    stored = await request.app[ENGINE].configs.get(path_id(request, "ws"))
    return json_response(redacted(stored))
