"""Audit trail cost: hashing and sealing 1,000 events, and verifying them.

    .venv/bin/pytest benchmarks/test_bench_audit.py -p no:xdist --benchmark-only

The events are real `contact.offered` events (with the explanation of the
decision, the largest kind) produced by the routing scripts, so the records
are the size the sealer meets in production.
"""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from benchmarks.conftest import Runner, median_s
from router.security.audit.records import GENESIS, ChainChecker, Source, seal_record
from router.security.audit.sealer import Chain, Sealer
from router.store.local import LocalRedis
from router.store.shards import Shards

N = 1000
IDS = itertools.count()


def _per_second(benchmark: Any) -> int | None:
    median = median_s(benchmark)
    return None if median is None else round(N / median)


def offered_event(i: int) -> str:
    """The shape the routing library records for an offer (explain with 5 candidates)."""
    return json.dumps({
        "type": "contact.offered", "contact": f"c{i}", "agent": "a17", "pool": "cards",
        "w": 25, "load": 50, "cap": 100, "state": "offered", "actor": "gateway:ivr",
        "at": 1_795_000_000_000 + i,
        "explain": {"pool": "cards", "strategy": "longest_idle", "winner": "a17",
                    "why": "first eligible ready agent by longest_idle (ties: longest idle)",
                    "rank": {"rank": 1_794_999_880_000 + i, "enqueued_at": 1_795_000_000_000,
                             "priority_offset_ms": 120000},
                    "candidates": [{"agent": f"a{k}", "pool": "cards",
                                    "score": 95_000_000_000 + k * 1000,
                                    "skipped": "recently rejected or missed this contact"}
                                   for k in range(4)]},
    }, separators=(",", ":"))  # fmt: skip


EVENTS = [offered_event(i) for i in range(N)]


def chain_of(events: list[str]) -> list[str]:
    lines, prev = [], GENESIS
    for seq, ev in enumerate(events, 1):
        line, prev = seal_record("ws:bench", seq, prev, f"{1_795_000_000_000 + seq}-0", ev)
        lines.append(line)
    return lines


def test_hash_chain_1000_events(benchmark: Any) -> None:
    """Pure Python: derive who/what/when/why, canonical JSON, SHA-256, 1,000 records."""
    lines = benchmark(chain_of, EVENTS)
    assert len(lines) == N
    benchmark.extra_info["events_per_second"] = _per_second(benchmark)
    benchmark.extra_info["record_bytes"] = round(sum(map(len, lines)) / N)


def test_verify_1000_records(benchmark: Any) -> None:
    lines = chain_of(EVENTS)

    def verify() -> int:
        checker = ChainChecker("ws:bench")
        for line in lines:
            assert checker.check(line) is None
        return checker.count

    assert benchmark(verify) == N
    benchmark.extra_info["records_per_second"] = _per_second(benchmark)


@pytest.fixture(scope="module")
def client(redis_server: LocalRedis, run: Runner) -> Any:
    c = Redis.from_url(redis_server.url, decode_responses=True)
    yield c
    run(c.aclose())


def test_seal_1000_events_through_redis(benchmark: Any, client: Redis, run: Runner) -> None:
    """One sealer batch end to end: XRANGE + XINFO, hashing, the seal script
    appending 1,000 records and moving the head (one round trip each)."""
    sealer = Sealer(Shards(client), batch=N)

    def setup() -> tuple[tuple[Chain], dict[str, Any]]:
        src = Source.workspace(f"bench{next(IDS)}-{uuid.uuid4().hex[:6]}")
        pipe = client.pipeline(transaction=False)
        for ev in EVENTS:
            pipe.xadd(src.stream, {"e": ev})
        run(pipe.execute())
        return (Chain(src),), {}

    def target(chain: Chain) -> None:
        assert run(sealer.advance(chain)) == N

    benchmark.pedantic(target, setup=setup, rounds=20, warmup_rounds=2)
    benchmark.extra_info["events_per_second"] = _per_second(benchmark)
    info = cast(dict[str, Any], run(client.info("memory")))
    benchmark.extra_info["redis_used_memory_mb"] = round(info["used_memory"] / 2**20, 1)
