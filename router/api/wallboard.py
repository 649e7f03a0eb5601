"""The supervisor's wallboard: per-pool tiles pushed by server-sent events.

`GET /v1/workspaces/{ws}/wallboard` is a static page (it carries no data, so it
needs no token); its script reads the supervisor token from the URL fragment
(`#token=...`: never sent to the server, never in a log) or asks for it, and
reads `GET .../wallboard/stream` with that token in the Authorization header.
Tiles carry CSAT and NPS over the service level's window when the workspace
collects those surveys. The stream sends the tiles when they change, looked at
twice a second; every stream of a workspace on a replica shares one snapshot
(one Redis read per half second, whatever the number of screens).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any, cast

import msgspec
from aiohttp import web
from redis.asyncio import Redis

from router.api.appkeys import ENGINE, SHARDS
from router.api.common import path_id, roles
from router.api.events import EVENT_STREAMS, MAX_STREAMS, _gone, _Sender
from router.routing.config import RoutingConfig
from router.routing.surveys import CsatSummary, NpsSummary, add_counts, csat_summary, nps_summary
from router.runtime.errors import Unavailable
from router.store.keys import WsKeys
from router.wfm.pools import all_agent_rows, pool_stats
from router.wfm.stats import pool_windows

PERIOD = 0.5  # seconds between looks at the state
# The window of the tiles' CSAT and NPS: the service level's, so a screen's
# numbers all speak of the same quarter hour (router/wfm/stats.py WINDOWS).
SURVEY_WINDOW = "15m"
HEARTBEAT = 15.0
_PAGE = resources.files("router.api").joinpath("static", "wallboard.html").read_bytes()
_ENC = msgspec.json.Encoder()


class Tile(msgspec.Struct, frozen=True):
    pool: str
    waiting: int
    longest_wait: float
    service_level: float | None  # answered within target / answered + abandoned, 15 min
    service_level_target: float
    agents_available: int
    agents_busy: int
    breaches_today: int
    # survey answers given over SURVEY_WINDOW; null when the workspace does
    # not collect the kind
    csat: CsatSummary | None = None
    nps: NpsSummary | None = None
    # callbacks asked for today (UTC day) in the pool, and those whose customer
    # answered a dial (lib/85_callbacks.lua cb_count)
    callbacks_today: int = 0
    callbacks_reached_today: int = 0


class Board(msgspec.Struct, frozen=True):
    workspace: str
    at: float
    tiles: list[Tile]
    # the whole workspace's CSAT and NPS (every pool's answers) over `survey_window`
    survey_window: str = SURVEY_WINDOW
    csat: CsatSummary | None = None
    nps: NpsSummary | None = None


def _surveys(kinds: Sequence[str], counts: dict[str, dict[int, int]]) -> dict[str, Any]:
    """The tile's (or board's) `csat` and `nps` from answers by kind and score."""
    out: dict[str, Any] = {}
    if "csat" in kinds:
        out["csat"] = csat_summary(counts.get("csat", {}))
    if "nps" in kinds:
        out["nps"] = nps_summary(counts.get("nps", {}))
    return out


async def board(client: Redis, ws: str, cfg: RoutingConfig) -> Board:
    secs, micros = await client.time()
    now_ms = int(secs) * 1000 + int(micros) // 1000
    pools = list(cfg.pools)
    agents = await all_agent_rows(client, ws)  # read once for every pool
    stats = [await pool_stats(client, ws, p, cfg.pools[p], agents) for p in pools]
    windows = await pool_windows(client, ws, pools, now_ms)
    day = cast(dict[str, str], await client.hgetall(WsKeys(ws).day_counts(now_ms // 86_400_000)))
    kinds = cfg.surveys.kinds
    total: dict[str, dict[int, int]] = {}
    for p in pools:
        add_counts(total, windows[p][SURVEY_WINDOW].ratings)
    tiles = [
        Tile(
            pool=p,
            waiting=s.depth,
            longest_wait=round(s.longest_wait, 1),
            service_level=windows[p]["15m"].service_level_with_abandons,
            service_level_target=cfg.pools[p].service_level.percent / 100,
            agents_available=s.agents_by_state.get("available", 0),
            agents_busy=s.agents_by_state.get("busy", 0),
            breaches_today=int(day.get(f"breached|{p}", 0)),
            callbacks_today=int(day.get(f"callback_requested|{p}", 0)),
            callbacks_reached_today=int(day.get(f"callback_reached|{p}", 0)),
            **_surveys(kinds, windows[p][SURVEY_WINDOW].ratings),
        )
        for p, s in zip(pools, stats, strict=True)
    ]
    return Board(workspace=ws, at=now_ms / 1000, tiles=tiles, **_surveys(kinds, total))


class Boards:
    """One snapshot per workspace, at most PERIOD old, shared by this replica's streams."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, bytes]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, app: web.Application, ws: str) -> bytes:
        lock = self._locks.setdefault(ws, asyncio.Lock())
        async with lock:
            hit = self._cache.get(ws)
            if hit is not None and time.monotonic() - hit[0] < PERIOD * 0.9:
                return hit[1]
            cfg = (await app[ENGINE].configs.get(ws)).config
            data = _ENC.encode(await board(app[SHARDS].of(WsKeys(ws).tag), ws, cfg))
            self._cache[ws] = (time.monotonic(), data)
            return data


BOARDS = web.AppKey("boards", Boards)


async def wallboard_page(request: web.Request) -> web.Response:
    # a malformed workspace name is a 404 like on every route; whether the
    # workspace exists is not told (the page needs no token)
    path_id(request, "ws")
    return web.Response(body=_PAGE, content_type="text/html", headers={
        "Cache-Control": "no-cache",
        "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                                   "style-src 'unsafe-inline'",
        "Referrer-Policy": "no-referrer",
    })  # fmt: skip


wallboard_page.open_access = True  # type: ignore[attr-defined]  # static: no data in it


def _tiles_frame(data: bytes) -> bytes:
    return b"event: tiles\ndata: " + data + b"\n\n"


@roles("supervisor")
async def wallboard_stream(request: web.Request) -> web.StreamResponse:
    ws = path_id(request, "ws")
    app = request.app
    await app[ENGINE].configs.get(ws)  # 404 for an unknown workspace before streaming
    hub = app[EVENT_STREAMS]
    if hub.active >= MAX_STREAMS:
        raise Unavailable(f"this replica already serves {MAX_STREAMS} streams; retry")
    hub.active += 1
    try:
        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})  # fmt: skip
        await resp.prepare(request)
        sender = _Sender(resp)
        last = b""
        with contextlib.suppress(OSError, TimeoutError):
            while not hub.stopping.is_set() and not _gone(request):
                data = await app[BOARDS].get(app, ws)
                if data != last or time.monotonic() - sender.last_write > HEARTBEAT:
                    await sender.write(_tiles_frame(data))
                    last = data
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(hub.stopping.wait(), PERIOD)
        return resp
    finally:
        hub.active -= 1


def setup_wallboard_routes(app: web.Application) -> None:
    app[BOARDS] = Boards()
    base = "/v1/workspaces/{ws}/wallboard"
    app.router.add_get(base, wallboard_page)
    app.router.add_get(base + "/stream", wallboard_stream)
