"""Short garbage-collector pauses on a replica holding thousands of WebSockets,
and the pauses and event-loop lag measured for operators.

Why: an open agent desktop connection is about a hundred GC-tracked objects, so
at 5,000 connections a full collection walks half a million objects and stops
the event loop for 200-500 ms (benchmarks/RESULTS.md). CPython starts a full
collection whenever a quarter more objects than at the last one have survived
into the oldest generation. With its default thresholds the objects of
requests in flight are promoted many times a second, so full collections came
every few seconds and every request behind one waited.

What: once the app is built, everything that exists is frozen (modules,
classes, routes and settings never become garbage, so no collection walks them
again), and a full collection waits for a thousand middle-generation ones
instead of ten. Young collections keep CPython's thresholds: they take a tenth
of a millisecond, and request objects die by reference counting before them
(they find no garbage). What a full collection would free (the cycles of closed
connections) waits minutes instead of seconds. `ROUTER_GC_THRESHOLDS` sets the
three thresholds ("700,10,10" is CPython's default).
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LAG_INTERVAL = 0.1  # seconds between two looks at the loop's lag


def apply_gc_policy(thresholds: tuple[int, int, int]) -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


class PauseMeter:
    """`router_gc_pause_seconds` by generation (a gc callback) and
    `router_event_loop_lag_seconds` (how late a 100 ms sleep wakes)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.gc_pause = Histogram(
            "router_gc_pause_seconds", "Garbage-collector pauses by generation",
            ["generation"], buckets=PAUSE_BUCKETS, registry=registry,
        )  # fmt: skip
        self.loop_lag = Histogram(
            "router_event_loop_lag_seconds",
            "How late the event loop ran a timer: time every request waited on top of its own",
            buckets=PAUSE_BUCKETS, registry=registry,
        )  # fmt: skip
        self._by_gen = [self.gc_pause.labels(str(g)) for g in range(3)]
        self._started = 0.0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._by_gen[info["generation"]].observe(time.perf_counter() - self._started)

    async def run(self) -> None:
        gc.callbacks.append(self._on_gc)
        loop = asyncio.get_running_loop()
        try:
            while True:
                start = loop.time()
                await asyncio.sleep(LAG_INTERVAL)
                self.loop_lag.observe(max(0.0, loop.time() - start - LAG_INTERVAL))
        finally:
            gc.callbacks.remove(self._on_gc)
