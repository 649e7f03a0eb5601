"""Cost of each piece of an admission / agent-freed request, as minimum times.

    .venv/bin/python benchmarks/breakdown.py            # ~1-2 min, starts its own redis-server

Each piece runs many times in a row and the *fastest* batch counts: a minimum hardly
moves when the host takes the CPU away now and then, unlike throughput or p99, so on a
shared machine this is the steadiest view of where a request's time goes.

  Python, the router's own functions, no network (µs per call, fastest batch):
    decode, auth (token_hash), plan_route, the Engine method around the script call with
    the script's real reply replayed (payload, encode, reply -> ContactOut), render
  Redis, sequential round trips from redis-py asyncio (uvloop, hiredis), µs:
    EVALSHA `return 1` (the floor) and the real scripts: create -> offered, create ->
    queued, complete -> the agent's next contact assigned; plus Redis' own execution time
    per call (SLOWLOG with every command logged: min / p10 / p50; mean from commandstats)
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import uvloop
from redis.asyncio import Redis

from benchmarks.e2e.workspaces import _setup, admission_config, freed_config
from router.api.common import json_response
from router.routing.engine import Engine
from router.routing.model import AgentRef, ContactIn, Customer
from router.routing.records import contact_out, pairs
from router.routing.rules import plan_route
from router.routing.validation import parse_config
from router.runtime.settings import token_hash
from router.store.keys import WsKeys
from router.store.local import LocalRedis
from router.store.shards import Shards

NUMBER, REPEAT = 200, 10  # sequential script calls per batch, batches


def best(fn: Callable[[], object], number: int = 2000, repeat: int = 10) -> float:
    """Fastest per-call time (µs) over `repeat` batches of `number` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return round(min(times) * 1e6, 2)


