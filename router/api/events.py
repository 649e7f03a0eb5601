"""The workspace event stream over HTTP: pages of CloudEvents and server-sent events.

Every routing state change is appended by the Lua scripts to the Redis Stream
`{ws:<name>}:events` (`WsKeys(ws).events`), one field `e` holding compact JSON:

    {"type": "contact.offered", "at": 1718000000123, "actor": "gateway:gw1",
     "contact": "c1", "agent": "a1", "pool": "cards", "state": "offered",
     "explain": {...}}

`type` names the change (`contact.created`, `contact.offered`, `contact.assigned`,
`agent.state_changed`, `config.updated`, ...), `at` is the Redis `TIME` of the
decision in epoch milliseconds, `actor` is `<role>:<token name>` or `system` for
timer effects; the other fields depend on the type (`contact`, `agent`, `pool`,
`state`, `reason`, `explain`, ...). Events never carry customer identity or
attributes. The stream is trimmed approximately (`XADD MAXLEN ~`) at
`router.store.keys.EVENTS_MAXLEN` (1,000,000) entries per workspace: a reader further
behind than that silently loses the oldest events.

HTTP (supervisor or admin):

- `GET /v1/workspaces/{ws}/events?after=<id>&limit=N&type=<t>` answers
  `{"events": [CloudEvent...], "next": "<id>"}`; pass `next` as `after` to go on.
- `GET /v1/workspaces/{ws}/events/stream` is `text/event-stream`: one frame per
  event (`id:` the stream id, `event:` the type, `data:` the CloudEvent) and a
  `: keep-alive` comment every 15 s. It resumes after `Last-Event-ID` (sent by
  browsers' EventSource on reconnect) or `after`; with neither it starts with
  the next new event.

Consumer groups (CRM, data warehouse, survey/NPS systems)
--------------------------------------------------------

A downstream system that must not miss events reads the stream directly with
its own consumer group, so Redis tracks what it has processed and redelivers
what a crashed consumer never acknowledged:

    XGROUP CREATE {ws:demo}:events crm $ MKSTREAM       # once; `0` to replay retained history
    XREADGROUP GROUP crm worker-1 COUNT 100 BLOCK 5000 STREAMS {ws:demo}:events >
    ... process each entry: field `e` is the event JSON above ...
    XACK {ws:demo}:events crm 1718000000123-0 ...       # after the effect is durable
    XAUTOCLAIM {ws:demo}:events crm worker-1 60000 0-0  # take over a dead worker's entries

Each system uses its own group name (`crm`, `dwh`, `nps`); consumers within a
group share the work. Ids are Redis stream ids (`<ms>-<seq>`), increasing, and
are the same ids the HTTP API uses as `id`/cursor, so a system may switch
between the two. A group more than ~1,000,000 entries behind loses the trimmed
entries (XREADGROUP skips them), so alert on the group's lag (`XINFO GROUPS`).
Give each system a Redis ACL user limited to `~{ws:*}:events` and the stream
read commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.api.appkeys import ENGINE, SETTINGS, SHARDS
from router.api.common import json_response, path_id, roles
from router.runtime.errors import BadRequest, FieldProblem, InvalidInput, Unavailable
from router.store.client import make_shards
from router.store.keys import WsKeys
from router.store.shards import Shards
from sla.signing import cloudevent

log = logging.getLogger(__name__)

# Concurrent server-sent event streams per replica; beyond it 503 + Retry-After.
MAX_STREAMS = 200
# XREAD BLOCK of a stream, in ms: how soon a stream notices shutdown and a
# client that went away. The stream connections' socket timeout is the
# configured Redis timeout plus this, so a block never trips it.
BLOCK_MS = 1000
# A `: keep-alive` comment after this many seconds without a frame.
HEARTBEAT_SECONDS = 15.0
# A client that does not take a write within this many seconds is dropped.
WRITE_TIMEOUT_SECONDS = 30.0
# Entries read per XREAD by a stream.
STREAM_BATCH = 100
LIMIT_DEFAULT, LIMIT_MAX = 100, 1000

_SOURCE = "/v1/workspaces/"
_CURSOR = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")
_TYPE = re.compile(r"^[A-Za-z0-9_.-]{1,100}\*?$")
_U64 = 2**64 - 1
_DEC = msgspec.json.Decoder(dict[str, Any])
_ENC = msgspec.json.Encoder()


# --- wire types (the OpenAPI schema; responses are built as dicts) -------------


class CloudEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """One event in CloudEvents 1.0 JSON format; `actor` is an extension attribute."""

    specversion: str
    id: str
    source: str
    type: str
    datacontenttype: str
    data: dict[str, Any]
    time: str | None = None
    subject: str | None = None
    actor: str | None = None


class EventPage(msgspec.Struct, frozen=True):
    events: list[CloudEvent]
    next: str


# --- pure code ----------------------------------------------------------------


def parse_cursor(value: str, field: str = "after") -> str:
    """A stream id `<ms>-<seq>` (or `<ms>`, meaning `<ms>-0`); 400 naming `field`."""
    m = _CURSOR.match(value)
    if m is None or int(m.group(1)) > _U64 or int(m.group(2) or 0) > _U64:
        raise BadRequest(
            f"{field} must be an event id such as 1718000000123-0 (got {value[:64]!r})",
            field=field,
        )
    return f"{m.group(1)}-{m.group(2) or 0}"


def type_matcher(spec: str | None) -> Callable[[str], bool]:
    """`contact.created` matches that type; `sla.*` or `sla.` every type under `sla.`."""
    if not spec:
        return lambda _t: True
    if not _TYPE.match(spec):
        raise InvalidInput(
            [FieldProblem("type", "must be an event type or a prefix ending in . or *")]
        )
    if spec.endswith(("*", ".")):
        prefix = spec.rstrip("*")
        return lambda t: t.startswith(prefix)
    return lambda t: t == spec


def parse_limit(value: str | None) -> int:
    if value is None:
        return LIMIT_DEFAULT
    if not value.isdigit() or not 1 <= int(value) <= LIMIT_MAX:
        raise InvalidInput([FieldProblem("limit", f"must be an integer from 1 to {LIMIT_MAX}")])
    return int(value)


def render(
    ws: str, entries: list[tuple[str, dict[str, str]]], match: Callable[[str], bool]
) -> list[dict[str, Any]]:
    """The entries of an XREAD reply that pass the type filter, as CloudEvents."""
    out = []
    for sid, fields in entries:
        try:
            event = _DEC.decode(fields.get("e", ""))
        except msgspec.DecodeError:
            log.warning("skipping undecodable event %s in workspace %s", sid, ws)
            continue
        if match(str(event.get("type", ""))):
            out.append(cloudevent(ws, sid, event))
    return out


def sse_frame(ce: dict[str, Any]) -> bytes:
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        ce["id"].encode(),
        ce["type"].encode(),
        _ENC.encode(ce),
    )


def _entries(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """The entries of a one-stream XREAD reply (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return list(next(iter(reply.values())))
    return list(reply[0][1])


# --- page ---------------------------------------------------------------------


@roles("supervisor")
async def get_events(request: web.Request) -> web.Response:
    """Events after the cursor `after` (default: the oldest retained), oldest first.

    `type` filters after reading, so a page may hold fewer than `limit` events
    (even none) while more follow; `next` is the id of the last entry read,
    matching or not, so passing it as `after` never reads an entry twice. An
    empty page with `next` equal to `after` means the caller is up to date.
    """
    ws = path_id(request, "ws")
    after = parse_cursor(request.query["after"]) if "after" in request.query else "0-0"
    limit = parse_limit(request.query.get("limit"))
    match = type_matcher(request.query.get("type"))
    await request.app[ENGINE].configs.get(ws)
    keys = WsKeys(ws)
    reply = await request.app[SHARDS].of(keys.tag).xread({keys.events: after}, count=limit)
    entries = _entries(reply)
    nxt = entries[-1][0] if entries else after
    return json_response({"events": render(ws, entries, match), "next": nxt})


# --- server-sent events -------------------------------------------------------


class EventStreams:
    """This replica's SSE streams: their Redis pool, how many are open, the stop signal.

    Streams block in XREAD on connections of their own pool (one per stream,
    held while it is open), never on the shared command connections.
    """

    def __init__(self, shards: Shards) -> None:
        self.shards = shards
        self.active = 0
        self.stopping = asyncio.Event()

    def client(self, ws: str) -> Redis:
        return self.shards.of(WsKeys(ws).tag)

    def connection(self, ws: str) -> Redis:
        pool = self.client(ws).connection_pool
        return Redis(connection_pool=pool, single_connection_client=True)


EVENT_STREAMS = web.AppKey("event_streams", EventStreams)


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _start_cursor(client: Redis, key: str, request: web.Request) -> str:
    # A malformed `after` is refused even when Last-Event-ID (a reconnect) wins.
    after = parse_cursor(request.query["after"]) if "after" in request.query else None
    given = request.headers.get("Last-Event-ID")
    if given:
        return parse_cursor(given.strip(), "Last-Event-ID")
    if after is not None:
        return after
    last = await client.xrevrange(key, count=1)
    return str(last[0][0]) if last else "0-0"


class _Sender:
    """Writes frames to one SSE response, with heartbeats and a write timeout."""

    def __init__(self, resp: web.StreamResponse) -> None:
        self.resp = resp
        self.last_write = time.monotonic()
        self.sent_id = ""

    async def write(self, chunk: bytes) -> None:
        async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
            await self.resp.write(chunk)
        self.last_write = time.monotonic()

    async def events(self, events: list[dict[str, Any]]) -> None:
        if events:
            await self.write(b"".join(sse_frame(ce) for ce in events))
            self.sent_id = events[-1]["id"]

    async def heartbeat(self, cursor: str) -> None:
        """A comment every HEARTBEAT_SECONDS; with an `id:` line when filtered-out
        entries moved the cursor, so a reconnect does not re-read them."""
        if time.monotonic() - self.last_write < HEARTBEAT_SECONDS:
            return
        moved = cursor != self.sent_id
        await self.write(
            b": keep-alive\n" + (b"id: %s\n" % cursor.encode() if moved else b"") + b"\n"
        )
        self.sent_id = cursor


async def _pump(
    request: web.Request, hub: EventStreams, sender: _Sender, ws: str, cursor: str
) -> None:
    """Sends events until the client goes away, the server stops or Redis fails."""
    match = type_matcher(request.query.get("type"))
    key = WsKeys(ws).events
    conn = hub.connection(ws)
    try:
        while not hub.stopping.is_set() and not _gone(request):
            reply = await conn.xread({key: cursor}, count=STREAM_BATCH, block=BLOCK_MS)
            entries = _entries(reply)
            if entries:
                cursor = entries[-1][0]
                await sender.events(render(ws, entries, match))
            await sender.heartbeat(cursor)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        hub.shards.suspect(exc)  # the reconnect then finds the workspace's primary now
        log.warning("event stream of %s ended: %s", ws, type(exc).__name__)
    except TimeoutError:  # the client stopped reading: drop it
        if request.transport is not None:
            request.transport.abort()
    except OSError:
        pass  # the client went away
    finally:
        await conn.aclose()


@roles("supervisor")
async def stream_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events of the workspace, filtered by `type` like `GET .../events`."""
    ws = path_id(request, "ws")
    type_matcher(request.query.get("type"))  # validate before answering 200
    await request.app[ENGINE].configs.get(ws)
    hub = request.app[EVENT_STREAMS]
    if hub.active >= MAX_STREAMS:
        raise Unavailable(f"this replica already serves {MAX_STREAMS} event streams; retry")
    hub.active += 1
    try:
        cursor = await _start_cursor(hub.client(ws), WsKeys(ws).events, request)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        sender = _Sender(resp)
        await sender.write(b"retry: 2000\n\n")
        await _pump(request, hub, sender, ws, cursor)
        return resp  # aiohttp ends the chunked body (write_eof) once this returns
    finally:
        hub.active -= 1


async def _streams_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    shards = make_shards(
        settings.redis_url,
        settings.redis_timeout + BLOCK_MS / 1000,
        max_connections=MAX_STREAMS,
    )
    with contextlib.suppress(RedisError, OSError):  # unreachable now: learnt on first use
        await shards.start()
    app[EVENT_STREAMS] = EventStreams(shards)
    yield
    app[EVENT_STREAMS].stopping.set()
    await shards.aclose()


async def _stop_streams(app: web.Application) -> None:
    """On shutdown, before aiohttp waits for handlers: end every stream's response."""
    if EVENT_STREAMS in app:
        app[EVENT_STREAMS].stopping.set()


def setup_event_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_streams_ctx)
    app.on_shutdown.append(_stop_streams)
    base = "/v1/workspaces/{ws}/events"
    app.router.add_get(base, get_events)
    app.router.add_get(base + "/stream", stream_events)
