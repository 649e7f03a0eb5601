"""A webhook receiver for tests: a real aiohttp server on a loopback port."""

from __future__ import annotations

import asyncio
import base64
import os
from collections import Counter
from collections.abc import Callable

from aiohttp import web

from router.store.local import free_port


def new_secret(n: int = 32) -> str:
    return "whsec_" + base64.b64encode(os.urandom(n)).decode()


class Receiver:
    """An HTTP receiver on a loopback port that records every request it answers."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.status: Callable[[web.Request, int], int] = lambda req, n: 200
        self.hang: asyncio.Event | None = None  # set: the first request waits for it
        self.calls: list[tuple[str, str, int, dict[str, str], bytes]] = []
        self._runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hang is not None and not self.calls:
            self.calls.append((request.path, "", 0, {}, b""))
            await asyncio.wait_for(self.hang.wait(), 10)
            return web.Response(status=200)
        status = self.status(request, len(self.calls))
        msg_id = request.headers.get("webhook-id", "")
        self.calls.append((request.path, msg_id, status, dict(request.headers), body))
        return web.Response(status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        # No access log: the receiver is not under test, and it would log the URL.
        self._runner = web.AppRunner(app, shutdown_timeout=1, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def ok_ids(self, path: str | None = None) -> Counter[str]:
        return Counter(c[1] for c in self.calls if c[2] // 100 == 2 and path in (None, c[0]))
