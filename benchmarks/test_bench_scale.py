"""Decision cost at scale: Redis-side execution time of `create` and of the
agent-freed path (`complete` -> next offer) from SLOWLOG (slowlog-log-slower-than
0: no network, no client), with 100/1k/10k agents and 1k/10k/100k queued
contacts; plus Redis memory per queued contact and per pending timer.

Agents and waiting contacts are written directly (pipelined HSET/ZADD/SADD with
the fields and keys agent_upsert/agent_state/create write: lua/lib `enqueue`,
`refresh_agent`; router/store/keys.py). Every agent is busy holding one assigned call,
so nobody is ready: `create` queues, and `complete` frees the holder, which takes
the best-ranked waiting call. Nothing about time is asserted.

    .venv/bin/pytest benchmarks/test_bench_scale.py -p no:xdist --benchmark-only
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from benchmarks.conftest import (
    MEMORY_ROWS,
    SCALE_ROWS,
    Runner,
    bench_config,
    contact,
    create_args,
    median_s,
)
from router.routing.engine import Engine
from router.routing.records import pairs
from router.store.keys import WsKeys
from router.store.local import LocalRedis
from router.store.shards import Shards

SCALES = [(100, 1_000), (1_000, 10_000), (10_000, 100_000)]
CREATE_ROUNDS = 200
COMPLETE_ROUNDS = 100  # <= the smallest agent count: one held call per agent
EPOCH = 1_700_000_000_000  # lua/lib/00_state.lua: idle scores are offset by this
IDS = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[LocalRedis]:
    """Its own redis-server: FLUSHALL between scales and clean memory numbers."""
    s = LocalRedis()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def eng(server: LocalRedis, run: Runner) -> Iterator[Engine]:
    client = Redis.from_url(server.url, decode_responses=True)
    e = Engine(Shards(client))
    run(e.scripts.load_all(client))
    run(client.config_set("slowlog-log-slower-than", 0))
    run(client.config_set("slowlog-max-len", 10_000))
    yield e
    run(e.close())
    run(client.aclose())


def contact_fields(cid: str, now: int, age_ms: int, st: str, agent: str = "") -> dict[str, Any]:
    """A voice contact hash as create.lua leaves it (standard tier, pool cards)."""
    enq = now - age_ms
    f: dict[str, Any] = {
        "id": cid,
        "ch": "voice",
        "tier": "standard",
        "intent": "",
        "lang": "",
        "cust": "cu-" + cid,
        "stages": "0:cards",
        "off": 0,
        "toff": 0,
        "roff": 0,
        "sla": "",
        "rules": "",
        "req": "",
        "attrs": "{}",
        "cfgv": 1,
        "w": 100,
        "st": st,
        "enq": enq,
        "created": enq,
        "rank": enq,
        "stage": 1,
        "og": 0,
        "agent": agent,
    }
    if agent:
        f.update({"og": 1, "pool": "cards", "ans": now - 1000, "oexp": ""})
    return f


async def populate(client: Redis, k: WsKeys, agents: int, queued: int, now: int) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(agents):  # available but full: each holds one assigned call
        aid, held = f"a{i}", f"h{i}"
        pipe.hset(
            k.agent(aid),
            mapping={
                "id": aid,
                "st": "available",
                "load": 100,
                "cap": 100,
                "idle": now - i,
                "missed": 0,
                "reason": "",
                "team": "",
                "sup": "",
                "skills": '{"cards":5}',
                "pools": "cards=5",
                "s:cards": 5,
                "h:" + held: 100,
            },
        )
        pipe.sadd(k.agents, aid)
        pipe.sadd(k.members("cards"), aid)
        pipe.sadd(k.staffed("cards"), aid)
        pipe.hset(k.contact(held), mapping=contact_fields(held, now, 60_000, "assigned", aid))
        if len(pipe) >= 5000:
            await pipe.execute()
    for i in range(queued):  # enqueue(): rank in q:<pool>:<ch>, arrival in qa:<pool>
        cid = f"w{i}"
        f = contact_fields(cid, now, 3_600_000 - i * 10, "queued")
        pipe.hset(k.contact(cid), mapping=f)
        pipe.zadd(k.queue("cards", "voice"), {cid: f["rank"]})
        pipe.zadd(k.queue_age("cards"), {cid: f["enq"]})
        if len(pipe) >= 6000:
            await pipe.execute()
    await pipe.execute()


async def used_memory(client: Redis) -> int:
    return int((await client.info("memory"))["used_memory"])


async def server_us(client: Redis) -> list[int]:
    rows = await client.slowlog_get(10_000)
    out = []
    for r in rows:
        cmd = r["command"]
        cmd = cmd.decode() if isinstance(cmd, bytes) else cmd
        if cmd.upper().startswith(("FCALL", "EVALSHA")):  # routing functions, or scripts
            out.append(int(r["duration"]))
    return sorted(out)


def record(benchmark: Any, script: str, agents: int, queued: int, us: list[int]) -> None:
    row = {
        "script": script,
        "agents": agents,
        "queued": queued,
        "n": len(us),
        "min_us": us[0],
        "p50_us": int(statistics.median(us)),
        "p90_us": us[int(len(us) * 0.9)],
        "client_p50_us": (median_s(benchmark) or 0.0) * 1e6,
    }
    benchmark.extra_info.update({f"redis_{k}": v for k, v in row.items() if k != "script"})
    first = next((r for r in SCALE_ROWS if r["script"] == script), None)
    SCALE_ROWS.append(row)
    if first is not None:
        benchmark.extra_info["growth_p50_vs_smallest"] = round(row["p50_us"] / first["p50_us"], 2)
        benchmark.extra_info["growth_min_vs_smallest"] = round(row["min_us"] / first["min_us"], 2)


@pytest.fixture(scope="module", params=SCALES, ids=[f"{a}ag-{q}q" for a, q in SCALES])
def scale(request: Any, eng: Engine, run: Runner) -> tuple[int, int, WsKeys]:
    agents, queued = request.param
    client = eng.shards.single
    run(client.flushall())
    run(client.config_set("slowlog-log-slower-than", 0))
    eng.configs = type(eng.configs)(Shards(client))  # forget cached configs of flushed workspaces
    ws = f"sc{agents}"
    k = WsKeys(ws)
    run(eng.put_config(ws, bench_config(), "admin:bench"))
    now = int(run(client.time())[0]) * 1000
    run(populate(client, k, agents, queued, now))
    assert run(client.zcard(k.queue("cards", "voice"))) == queued
    return agents, queued, k


def test_create_at_scale(
    benchmark: Any, scale: tuple[int, int, WsKeys], eng: Engine, run: Runner
) -> None:
    agents, queued, k = scale
    cfg = bench_config()
    script = eng.scripts["create"]

    def setup() -> tuple[tuple[str, list[Any]], dict[str, Any]]:
        cid = f"n{next(IDS)}"
        return (cid, create_args(cfg, contact(cid))), {}

    def target(cid: str, args: list[Any]) -> None:
        res = run(script(keys=[k.runtime, k.contact(cid)], args=args, client=eng.shards.single))
        assert pairs(res[1])["st"] == "queued"

    run(eng.shards.single.slowlog_reset())
    benchmark.pedantic(target, setup=setup, rounds=CREATE_ROUNDS, warmup_rounds=0)
    record(benchmark, "create (queued)", agents, queued, run(server_us(eng.shards.single)))


def test_complete_next_offer_at_scale(
    benchmark: Any, scale: tuple[int, int, WsKeys], eng: Engine, run: Runner
) -> None:
    agents, queued, k = scale
    script = eng.scripts["complete"]
    holders = iter(range(COMPLETE_ROUNDS))

    def setup() -> tuple[tuple[int], dict[str, Any]]:
        return (next(holders),), {}

    def target(i: int) -> None:
        res = run(
            script(
                keys=[k.runtime, k.contact(f"h{i}")],
                args=["agent:bench", f"a{i}"],
                client=eng.shards.single,
            )
        )
        assert res[0] == 1

    run(eng.shards.single.slowlog_reset())
    benchmark.pedantic(target, setup=setup, rounds=COMPLETE_ROUNDS, warmup_rounds=0)
    us = run(server_us(eng.shards.single))
    # each freed agent was offered the best-ranked waiting call
    assert run(eng.shards.single.hget(k.agent("a0"), "load")) == "100"
    assert run(eng.shards.single.zcard(k.queue("cards", "voice"))) < queued + CREATE_ROUNDS
    record(benchmark, "complete -> next offer", agents, queued, us)


@pytest.mark.parametrize("archived", [False, True], ids=["no-archive", "archived"])
def test_memory_per_queued_contact_real_create(
    benchmark: Any, eng: Engine, run: Runner, archived: bool
) -> None:
    """N contacts through create.lua (queued, SLA clock with 2 timers, events).
    Archived: the workspace's contacts keep no timeline copy, and its stream is
    trimmed once archived and sealed, so the stream entry is not the contact's."""
    client = eng.shards.single
    run(client.flushall())
    run(client.slowlog_reset())
    run(client.config_set("slowlog-log-slower-than", -1))  # the log itself uses memory
    eng.configs = type(eng.configs)(Shards(client))
    n = 5_000
    cfg = bench_config()
    k = WsKeys("memc")
    run(eng.put_config("memc", cfg, "admin:bench"))
    if archived:
        run(client.hset(k.runtime, "arch", "1"))  # as the archiver marks it
    script = eng.scripts["create"]

    async def fill() -> None:
        for i in range(n):
            await script(
                keys=[k.runtime, k.contact(f"m{i}")],
                args=create_args(cfg, contact(f"m{i}")),
                client=eng.shards.single,
            )

    before = run(used_memory(client))
    benchmark.pedantic(lambda: run(fill()), rounds=1, iterations=1)
    after = run(used_memory(client))
    stream = run(client.memory_usage(k.events, samples=0)) or 0
    timers = run(client.zcard(k.timers))
    total = (after - before) / n
    label = "archived workspace" if archived else "no archive"
    MEMORY_ROWS.append(
        {
            "what": f"queued contact via create.lua, {label} (all keys it writes)",
            "n": n,
            "bytes_each": total,
        }
    )
    MEMORY_ROWS.append({"what": "  of which events stream entry", "n": n, "bytes_each": stream / n})
    MEMORY_ROWS.append(
        {"what": "  excluding events stream", "n": n, "bytes_each": total - stream / n}
    )
    benchmark.extra_info.update(
        {
            "bytes_per_contact": round(total, 1),
            "stream_bytes_per_contact": round(stream / n, 1),
            "timers_per_contact": timers / n,
        }
    )


