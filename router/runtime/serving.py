"""Serving with a graceful drain: on SIGTERM every request in flight finishes.

aiohttp's own shutdown (`web.run_app`) marks every connection closing first and
from then on ignores the bytes that still arrive on it, so a request whose body
is still coming in can never finish: it is cut without an answer when the
shutdown timeout runs out. Here a shutdown goes:

1. stop listening: new connections are refused and go to another replica;
2. run the app's `on_shutdown` hooks: timer leases are handed back, long-polls
   answer now, event streams and WebSockets end;
3. wait (up to the shutdown timeout) until no request is in flight, reading
   request bodies to their end; a request arriving meanwhile on a kept-alive
   connection gets 503 with Retry-After (the client retries elsewhere);
4. only then close connections and tear the app down (`cleanup_ctx`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


class Drain:
    """Requests in flight, and whether the replica is draining."""

    def __init__(self) -> None:
        self.draining = False
        self.inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def wait_idle(self, within: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), within)
        except TimeoutError:
            return False
        return True


DRAIN = web.AppKey("drain", Drain)


class DrainingRunner(web.AppRunner):
    """An AppRunner whose cleanup comes after `drain`: see the module doc."""

    _drained = False

    async def drain(self, within: float) -> None:
        state = self.app[DRAIN]
        state.draining = True
        for site in list(self.sites):
            await site.stop()
        await self.app.shutdown()  # on_shutdown hooks, once (see `shutdown`)
        self._drained = True
        if not await state.wait_idle(within):
            log.warning(
                "shutdown: %d request(s) still in flight after %.0f s; closing them",
                state.inflight,
                within,
            )

    async def shutdown(self) -> None:
        if not self._drained:
            await super().shutdown()


async def _serve(
    app: web.Application,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    shutdown_timeout: float,
    runner_kwargs: dict[str, Any],
) -> None:
    runner = DrainingRunner(
        app, handle_signals=False, shutdown_timeout=shutdown_timeout, **runner_kwargs
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down: draining the requests in flight")
        await runner.drain(shutdown_timeout)
    finally:
        await runner.cleanup()


def run_app(
    app: web.Application,
    *,
    host: str,
    port: int,
    loop: asyncio.AbstractEventLoop,
    ssl_context: ssl.SSLContext | None = None,
    shutdown_timeout: float = 10.0,
    print: object = None,  # web.run_app's keyword, accepted: nothing is printed
    **runner_kwargs: Any,
) -> None:
    """`web.run_app` for one TCP address, with the drain above; `runner_kwargs`
    go to the server (access log, parser limits)."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(
            _serve(app, host, port, ssl_context, shutdown_timeout, runner_kwargs)
        )
    finally:
        leftover = asyncio.all_tasks(loop)  # the app's own were ended by its cleanup
        for task in leftover:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
