"""Request size limits: bodies (with and without Content-Length), URL and header lines."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from router.api.app import create_app
from router.api.server import SERVER_LIMITS
from router.runtime.settings import Settings, demo_token_spec
from tests.support.client import ADM, GW, SUP, small_config

LIMIT = 2048


async def _server(aiohttp_server: Any, redis_url: str) -> TestServer:
    settings = Settings.from_env(
        {
            "ROUTER_TOKENS": demo_token_spec(),
            "ROUTER_METRICS_GROUP": uuid.uuid4().hex,
            "ROUTER_MAX_BODY": str(LIMIT),
        },
        redis_url=redis_url,
    )
    # The parser limits `router serve` runs with.
    return await aiohttp_server(create_app(settings), **SERVER_LIMITS)  # type: ignore[no-any-return]


def _big_contact(cid: str) -> bytes:
    return (
        b'{"id": "%s", "channel": "voice", "customer": {"id": "cu1"}, '
        b'"attributes": {"pad": "%s"}}' % (cid.encode(), b"x" * (3 * LIMIT))
    )


async def _assert_too_large(resp: aiohttp.ClientResponse) -> None:
    assert resp.status == 413, await resp.text()
    assert resp.headers["Content-Type"] == "application/problem+json"
    problem = await resp.json(content_type=None)
    assert problem["limit"] == LIMIT and str(LIMIT) in problem["detail"]
    assert "ROUTER_MAX_BODY" in problem["detail"]


async def test_oversized_bodies_are_413_and_change_nothing(
    aiohttp_server: Any, redis_url: str, ws: str
) -> None:
    server = await _server(aiohttp_server, redis_url)
    base = str(server.make_url(f"/v1/workspaces/{ws}"))
    json_type = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        async with http.put(base, json=small_config(), headers=ADM) as r:
            assert r.status == 200, await r.text()
        # With Content-Length.
        async with http.post(
            base + "/contacts", data=_big_contact("big1"), headers={**GW, **json_type}
        ) as r:
            await _assert_too_large(r)

        # Chunked, no Content-Length: refused once the bytes read pass the limit.
        async def chunks() -> AsyncIterator[bytes]:
            body = _big_contact("big2")
            for i in range(0, len(body), 500):
                yield body[i : i + 500]

        async with http.post(base + "/contacts", data=chunks(), headers={**GW, **json_type}) as r:
            assert r.request_info.headers.get("Transfer-Encoding") == "chunked"
            assert "Content-Length" not in r.request_info.headers
            await _assert_too_large(r)
        # A config document over the limit, too.
        cfg = small_config()
        cfg["skills"] = [f"skill_{i:04d}" for i in range(400)]
        async with http.put(base, json=cfg, headers=ADM) as r:
            await _assert_too_large(r)
        # Nothing was created or changed, and the service goes on.
        for cid in ("big1", "big2"):
            async with http.get(f"{base}/contacts/{cid}", headers=SUP) as r:
                assert r.status == 404, await r.text()
        async with http.get(base, headers=SUP) as r:
            assert (await r.json())["config"]["skills"] == ["cards", "loans"]
        async with http.post(
            base + "/contacts",
            headers=GW,
            json={"id": "small", "channel": "voice", "customer": {"id": "cu1"}},
        ) as r:
            assert r.status == 201, await r.text()


async def test_url_and_header_lines_are_bounded(
    aiohttp_server: Any, redis_url: str, ws: str
) -> None:
    server = await _server(aiohttp_server, redis_url)
    async with aiohttp.ClientSession() as http:
        url = str(server.make_url(f"/v1/workspaces/{ws}/contacts/" + "c" * 5000))
        async with http.get(url, headers=SUP) as r:
            assert r.status == 400  # refused by the parser, before the application
        async with http.get(
            str(server.make_url("/healthz")), headers={"X-Padding": "p" * 9000}
        ) as r:
            assert r.status == 400
        many = {f"X-H{i}": "1" for i in range(80)}
        async with http.get(str(server.make_url("/healthz")), headers=many) as r:
            assert r.status == 400
        # An identity-provider token of several KiB still fits.
        async with http.get(
            str(server.make_url("/healthz")), headers={"Authorization": "Bearer " + "t" * 6000}
        ) as r:
            assert r.status == 200
        async with http.get(str(server.make_url(f"/v1/workspaces/{ws}/pools")), headers=SUP) as r:
            assert r.status in (200, 404)
