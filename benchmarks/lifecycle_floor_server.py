"""A full lifecycle's floor: the least an aiohttp + uvloop + msgspec + redis-py
server does to serve the lifecycle `benchmarks/lifecycle.py` drives, so that the
router's CPU per lifecycle can be read against it.

    python benchmarks/lifecycle_floor_server.py --port 8083 --redis URL --agents 5000

The same exchanges as the router, with every request's and push's I/O and none
of its decisions: `POST .../contacts` decodes the body and makes one script
call (an idle agent popped from a set, the contact's state in a hash, a
notification published), `accept` and `complete` one script call each (a
completion hands the agent the oldest queued contact, else returns it to the
idle set), and every notification reaches the agent's WebSocket through one
sharded subscription, pushed as a JSON message of the router's shape. No
tokens, rate limits, rules, SLA clocks, events, statistics or audit: what is
left is aiohttp, msgspec and redis-py. `benchmarks/lifecycle_floor.py` runs it
in the capacity benchmark's harness, beside hello world.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import uvloop
from aiohttp import web

from router.runtime.pauses import apply_gc_policy
from router.runtime.settings import Settings
from router.store.batch import ScriptBatcher
from router.store.client import make_client
from router.store.scripts import Script
from router.store.shards import Shards

CHANNEL = "floor:notify"
FREE, QUEUE = "floor:free", "floor:queue"
ENC = msgspec.json.Encoder()


class ContactIn(msgspec.Struct):
    id: str
    channel: str


class ActionIn(msgspec.Struct):
    agent_id: str


CONTACT = msgspec.json.Decoder(ContactIn)
ACTION = msgspec.json.Decoder(ActionIn)

# KEYS: contact hash, idle agents set, queue list. ARGV: contact id, channel.
CREATE = Script("""
local aid = redis.call('SPOP', KEYS[2])
if aid then
  redis.call('HSET', KEYS[1], 'st', 'offered', 'agent', aid, 'ch', ARGV[2])
  redis.call('SPUBLISH', 'floor:notify', aid .. '|' .. ARGV[1])
  return {'offered', aid}
end
redis.call('HSET', KEYS[1], 'st', 'queued', 'ch', ARGV[2])
redis.call('RPUSH', KEYS[3], ARGV[1])
return {'queued', ''}
""")
# KEYS: contact hash. ARGV: agent id.
ACCEPT = Script("""
redis.call('HSET', KEYS[1], 'st', 'assigned')
redis.call('SPUBLISH', 'floor:notify', ARGV[1] .. '|')
return 1
""")
# KEYS: contact hash, idle agents set, queue list. ARGV: agent id.
COMPLETE = Script("""
redis.call('HSET', KEYS[1], 'st', 'completed')
local nxt = redis.call('LPOP', KEYS[3])
if nxt then
  redis.call('HSET', 'floor:c:' .. nxt, 'st', 'offered', 'agent', ARGV[1])
  redis.call('SPUBLISH', 'floor:notify', ARGV[1] .. '|' .. nxt)
