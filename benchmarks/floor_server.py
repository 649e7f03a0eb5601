"""The admission request's floor, layer by layer: an aiohttp + uvloop server
answering `POST /v1/workspaces/{ws}/contacts` with less and less left out.

    python benchmarks/floor_server.py --variant http --port 8082 [--redis URL]

Variants (each adds to the one before):
  http     the route, the request body read, a fixed 201 JSON answer of the
           router's size (what HTTP itself costs for this exchange)
  codec    the body decoded into the router's `ContactIn` and a `ContactOut`
           encoded (msgspec), as the router does
  redis    one script call per request through the router's own `ScriptBatcher`
           (EVALSHA `return 1`): the Redis round trip's floor
  routes   the router's route table (every route of `router serve`, this
           handler on the admission route) and two middlewares of the
           router's shape: what dispatch and layering add

`benchmarks/floor.py` runs them beside hello world and the real router.
"""

from __future__ import annotations

import argparse
from typing import Any

import msgspec
import uvloop
from aiohttp import web

from router.routing.model import ContactIn, ContactOut
from router.store.batch import ScriptBatcher
from router.store.client import make_client
from router.store.scripts import Script
from router.store.shards import Shards

ENC = msgspec.json.Encoder()
DEC = msgspec.json.Decoder(ContactIn)
ONE = Script("return 1")
BATCHER = web.AppKey("batcher", ScriptBatcher)


def handler(variant: str, sample: bytes) -> Any:
    """`sample`: a real answer of the router to this request (its size and shape)."""
    base = msgspec.json.decode(sample, type=ContactOut)

    async def http(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=sample, status=201, content_type="application/json")

    async def codec(request: web.Request) -> web.Response:
        body = DEC.decode(await request.read())
        out = msgspec.structs.replace(base, id=body.id, customer_id=body.customer.id)
        return web.Response(body=ENC.encode(out), status=201, content_type="application/json")

    async def redis(request: web.Request) -> web.Response:
        body = DEC.decode(await request.read())
        await request.app[BATCHER].call(ONE, (), ())
        out = msgspec.structs.replace(base, id=body.id, customer_id=body.customer.id)
        return web.Response(body=ENC.encode(out), status=201, content_type="application/json")

    return {"http": http, "codec": codec, "redis": redis, "routes": redis}[variant]


async def ready(_: web.Request) -> web.Response:
    return web.Response(text="ok")


@web.middleware
async def outer(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    finally:
        request.match_info.route.resource  # noqa: B018 - the route label lookup


@web.middleware
async def inner(request: web.Request, handler: Any) -> web.StreamResponse:
    request.headers.get("Authorization", "")
    return await handler(request)


def app_for(variant: str, redis_url: str | None, sample: bytes) -> web.Application:
    routed = variant == "routes"
    app = web.Application(middlewares=[outer, inner] if routed else [])
    if redis_url:
        batcher = ScriptBatcher(Shards(make_client(redis_url, 5.0)))
        app[BATCHER] = batcher
    path = "/v1/workspaces/{ws}/contacts"
    app.router.add_get("/ready", ready)
    if routed:  # the router's whole route table, this handler on the admission route
        from router.api.appkeys import SETTINGS
        from router.api.routes import setup_routes
        from router.runtime.settings import Settings, demo_token_spec

        app[SETTINGS] = Settings.from_env({"ROUTER_TOKENS": demo_token_spec()}, redis_url=redis_url)
        setup_routes(app)
        resource = next(r for r in app.router.resources() if r.canonical == path)
        for route in resource:
            if route.method == "POST":
                # the real table with one handler swapped (no public setter)
                route._handler = handler(variant, sample)
    else:
        app.router.add_post(path, handler(variant, sample))
    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--variant", choices=("http", "codec", "redis", "routes"), required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--redis", help="Redis URL (variants redis and routes)")
    p.add_argument("--sample", required=True, help="file: the router's answer to one create")
    a = p.parse_args()
    with open(a.sample, "rb") as f:
        app = app_for(a.variant, a.redis, f.read())
    web.run_app(
        app, host=a.host, port=a.port, access_log=None, print=None, loop=uvloop.new_event_loop()
    )


if __name__ == "__main__":
    main()