def test_memory_per_queued_contact_direct(benchmark: Any, eng: Engine, run: Runner) -> None:
    """Contact hash + its two queue entries only (what the scale runs write)."""
    client = eng.shards.single
    run(client.flushall())
    n = 100_000
    k = WsKeys("memd")
    now = int(run(client.time())[0]) * 1000
    before = run(used_memory(client))
    benchmark.pedantic(lambda: run(populate(client, k, 0, n, now)), rounds=1, iterations=1)
    each = (run(used_memory(client)) - before) / n
    MEMORY_ROWS.append(
        {"what": "queued contact, hash + q + qa entries (direct)", "n": n, "bytes_each": each}
    )
    benchmark.extra_info["bytes_per_contact"] = round(each, 1)


def test_memory_per_pending_timer(benchmark: Any, eng: Engine, run: Runner) -> None:
    client = eng.shards.single
    run(client.flushall())
    n = 100_000
    k = WsKeys("memt")
    now = int(run(client.time())[0]) * 1000

    async def fill() -> None:
        pipe = client.pipeline(transaction=False)
        for start in range(0, n, 1000):
            pipe.zadd(
                k.timers,
                {f"sla|c{i:07d}|answer|0|1": now + 60_000 + i for i in range(start, start + 1000)},
            )
        await pipe.execute()

    before = run(used_memory(client))
    benchmark.pedantic(lambda: run(fill()), rounds=1, iterations=1)
    each = (run(used_memory(client)) - before) / n
    MEMORY_ROWS.append(
        {
            "what": "pending timer (timers zset, 'sla|c0000001|answer|0|1')",
            "n": n,
            "bytes_each": each,
        }
    )
    benchmark.extra_info["bytes_per_timer"] = round(each, 1)
