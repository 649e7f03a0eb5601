"""HTTP handlers under /v1/workspaces/{ws}: decode at the edge, call the engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from router.access import action_failed, check_action, check_agent, visible_contact
from router.api.app import (
    ENGINE,
    EXPORTER,
    METRICS,
    NOTIFIER,
    REDIS,
    SETTINGS,
    TOKEN,
    Handler,
    actor,
)
from router.errors import (
    BadRequest,
    Conflict,
    FieldProblem,
    Forbidden,
    InvalidInput,
    NotFound,
)
from router.model import (
    AbandonIn,
    AgentIn,
    AgentOut,
    AgentRef,
    AgentStateIn,
    ClockIn,
    ContactIn,
    ContactOut,
    RatingIn,
    ReasonIn,
    TransferIn,
)
from router.pools import pool_stats
from router.privacy import present
from router.validation import parse_config

T = TypeVar("T")
log = logging.getLogger(__name__)
_ENC = msgspec.json.Encoder()
_DECODERS: dict[type, msgspec.json.Decoder[Any]] = {}
_PATH = re.compile(r" - at `\$(.*)`$")
REDACTED = "whsec_<redacted>"
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")


def roles(*names: str) -> Callable[[Handler], Handler]:
    def mark(fn: Handler) -> Handler:
        fn.roles = frozenset(names)  # type: ignore[attr-defined]
        return fn

    return mark


def json_response(obj: object, status: int = 200) -> web.Response:
    return web.Response(body=_ENC.encode(obj), status=status, content_type="application/json")


def decode_error(exc: msgspec.ValidationError) -> InvalidInput:
    msg = str(exc)
    m = _PATH.search(msg)
    path = m.group(1).lstrip(".") if m else ""
    text = _PATH.sub("", msg)
    unknown = re.match(r"Object contains unknown field `(.+)`", text)
    if unknown:
        path = f"{path}.{unknown.group(1)}".lstrip(".")
        text = "unknown field"
    missing = re.match(r"Object missing required field `(.+)`", text)
    if missing:
        path = f"{path}.{missing.group(1)}".lstrip(".")
        text = "required field is missing"
    if text.startswith("Invalid enum value"):
        # msgspec quotes the value; a problem names the field, never repeats input
        # (it may be personal data put in the wrong field).
        text = "not one of the allowed values"
    return InvalidInput([FieldProblem(path, text)])


async def body(request: web.Request, typ: type[T]) -> T:
    raw = await request.read()
    if not raw:
        raise BadRequest("a JSON body is required")
    dec = _DECODERS.get(typ)
    if dec is None:
        dec = _DECODERS[typ] = msgspec.json.Decoder(typ)
    try:
        return dec.decode(raw)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise decode_error(exc) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None


def path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not ID_PATTERN.match(value):
        raise NotFound(f"{name} {value[:64]!r} does not exist", field=name)
    return value


# --- probes -------------------------------------------------------------------


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; the Redis-state series only on the exporter replica."""
    m = request.app[METRICS]
    try:
        await request.app[EXPORTER].refresh()
        m.redis_up.set(1)
    except Exception as exc:  # a scrape still gets this replica's own metrics
        log.warning("metrics: reading the shared state failed (%s)", type(exc).__name__)
        m.redis_errors.labels("metrics").inc()
        m.redis_up.set(0)
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(_: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    client = request.app[REDIS]
    engine = request.app[ENGINE]
    try:
        await client.ping()
        loaded = await engine.scripts.loaded(client)
    except Exception:
        return json_response({"status": "unavailable", "redis": False}, status=503)
    if not loaded:
        with contextlib.suppress(Exception):
            await engine.scripts.load_all(client)
        return json_response({"status": "loading", "redis": True, "scripts": False}, status=503)
    return json_response({"status": "ready", "redis": True, "scripts": True})


# --- config -------------------------------------------------------------------


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


# --- agents -------------------------------------------------------------------


@roles("supervisor")
async def put_agent(request: web.Request) -> web.Response:
    ws, aid = path_id(request, "ws"), path_id(request, "agent_id")
    parsed = await body(request, AgentIn)
    await check_agent(request, ws, aid, new=parsed)
    agent = await request.app[ENGINE].upsert_agent(ws, aid, parsed, actor(request))
    return json_response(agent)


@roles("agent", "supervisor")
async def get_agent(request: web.Request) -> web.Response:
    ws, aid = path_id(request, "ws"), path_id(request, "agent_id")
    await check_agent(request, ws, aid)
    return json_response(await request.app[ENGINE].get_agent(ws, aid))


@roles("agent", "supervisor")
async def post_agent_state(request: web.Request) -> web.Response:
    ws, aid = path_id(request, "ws"), path_id(request, "agent_id")
    await check_agent(request, ws, aid)
    agent = await request.app[ENGINE].set_agent_state(
        ws, aid, await body(request, AgentStateIn), actor(request)
    )
    return json_response(agent)


@roles("agent", "supervisor")
async def get_offers(request: web.Request) -> web.Response:
    """Long-poll: answers at once when offers are pending, else waits up to `wait` s."""
    ws, aid = path_id(request, "ws"), path_id(request, "agent_id")
    try:
        wait = float(request.query.get("wait", "0"))
    except ValueError:
        raise InvalidInput([FieldProblem("wait", "must be a number of seconds")]) from None
    if not 0 <= wait <= request.app[SETTINGS].long_poll_max:
        raise InvalidInput([FieldProblem("wait", "must be between 0 and 60 seconds")])
    await check_agent(request, ws, aid)
    engine = request.app[ENGINE]
    with request.app[NOTIFIER].listen(ws, aid) as event:
        offers = await engine.agent_offers(ws, aid)
        if not offers and wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), wait)
            offers = await engine.agent_offers(ws, aid)
    tok = request[TOKEN]
    return json_response({"agent_id": aid, "offers": [present(tok, c) for c in offers]})


