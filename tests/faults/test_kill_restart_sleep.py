"""Fault tolerance with real processes: replicas killed and terminated, Redis
restarted from its append-only file and put to sleep. Clients retry the way
gateways and agent desktops do; afterwards the event stream is replayed to show
nothing was lost, nothing was held twice and every SLA step fired once."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest
import uvloop
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.routing.engine import Engine
from router.routing.model import AgentIn, AgentStateIn, ContactIn, Customer
from router.routing.validation import parse_config
from router.store.keys import WsKeys
from router.store.shards import Shards
from sla.timers import TimerWorker
from tests.support.fault_runs import (
    BREACH_MS,
    KILL_EVERY,
    KILL_STEPS,
    LOAD_S,
    OUTAGE,
    WARN_MS,
    assert_unavailable,
    kill_load,
    redis_restart,
    sla_config,
    slow_redis,
    ws_name,
)
from tests.support.fault_sigterm import LONG_LEASE, N_HELD, sigterm
from tests.support.invariants import check_sla_steps, replay

# --- an SLA step that came due before its clock stopped ------------------------------


async def test_step_due_before_the_answer_is_recorded_when_its_timer_lags(
    redis_url: str,
) -> None:
    """The timer worker lagged (or its replica died holding the lease) and the
    contact was answered first: the warning and breach that came due before the
    answer are recorded once, late, and change nothing else; the escalation not
    yet due when the clock stopped never fires."""
    client = Redis.from_url(redis_url, decode_responses=True)
    engine = Engine(Shards(client))  # no timer worker runs: the test fires by hand
    ws = ws_name()
    keys = WsKeys(ws)
    try:
        await engine.scripts.load_all(client)
        cfg = sla_config(0.2, [{"at": 0.5}, {"at": 1.0}, {"after": 60}])
        await engine.put_config(ws, parse_config(msgspec.json.encode(cfg)), "admin:test")
        await engine.upsert_agent(ws, "a1", AgentIn(skills={"cards": 5}), "admin:test")
        await engine.set_agent_state(ws, "a1", AgentStateIn(state="available"), "admin:test")
        body = ContactIn(id="c1", channel="voice", customer=Customer(id="cu1"))
        assert (await engine.create_contact(ws, body, "gateway:test")).state == "offered"

        async def claim(claim_id: int) -> list[tuple[str, int]]:
            res = await engine.scripts["claim"](
                keys=[keys.timers, keys.timer_leases, keys.timer_lease_info, keys.timer_claims],
                args=[100, 5000, "replica-x", claim_id],
                client=client,
            )
            return list(zip(res[2::3], res[3::3], strict=True))

        await asyncio.sleep(0.15)
        leased = await claim(1)  # the warning (due at 100 ms), leased and not fired yet
        await asyncio.sleep(0.15)  # the breach (200 ms) is due too, not even claimed
        await engine.contact_action(ws, "c1", "accept", ["a1"], "agent:a1")
        leased += await claim(2)
        assert [m.split("|")[3] for m, _ in leased] == ["0", "1"]
        fire_keys = [keys.runtime, keys.timer_leases, keys.timer_lease_info]
        args = [x for m, due in leased for x in (m, due)]
        assert await engine.scripts["fire"](keys=fire_keys, args=args, client=client) == [1, 1]
        assert await engine.scripts["fire"](keys=fire_keys, args=args, client=client) == [
            0,
            0,
        ]  # once
        view = await engine.get_contact(ws, "c1")
        steps = [e for e in view.timeline or [] if e.type.startswith("sla.")]
        assert [(e.type, e.step) for e in steps] == [
            ("sla.missed", None),
            ("sla.warning", 0),
            ("sla.breached", 1),
        ]
        assert all(e.late_ms is not None and e.late_ms > 100 for e in steps[1:])
        assert view.state == "assigned" and view.sla_clocks is not None
        assert view.sla_clocks["answer"].status == "missed"  # the outcome stands
        assert [
            m for m in await client.zrange(keys.timers, 0, -1) if m.startswith("sla|")
        ] == []  # the escalation (60 s) was dropped
    finally:
        await engine.close()
        await client.aclose()


async def test_claim_whose_reply_was_lost_is_fired_at_the_next_poll(redis_url: str) -> None:
    """The claim went through but its reply never came (a timeout): the worker
    asks again with the same claim id and gets those timers back at once,
    instead of leaving them leased to itself until the lease runs out."""
    client = Redis.from_url(redis_url, decode_responses=True)
    engine = Engine(Shards(client))
    ws = ws_name()
    keys = WsKeys(ws)
    calls = 0

    async def lossy_claim(keys: list[str], args: list[object], client: Redis) -> Any:
        nonlocal calls
        calls += 1
        res = await engine.scripts["claim"](keys=keys, args=args, client=client)
        if calls == 1:
            raise RedisTimeoutError("Timeout reading from socket")  # executed, reply lost
        return res

    async def fire(w: WsKeys, timers: list[tuple[str, int]]) -> object:
        return await engine.scripts["fire"](
            keys=[w.runtime, w.timer_leases, w.timer_lease_info],
            args=[x for t in timers for x in t],
            client=client,
        )

    worker = TimerWorker(
        Shards(client), lossy_claim, engine.scripts["handback"], fire, lease_ms=60_000
    )
    try:
        await engine.scripts.load_all(client)
        cfg = sla_config(0.1, [{"at": 0.5}])
        await engine.put_config(ws, parse_config(msgspec.json.encode(cfg)), "admin:test")
        body = ContactIn(id="c1", channel="voice", customer=Customer(id="cu1"))
        await engine.create_contact(ws, body, "gateway:test")
        await asyncio.sleep(0.2)  # the warning and the breach are due
        with pytest.raises(RedisTimeoutError):
            await worker.claim_once(keys)
        assert await client.zcard(keys.timer_leases) == 2  # leased for a minute
        assert await worker.claim_once(keys) == 2  # the same claim id: the same timers
        view = await engine.get_contact(ws, "c1")
        assert [e.type for e in view.timeline or [] if e.type.startswith("sla.")] == [
            "sla.warning",
            "sla.breached",
        ]
        assert await client.zcard(keys.timer_leases) == 0
        assert await worker.claim_once(keys) == 0  # a new claim id: nothing else is due
    finally:
        await engine.close()
        await client.aclose()


@pytest.mark.slow
@pytest.mark.timeout(60, func_only=True)  # func_only: not the wait for one_at_a_time
def test_slow_redis_answers_503_within_the_timeout(tmp_path: Path, one_at_a_time: None) -> None:
    out = uvloop.run(slow_redis(tmp_path))
    health = out["health"]
    took = ", ".join(f"{r['s']:.2f}" for r in out["during"])
    later = ", ".join(f"{r['s']:.2f}" for r in out["later"])
    print(
        f"\nduring DEBUG SLEEP 3 with ROUTER_REDIS_TIMEOUT=0.5: requests answered in "
        f"{took} s, the next ones in {later} s; /healthz answered "
        f"{len(health)} times, slowest {max(s for _, s in health):.3f} s"
    )
    assert_unavailable(out["during"], within=2.0)  # the timeout, not the 3 s sleep
    assert_unavailable(out["later"], within=1.5)
    assert out["ready_during"]["status"] == 503
    # the event loop was never blocked by the sleeping Redis
    assert len(health) >= 10 and all(st == 200 and s < 1.0 for st, s in health), health
    assert out["ready_after"]["status"] == 200
    assert all(s == 200 and st in ("queued", "offered") for s, st in out["before_states"])
    ids = {f"b{i}" for i in range(5)} | {f"s{i}" for i in range(8)}
    assert out["created"] == dict.fromkeys(ids, 1)


@pytest.mark.slow
@pytest.mark.timeout(90, func_only=True)
def test_redis_restarted_from_aof_during_load(tmp_path: Path, one_at_a_time: None) -> None:
    out = uvloop.run(redis_restart(tmp_path))
    events, down_ms, up_ms = out["events"], out["down_ms"], out["up_ms"]
    rep = replay(events)
    sla = check_sla_steps(events, "answer", {0: WARN_MS, 1: BREACH_MS})
    overdue = [
        e
        for e in events
        if e["type"] in ("sla.warning", "sla.breached")
        and down_ms <= e["at"] - e["late_ms"] <= up_ms
    ]
    after_up = [e["at"] - up_ms for e in overdue]
    print(
        f"\n{len(out['acked'])} contacts acknowledged ({len(out['acked_before'])} before "
        f"the outage); {len(out['down'])} requests during the {OUTAGE:.0f} s outage answered "
        f"in at most {max(r['s'] for r in out['down']):.3f} s; replicas ready "
        f"{out['ready_s']:.1f} s after Redis restarted; {len(overdue)} SLA steps came due "
        f"during the outage and fired {min(after_up, default=0)}..{max(after_up, default=0)}"
        f" ms after it; router_timers_late_total {out['late_metric']:.0f}; client "
        f"{out['stats']}"
    )
    assert_unavailable(out["down"], within=2.0)  # ROUTER_REDIS_TIMEOUT=1, never a hang
    assert all(r["status"] == 200 for r in out["health"][0::2]), out["health"]  # /healthz
    assert all(r["status"] == 503 for r in out["health"][1::2]), out["health"]  # /readyz
    # nothing acknowledged was lost; every contact created and ended once
    assert set(rep["created"]) == out["acked"] and set(rep["created"].values()) == {1}
    assert set(rep["ended"]) == out["acked"] and set(rep["ended"].values()) == {1}
    assert not rep["problems"], rep["problems"]
    # timers that came due while Redis was down fired once it was back, counted late
    assert overdue and all(e["late_ms"] > 250 for e in overdue)
    assert max(after_up) < 5000, sorted(after_up)[-5:]
    assert out["late_metric"] >= len(overdue)
    assert not sla["n_problems"], sla["problems"]


@pytest.mark.slow
@pytest.mark.timeout(90, func_only=True)
def test_sigterm_drains_requests_and_hands_back_timer_leases(
    tmp_path: Path, one_at_a_time: None
) -> None:
    out = uvloop.run(sigterm(tmp_path))
    h, d = out["handed"], out["drained"]
    fired_after = [e["at"] - h["restored_ms"] for e in h["warned"]]
    handed = re.search(r"(\d+) timer lease\(s\) handed back", h["a_log"])
    how = Counter(how for _, how, _ in d["outcomes"])
    sla = check_sla_steps(h["events"], "answer", {0: 1500, 1: 3000})
    print(
        f"\nhand-back: {len(h['held'])} of {N_HELD} warnings leased to the terminated "
        f"replica for {LONG_LEASE} s; {handed.group(1) if handed else '?'} handed back; "
        f"fired {min(fired_after)}..{max(fired_after)} ms after its link came back "
        f"(the leases ran out {h['claimed_ms'] + LONG_LEASE * 1000 - h['restored_ms']} ms "
        f"later); drain: long-polls answered {[round(t, 2) for *_, t in d['polls']]} s "
        f"after SIGTERM, exit {d['exit']} after {d['exit_s']:.1f} s, new connection "
        f"{d['new_connection']}, creates in flight {dict(how)}"
    )
    # the leases were held: nobody fired them while the replica was alive
    assert h["held"] and not h["warned_before"] and h["still_held"] == len(h["held"])
    # handed back on shutdown and fired at once by the other replica, each once
    assert handed and int(handed.group(1)) >= len(h["held"]), h["a_log"][-3000:]
    assert len(h["warned"]) == len(h["held"]) == len({e["contact"] for e in h["warned"]})
    assert max(fired_after) < (LONG_LEASE - 30) * 1000  # long before the leases ran out
    assert h["leased"] == 0 and h["exit"] == 0
    assert sla["due"] == 2 * N_HELD and not sla["n_problems"], sla["problems"]
    # drain: in-flight requests completed, new connections refused, a clean exit
    assert d["new_connection"] == "refused" and d["alive_while_draining"]
    assert d["slow"][0] == 201 and d["slow_exists"], d["slow"]
    assert all(st == 200 and data["offers"] == [] and t < 5 for st, data, t in d["polls"])
    assert d["exit"] == 0
    # every create the replica received was answered: none exists without a 2xx
    unanswered = [
        (cid, how) for cid, how, exists in d["outcomes"] if exists and how not in ("200", "201")
    ]
    assert not unanswered, unanswered
    assert how["201"] > 0


@pytest.mark.slow
@pytest.mark.timeout(420, func_only=True)
def test_replica_killed_every_10_s_under_load(tmp_path: Path, one_at_a_time: None) -> None:
    out = uvloop.run(kill_load(tmp_path))
    events, acked = out["events"], out["acked"]
    rep = replay(events)
    sla = check_sla_steps(events, "answer", KILL_STEPS)
    retries = {k: v for k, v in out["stats"].items() if k.startswith("retried_")}
    final = Counter(
        e["type"]
        for e in events
        if e["type"] in ("contact.completed", "contact.abandoned", "contact.expired")
    )
    print(
        f"\n{len(acked)} contacts over {out['load_s']:.0f} s, {out['kills']} replicas "
        f"killed (SIGKILL) and restarted; client retries {retries}; {len(events)} events, "
        f"ended {dict(final)}; SLA steps due {sla['due']}, fired {sla['fired']} "
        f"(by step {dict(sorted(sla['by_step'].items()))}, {sla['late']} late, "
        f"{sla['after_stop']} recorded after the answer); "
        f"request latency with retries p50 {out['latency'][0]:.3f} s, p99 "
        f"{out['latency'][1]:.3f} s, max {out['latency'][2]:.3f} s; client {out['stats']}"
    )
    assert out["kills"] >= int(LOAD_S / KILL_EVERY) - 1
    # 0 lost: every acknowledged contact was created once and ended once
    assert set(rep["created"]) == acked and set(rep["created"].values()) == {1}
    assert set(rep["ended"]) == acked and set(rep["ended"].values()) == {1}
    # 0 double assignments: never two holders, never over capacity, loads add up
    assert not rep["problems"], "\n".join(rep["problems"])
    assert not rep["holder"] and not any(rep["load"].values())
    assert not out["leftovers"], out["leftovers"]
    # every SLA step that came due fired exactly once, none that did not
    assert sla["due"] > 0 and not sla["running"]
    assert not sla["n_problems"], sla["problems"]
