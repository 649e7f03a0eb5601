"""Baseline 1: the smallest aiohttp server (uvloop, one process, no middleware).

    python benchmarks/hello_server.py --port 8081

Same framework, event loop and settings (`access_log=None`) as `router serve`,
so the gap to the router is the router's own work (auth, decoding, rules,
Redis round trip, encoding).
"""

from __future__ import annotations

import argparse

import uvloop
from aiohttp import web

BODY = b"Hello, World!"


async def hello(_: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="text/plain")


def _profile_on_signals(path: str) -> None:
    """SIGUSR1 starts cProfile (CPU time), SIGUSR2 stops it and writes `path`: the same
    switch as benchmarks/profiled_router.py, so call counts per request compare."""
    import cProfile
    import signal
    import time

    prof = cProfile.Profile(time.process_time)

    def stop(*_: object) -> None:
        prof.disable()
        prof.dump_stats(path)

    signal.signal(signal.SIGUSR1, lambda *_: prof.enable())
    signal.signal(signal.SIGUSR2, stop)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--profile-out", help="cProfile stats file, switched by SIGUSR1/SIGUSR2")
    args = p.parse_args()
    if args.profile_out:
        _profile_on_signals(args.profile_out)
    app = web.Application()
    app.router.add_get("/", hello)
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
