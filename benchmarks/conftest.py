"""Fixtures of the micro and scale benchmarks: a private redis-server, one event
loop for the session, and helpers that build `create.lua` arguments exactly as
`router.routing.engine.Engine.create_contact` does (without its config fetch).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import msgspec
import pytest
from redis.asyncio import Redis

from router.routing.config import RoutingConfig
from router.routing.engine import Engine
from router.routing.model import ContactIn, Customer
from router.routing.records import contact_record
from router.routing.rules import plan_route
from router.routing.slaops import start_plan
from router.routing.validation import parse_config
from router.store.local import LocalRedis
from router.store.shards import Shards

T = TypeVar("T")
_JSON = msgspec.json.Encoder()

# Filled by the scale benchmarks, printed at the end of the run.
SCALE_ROWS: list[dict[str, Any]] = []
MEMORY_ROWS: list[dict[str, Any]] = []


def bench_config(wrap_up: float = 0.0, capacity_channel_weight: int = 25) -> RoutingConfig:
    """Two pools, voice and chat, no wrap-up (complete frees the agent at once),
    and an answer clock with a boost warning at half the target."""
    doc = {
        "tiers": {"vip": {"priority_offset": 120}, "standard": {"priority_offset": 0}},
        "channels": {
            "voice": {"weight": 100, "offer_timeout": 20, "wrap_up": wrap_up},
            "chat": {"weight": capacity_channel_weight, "offer_timeout": 20, "wrap_up": wrap_up},
        },
        "skills": ["cards", "loans"],
        "pools": {
            "cards": {"skills": [{"skill": "cards", "min": 1}], "channels": ["voice", "chat"]},
            "loans": {"skills": [{"skill": "loans", "min": 1}], "channels": ["voice", "chat"]},
        },
        "sla_policies": {
            "std": {
                "answer": {
                    "target": 60,
                    "ladder": [{"at": 0.5, "actions": [{"do": "boost", "seconds": 30}]}],
                }
            },
        },
        "rules": [],
        "defaults": {"tier": "standard", "stages": [{"pools": ["cards"]}], "sla": "std"},
    }
    return parse_config(msgspec.json.encode(doc))


def create_args(cfg: RoutingConfig, body: ContactIn, version: int = 1) -> list[Any]:
    """ARGV of `create.lua` for a contact, as Engine.create_contact builds it."""
    plan = plan_route(
        cfg,
        channel=body.channel,
        tier=body.customer.tier,
        intent=body.intent,
        language=body.customer.language,
        flags=body.customer.flags,
        attributes=body.attributes,
        skills=body.skills,
    )
    sla, sla_plan = start_plan(cfg, plan, body.channel, body.intent, None)
    payload = contact_record(cfg, body, plan, sla, version, None)
    return ["gateway:bench", _JSON.encode(payload), sla_plan]


def contact(cid: str, channel: str = "voice", tier: str = "standard") -> ContactIn:
    return ContactIn(id=cid, channel=channel, customer=Customer(id="cu-" + cid, tier=tier))


@pytest.fixture(scope="session")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


class Runner:
    """Runs coroutines on the session's dedicated loop from synchronous benchmarks."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def __call__(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)


@pytest.fixture(scope="session")
def run(loop: asyncio.AbstractEventLoop) -> Runner:
    return Runner(loop)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    server = LocalRedis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def engine(redis_server: LocalRedis, run: Runner) -> Iterator[Engine]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    eng = Engine(Shards(client))
    run(eng.scripts.load_all(client))
    yield eng
    run(eng.close())
    run(client.aclose())


@pytest.fixture(scope="session")
def evalsha_baseline(engine: Engine, run: Runner) -> float:
    """Median seconds of one EVALSHA `return 1` through the same client and loop,
    driven the same way as the Lua benchmarks (run_until_complete per call)."""
    script = engine.shards.single.register_script("return 1")
    for _ in range(200):
        run(script())
    samples = []
    for _ in range(3000):
        t0 = time.perf_counter()
        run(script())
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    # the test modules import this file as `benchmarks.conftest`, pytest as `conftest`
    shared = sys.modules.get("benchmarks.conftest")
    scale_rows = shared.SCALE_ROWS if shared else SCALE_ROWS
    memory_rows = shared.MEMORY_ROWS if shared else MEMORY_ROWS
    _summary(terminalreporter, scale_rows, memory_rows)


def _summary(
    terminalreporter: Any, SCALE_ROWS: list[dict[str, Any]], MEMORY_ROWS: list[dict[str, Any]]
) -> None:
    if SCALE_ROWS:
        tr = terminalreporter
        tr.section("decision cost at scale (Redis-side, SLOWLOG, microseconds)")
        tr.write_line(
            f"{'script':<22}{'agents':>8}{'queued':>9}{'n':>5}{'min':>8}{'p50':>8}"
            f"{'p90':>8}{'client p50':>12}"
        )
        for r in SCALE_ROWS:
            tr.write_line(
                f"{r['script']:<22}{r['agents']:>8}{r['queued']:>9}{r['n']:>5}"
                f"{r['min_us']:>8}{r['p50_us']:>8}{r['p90_us']:>8}"
                f"{r['client_p50_us']:>12.0f}"
            )
        by: dict[str, list[dict[str, Any]]] = {}
        for r in SCALE_ROWS:
            by.setdefault(r["script"], []).append(r)
        for name, rows in by.items():
            if len(rows) > 1:
                lo, hi = rows[0], rows[-1]
                tr.write_line(
                    f"growth {name}: p50 x{hi['p50_us'] / lo['p50_us']:.2f}, "
                    f"min x{hi['min_us'] / lo['min_us']:.2f} "
                    f"({lo['agents']}/{lo['queued']} -> {hi['agents']}/{hi['queued']})"
                )
    if MEMORY_ROWS:
        terminalreporter.section("Redis memory (INFO memory used_memory delta)")
        for r in MEMORY_ROWS:
            terminalreporter.write_line(
                f"{r['what']:<58} n={r['n']:>7}  {r['bytes_each']:>7.1f} bytes each"
            )


def median_s(benchmark: Any) -> float | None:
    """The benchmark's median seconds; None when run with --benchmark-disable
    (once each, as the suite's smoke test runs them: no figures to note)."""
    stats = benchmark.stats
    return None if stats is None else float(stats.stats.median)
