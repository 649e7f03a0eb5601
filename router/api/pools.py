"""Pool statistics: depth, longest wait, agents by state, occupancy, estimated wait."""

from __future__ import annotations

from aiohttp import web

from router.api.appkeys import ENGINE, SHARDS
from router.api.common import json_response, path_id, roles
from router.store.keys import WsKeys
from router.wfm.pools import all_agent_rows, pool_stats


@roles("supervisor")
async def get_pools(request: web.Request) -> web.Response:
    ws = path_id(request, "ws")
    cfg = (await request.app[ENGINE].configs.get(ws)).config
    client = request.app[SHARDS].of(WsKeys(ws).tag)
    agents = await all_agent_rows(client, ws)  # read once for every pool
    stats = [await pool_stats(client, ws, pid, p, agents) for pid, p in cfg.pools.items()]
    return json_response({"pools": stats})


@roles("supervisor")
async def get_pool(request: web.Request) -> web.Response:
    ws, pid = path_id(request, "ws"), path_id(request, "pool_id")
    cfg = (await request.app[ENGINE].configs.get(ws)).config
    return json_response(
        await pool_stats(request.app[SHARDS].of(WsKeys(ws).tag), ws, pid, cfg.pools.get(pid))
    )