else
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('SPUBLISH', 'floor:notify', ARGV[1] .. '|')
end
return 1
""")

BATCHER = web.AppKey("batcher", ScriptBatcher)
SOCKETS = web.AppKey("sockets", dict)


def contact(cid: str, state: str, agent: str | None) -> dict[str, Any]:
    """A contact of the router's answer's shape and about its size."""
    return {"id": cid, "state": state, "channel": "voice", "tier": "standard", "intent": "card",
            "customer_id": "cu-1", "agent": agent, "pools": ["cards"],
            "stages": [{"after": 0.0, "pools": ["cards"]}], "stage": 1, "rank": 1.7e9,
            "priority_offset": 0.0, "enqueued_at": 1.7e9, "created_at": 1.7e9,
            "offer_expires_at": None, "sla": "standard", "rules": [], "created": True,
            "gateway": "gw", "personal": None, "callback": None, "handoff": None}  # fmt: skip


def view(aid: str, offer: str) -> bytes:
    agent = {"id": aid, "state": "available", "reason": None, "load": 0, "capacity": 100,
             "team": "t1", "supervisor": None, "skills": {"cards": 5},
             "pools": ["cards"]}  # fmt: skip
    offers = [contact(offer, "offered", aid)] if offer else []
    return ENC.encode({"type": "agent", "agent": agent, "offers": offers})


async def create(request: web.Request) -> web.Response:
    body = CONTACT.decode(await request.read())
    key = "floor:c:" + body.id
    st, aid = await request.app[BATCHER].call(CREATE, (key, FREE, QUEUE), (body.id, body.channel))
    return web.Response(body=ENC.encode(contact(body.id, st, aid or None)), status=201,
                        content_type="application/json")  # fmt: skip


def action(script: Script, state: str, keys: tuple[str, ...]) -> Any:
    async def handler(request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        body = ACTION.decode(await request.read())
        await request.app[BATCHER].call(script, ("floor:c:" + cid, *keys), (body.agent_id,))
        return web.Response(body=ENC.encode(contact(cid, state, body.agent_id)),
                            content_type="application/json")  # fmt: skip

    return handler


async def desktop(request: web.Request) -> web.WebSocketResponse:
    aid = request.match_info["aid"]
    sock = web.WebSocketResponse(heartbeat=20)
    await sock.prepare(request)
    request.app[SOCKETS][aid] = sock
    try:
        await sock.send_bytes(view(aid, ""))
        async for _ in sock:  # until the desktop leaves
            pass
    finally:
        if request.app[SOCKETS].get(aid) is sock:
            del request.app[SOCKETS][aid]
    return sock


async def notifications(app: web.Application, url: str) -> None:
    """One sharded subscription; each message `<agent>|<offered contact or empty>`
    is pushed to that agent's desktop."""
    client = make_client(url, 5.0)
    pubsub = client.pubsub()
    await pubsub.ssubscribe(CHANNEL)
    sockets = app[SOCKETS]
    try:
        async for msg in pubsub.listen():
            if msg["type"] != "smessage":
                continue
            aid, _, cid = msg["data"].partition("|")
            sock = sockets.get(aid)
            if sock is not None and not sock.closed:
                await sock.send_bytes(view(aid, cid))
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


async def empty(_: web.Request) -> web.Response:
    return web.Response(text="")


def app_for(url: str, agents: list[str]) -> web.Application:
    app = web.Application()
    app[BATCHER] = ScriptBatcher(Shards(make_client(url, 5.0)))
    app[SOCKETS] = {}

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        client = make_client(url, 5.0)
        await client.delete(FREE, QUEUE)
        await client.sadd(FREE, *agents)
        await client.aclose()
        task = asyncio.create_task(notifications(app, url))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(lifespan)
    base = "/v1/workspaces/{ws}"
    app.router.add_get("/readyz", empty)
    app.router.add_get("/metrics", empty)  # no pause metrics: the harness reports none
    app.router.add_post(base + "/contacts", create)
    app.router.add_post(base + "/contacts/{cid}/accept", action(ACCEPT, "assigned", ()))
    app.router.add_post(
        base + "/contacts/{cid}/complete", action(COMPLETE, "completed", (FREE, QUEUE))
    )
    app.router.add_post(base + "/contacts/{cid}/resolve", empty)
    app.router.add_get(base + "/agents/{aid}/ws", desktop)
    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--redis", required=True)
    p.add_argument("--agents", type=int, default=5000)
    p.add_argument("--agent-prefix", default="lt-a")
    a = p.parse_args()
    app = app_for(a.redis, [f"{a.agent_prefix}{i:04d}" for i in range(a.agents)])
    apply_gc_policy(Settings.gc_thresholds)  # as `router serve` does, after the app is built
    web.run_app(
        app, host=a.host, port=a.port, access_log=None, print=None, loop=uvloop.new_event_loop()
    )


if __name__ == "__main__":
    main()
