"""Agents: upsert, read, state, and their offers by long-poll or WebSocket push."""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from router.api.appkeys import ENGINE, NOTIFIER, SETTINGS, TOKEN
from router.api.common import actor, body, json_response, path_id, roles
from router.routing.model import AgentIn, AgentOut, AgentStateIn, ContactOut
from router.runtime.errors import FieldProblem, InvalidInput
from router.security.access import check_agent
from router.security.privacy import present

_ENC = msgspec.json.Encoder()


@roles("supervisor")
async def put_agent(request: web.Request) -> web.Response:
    ws, aid = path_id(request, "ws"), path_id(request, "agent_id")
    parsed = await body(request, AgentIn)
    await check_agent(request[TOKEN], request.app[ENGINE], ws, aid, new=parsed)
    agent = await request.app[ENGINE].upsert_agent(ws, aid, parsed, actor(request))
    return json_response(agent)


@roles("agent", "supervisor")
async def get_agent(request: web.Request) -> web.Response:
    ws, aid = path_id(request, "ws"), path_id(request, "agent_id")
    await check_agent(request[TOKEN], request.app[ENGINE], ws, aid)
    return json_response(await request.app[ENGINE].get_agent(ws, aid))


@roles("agent", "supervisor")
async def post_agent_state(request: web.Request) -> web.Response:
    ws, aid = path_id(request, "ws"), path_id(request, "agent_id")
    tok = request[TOKEN]
    await check_agent(tok, request.app[ENGINE], ws, aid)
    # a supervisor (or admin) signing an agent out returns its pending offers
    signout = tok.role in ("supervisor", "admin")
    agent = await request.app[ENGINE].set_agent_state(
        ws, aid, await body(request, AgentStateIn), actor(request), signout=signout
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
    await check_agent(request[TOKEN], request.app[ENGINE], ws, aid)
    engine = request.app[ENGINE]
    with request.app[NOTIFIER].listen(ws, aid) as listener:
        offers = await engine.agent_offers(ws, aid)
        if not offers and wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listener.event.wait(), wait)
            view = engine.pushed_view(pushed) if (pushed := listener.take()) else None
            offers = view[1] if view else await engine.agent_offers(ws, aid)
    tok = request[TOKEN]
    return json_response({"agent_id": aid, "offers": [present(tok, c) for c in offers]})


@roles("agent", "supervisor")
async def agent_ws(request: web.Request) -> web.WebSocketResponse:
    """WebSocket push: the agent's state and offers, sent on every change."""
    ws_name, aid = path_id(request, "ws"), path_id(request, "agent_id")
    await check_agent(request[TOKEN], request.app[ENGINE], ws_name, aid)
    engine = request.app[ENGINE]
    view = await engine.agent_view(ws_name, aid)  # 404 before the upgrade
    tok = request[TOKEN]
    # No permessage-deflate, which every browser offers: a pushed view is a few
    # hundred bytes to ~2 KB, and each compressing socket holds a zlib context of
    # ~90 KiB in the router (1,000 desktops: 190 MiB instead of 99, benchmarks/history/2026-12.md)
    sock = web.WebSocketResponse(heartbeat=20, compress=False)
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
    # publishes one carrying the agent's view, and the notifier wakes every
    # waiter after (re)subscribing, so nothing is missed without re-reading
    # thousands of idle desktops on a timer. Notifications that arrive while a
    # push is under way coalesce into one more push, of the latest view; only a
    # wake-up without one (a resubscription) reads the agent.
    notifier = request.app[NOTIFIER]
    with notifier.listen(ws_name, aid) as listener:
        read_task = asyncio.create_task(reader())
        read_task.add_done_callback(lambda _: listener.wake(None))  # the desktop left
        try:
            await push(view)
            while True:
                await listener.event.wait()
                pushed = listener.take()
                if read_task.done() or sock.closed or notifier.closing:
                    break
                fresh = engine.pushed_view(pushed) if pushed else None
                await push(fresh or await engine.agent_view(ws_name, aid))
        finally:
            read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await read_task
    if notifier.closing and not sock.closed:  # shutting down: the desktop reconnects elsewhere
        await sock.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
    return sock