async def abest(
    fn: Callable[[int], Awaitable[object]], number: int = NUMBER, repeat: int = REPEAT
) -> dict[str, float]:
    """Fastest per-call batch (µs), and the fastest and 10th-percentile single call."""
    batch, single = [], []
    i = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            s0 = time.perf_counter()
            await fn(i)
            single.append(time.perf_counter() - s0)
            i += 1
        batch.append((time.perf_counter() - t0) / number)
    single.sort()
    return {
        "batch_us": round(min(batch) * 1e6, 1),
        "min_us": round(single[0] * 1e6, 1),
        "p10_us": round(single[len(single) // 10] * 1e6, 1),
    }


async def server_us(
    client: Redis, fn: Callable[[], Awaitable[dict[str, float]]]
) -> dict[str, float]:
    """Also Redis' own execution time of each EVALSHA (no round trip), from a SLOWLOG
    that records every command: its minimum and 10th percentile, and the mean from
    INFO commandstats (which any stall of the host inflates)."""
    await client.config_set("slowlog-log-slower-than", 0)
    await client.config_set("slowlog-max-len", 100_000)
    await client.slowlog_reset()
    await client.config_resetstat()
    res = await fn()
    stats = await client.info("commandstats")
    # routing operations are FCALLs of the library, the baselines EVALSHAs
    ev = stats.get("cmdstat_fcall") or stats.get("cmdstat_evalsha", {})
    log = await client.slowlog_get(100_000)
    await client.config_set("slowlog-log-slower-than", 10_000)

    def name(e: dict[str, Any]) -> str:
        cmd = e["command"]
        return (cmd.decode() if isinstance(cmd, bytes) else str(cmd)).upper()

    durations = sorted(e["duration"] for e in log if name(e).startswith(("EVALSHA", "FCALL")))
    if durations:
        res["redis_exec_min_us"] = durations[0]
        res["redis_exec_p10_us"] = durations[len(durations) // 10]
        res["redis_exec_p50_us"] = durations[len(durations) // 2]
    res["redis_exec_mean_us"] = round(float(ev.get("usec_per_call", 0.0)), 1)
    calls = max(1, int(ev.get("calls", 1)))
    # commands a script runs, per script call (INFO commandstats counts them too)
    res["commands_per_call"] = {
        k[len("cmdstat_") :]: round(v["calls"] / calls, 2)
        for k, v in sorted(stats.items(), key=lambda kv: -kv[1]["calls"])
        if k.startswith("cmdstat_")
        and k
        not in (
            "cmdstat_evalsha",
            "cmdstat_fcall",
            "cmdstat_config",
            "cmdstat_slowlog",
            "cmdstat_info",
        )
    }
    return res


async def run() -> dict[str, Any]:
    local = LocalRedis()
    url = local.url
    client = Redis.from_url(url, decode_responses=True, socket_timeout=60)
    out: dict[str, Any] = {"python_us": {}, "redis_us": {}}
    calls = NUMBER * REPEAT
    try:
        # workspaces: offered (enough ready agents), queued (none), freed (one chain)
        await _setup(
            url,
            "bdo",
            admission_config(),
            [(f"o{i:05d}", {"cards": 5}) for i in range(calls + 10)],
            [],
        )
        await _setup(url, "bdq", admission_config(), [], [])
        await _setup(
            url,
            "bdf",
            freed_config(1),
            [("bdf-a-0000", {"k000": 5})],
            [(f"bdf-c-0000-{n:06d}", "i000") for n in range(calls + 10)],
        )
        engine = Engine(Shards(client))
        await engine.scripts.load_all(client)
        for name in ("bdo", "bdq", "bdf"):
            await engine.configs.get(name)

        # --- Redis: sequential round trips of the real scripts ------------------------
        r = out["redis_us"]
        one = await client.script_load("return 1")
        r["EVALSHA return 1"] = await server_us(
            client, lambda: abest(lambda i: client.evalsha(one, 0))
        )

        # what an EVAL of the routing code would pay on every call: router/routing/lua/lib/'s
        # top level (~70 local functions and tables); as a Functions library it runs once
        from router.routing.library import shared_code

        lib_only = await client.script_load(shared_code() + "\nreturn 1")
        rt_key = WsKeys("bdq").runtime
        r["shared code + return 1"] = await server_us(
            client, lambda: abest(lambda i: client.evalsha(lib_only, 1, rt_key))
        )

        def creator(ws_name: str, prefix: str) -> Callable[[int], Awaitable[Any]]:
            async def create(i: int) -> Any:
                body = ContactIn(
                    id=f"{prefix}{i}",
                    channel="voice",
                    intent="card",
                    customer=Customer(id=f"cu-{i}"),
                )
                return await engine.create_contact(ws_name, body, "gateway:b")

            return create

        # Engine.create_contact = Python work + one script round trip (batcher, 1 caller)
        r["create -> offered (Engine.create_contact)"] = await server_us(
            client, lambda: abest(creator("bdo", "o-"))
        )
        r["create -> queued (Engine.create_contact)"] = await server_us(
            client, lambda: abest(creator("bdq", "q-"))
        )

        async def complete(i: int) -> Any:
            c = await engine.contact_action(
                "bdf", f"bdf-c-0000-{i:06d}", "complete", ["bdf-a-0000"], "agent:b"
            )
            assert c.state == "completed", c.state
            return c

        r["complete -> next assigned (Engine.contact_action)"] = await server_us(
            client, lambda: abest(complete)
        )

        # --- Python pieces ------------------------------------------------------------
        py = out["python_us"]
        cfg = parse_config(json.dumps(admission_config()).encode())
        body = (
            b'{"id":"c-1","channel":"voice","intent":"card","customer":{"id":"cu-1","tier":"vip"}}'
        )
        dec = msgspec.json.Decoder(ContactIn)
        contact = dec.decode(body)
        py["decode POST contacts body (msgspec)"] = best(lambda: dec.decode(body))
        ref = msgspec.json.Decoder(AgentRef)
        py["decode POST complete body (msgspec)"] = best(
            lambda: ref.decode(b'{"agent_id":"bdf-a-0000"}')
        )
        py["auth: token_hash (sha256 of the bearer token)"] = best(
            lambda: token_hash("demo-gateway")
        )
        py["plan_route (rules)"] = best(
            lambda: plan_route(
                cfg,
                channel="voice",
                tier="vip",
                intent="card",
                language=None,
                flags=[],
                attributes={},
            )
        )
        # replay real script replies: the Engine's Python work around the script call
        ws = WsKeys("bdo")
        offered = await client.hgetall(ws.contact("o-0"))
        flat = [x for kv in offered.items() for x in kv]
        done = await client.hgetall(WsKeys("bdf").contact("bdf-c-0000-000000"))
        flat_done = [x for kv in done.items() for x in kv]
        replies = {"create": [1, flat], "complete": [1, flat_done]}

        async def replay(script: Any, keys: Any, args: Any) -> Any:
            return replies["complete" if script is engine.scripts["complete"] else "create"]

        engine.batcher.call = replay  # type: ignore[method-assign]
        t = await abest(lambda i: engine.create_contact("bdo", contact, "gateway:b"), number=2000)
        py["Engine.create_contact, script reply replayed"] = t["batch_us"]
        t = await abest(
            lambda i: engine.contact_action("bdf", "x", "complete", ["bdf-a-0000"], "agent:b"),
            number=2000,
        )
        py["Engine.contact_action(complete), script reply replayed"] = t["batch_us"]
        rendered = contact_out(pairs(flat), True)
        py["contact_out(pairs(reply)) (inside the Engine call above)"] = best(
            lambda: contact_out(pairs(flat), True)
        )
        py["json_response(ContactOut) (render)"] = best(lambda: json_response(rendered, 201))
        return out
    finally:
        await client.aclose()
        local.stop()


def main() -> None:
    res = uvloop.run(run())
    json.dump(res, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