@roles("agent", "supervisor")
async def agent_ws(request: web.Request) -> web.WebSocketResponse:
    """WebSocket push: the agent's state and offers, sent on every change."""
    ws_name, aid = path_id(request, "ws"), path_id(request, "agent_id")
    await check_agent(request, ws_name, aid)
    engine = request.app[ENGINE]
    view = await engine.agent_view(ws_name, aid)  # 404 before the upgrade
    tok = request[TOKEN]
    sock = web.WebSocketResponse(heartbeat=20)
    await sock.prepare(request)

    async def push(view: tuple[AgentOut, list[ContactOut]]) -> None:
        agent, offers = view
        msg = {"type": "agent", "agent": agent, "offers": [present(tok, c) for c in offers]}
        await sock.send_bytes(_ENC.encode(msg))

    async def reader() -> None:
        async for msg in sock:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break

    # Pushes only on a notification: every change to the agent or its offers
    # publishes one, and the notifier wakes every waiter after (re)subscribing,
    # so nothing is missed without re-reading thousands of idle desktops on a
    # timer. Notifications that arrive while a push is under way coalesce into
    # one more push.
    notifier = request.app[NOTIFIER]
    with notifier.listen(ws_name, aid) as event:
        read_task = asyncio.create_task(reader())
        read_task.add_done_callback(lambda _: event.set())  # the desktop left
        try:
            await push(view)
            while True:
                await event.wait()
                event.clear()
                if read_task.done() or sock.closed or notifier.closing:
                    break
                await push(await engine.agent_view(ws_name, aid))
        finally:
            read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await read_task
    if notifier.closing and not sock.closed:  # shutting down: the desktop reconnects elsewhere
        await sock.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
    return sock


# --- contacts -----------------------------------------------------------------


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
    contact = await visible_contact(request, path_id(request, "ws"), path_id(request, "contact_id"))
    return json_response(present(request[TOKEN], contact))


def _action(name: str, typ: type[Any], args: Callable[[Any], list[str]], *who: str) -> Handler:
    @roles(*who)
    async def handler(request: web.Request) -> web.Response:
        ws, cid = path_id(request, "ws"), path_id(request, "contact_id")
        parsed = await body(request, typ)
        await check_action(request, ws, cid, name, getattr(parsed, "agent_id", None))
        try:
            contact = await request.app[ENGINE].contact_action(
                ws, cid, name, args(parsed), actor(request)
            )
        except (NotFound, Conflict) as exc:
            await action_failed(request, ws, cid, exc)
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
    await check_action(request, ws, cid, "resume", None)
    contact = await request.app[ENGINE].sla.resume_clock(ws, cid, parsed.clock, actor(request))
    return json_response(present(request[TOKEN], contact))


CONTACT_ACTIONS["resume"] = contact_resume


# --- pools --------------------------------------------------------------------


@roles("supervisor")
async def get_pools(request: web.Request) -> web.Response:
    ws = path_id(request, "ws")
    cfg = (await request.app[ENGINE].configs.get(ws)).config
    client = request.app[REDIS]
    stats = [await pool_stats(client, ws, pid, p) for pid, p in cfg.pools.items()]
    return json_response({"pools": stats})


@roles("supervisor")
async def get_pool(request: web.Request) -> web.Response:
    ws, pid = path_id(request, "ws"), path_id(request, "pool_id")
    cfg = (await request.app[ENGINE].configs.get(ws)).config
    return json_response(await pool_stats(request.app[REDIS], ws, pid, cfg.pools.get(pid)))


def setup_routes(app: web.Application) -> None:
    from router.api.events import setup_event_routes
    from router.api.openapi import openapi
    from router.api.wallboard import setup_wallboard_routes
    from router.api.wfm import setup_wfm_routes

    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/openapi.json", openapi)
    r.add_get("/metrics", metrics)
    base = "/v1/workspaces/{ws}"
    r.add_put(base, put_config)
    r.add_get(base, get_config)
    r.add_put(base + "/agents/{agent_id}", put_agent)
    r.add_get(base + "/agents/{agent_id}", get_agent)
    r.add_post(base + "/agents/{agent_id}/state", post_agent_state)
    r.add_get(base + "/agents/{agent_id}/offers", get_offers)
    r.add_get(base + "/agents/{agent_id}/ws", agent_ws)
    r.add_post(base + "/contacts", post_contact)
    r.add_get(base + "/contacts/{contact_id}", get_contact)
    for name, handler in CONTACT_ACTIONS.items():
        r.add_post(base + "/contacts/{contact_id}/" + name, handler)
    r.add_get(base + "/pools", get_pools)
    r.add_get(base + "/pools/{pool_id}", get_pool)
    setup_event_routes(app)
    setup_wfm_routes(app)
    setup_wallboard_routes(app)
