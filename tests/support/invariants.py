"""Invariants checked by replaying a workspace's event stream, shared by the
multi-process tests (three replicas under load, replicas killed, Redis
restarted): no contact held by two agents, no agent over its capacity, every
contact created and ended once, nothing left reserved or queued, every SLA
step that came due recorded exactly once."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import msgspec
from redis.asyncio import Redis

DECODE = msgspec.json.decode
HOLDING_EVENTS = frozenset({"contact.offered"})
RELEASING_EVENTS = frozenset(
    {
        "contact.rejected",
        "contact.offer_timeout",
        "contact.completed",
        "contact.abandoned",
        "contact.transferred",
    }
)
SLA_STEP_EVENTS = frozenset({"sla.warning", "sla.breached", "sla.escalated"})
SLA_STOP_EVENTS = frozenset({"sla.met", "sla.missed", "sla.cancelled"})
LATE_MS = 250  # a timer fired later than this after its due time is counted late


async def read_events(client: Redis, key: str, chunk: int = 10_000) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    start = "-"
    while True:
        rows = await client.xrange(key, min=start, max="+", count=chunk)
        out += [DECODE(fields["e"]) for _, fields in rows]
        if len(rows) < chunk:
            return out
        start = "(" + rows[-1][0]


def replay(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Replays loads per agent and holders per contact; returns counts and problems."""
    problems: list[str] = []
    created: Counter[str] = Counter()
    ended: Counter[str] = Counter()
    types: Counter[str] = Counter()
    pulled = 0  # offers made by an agent that freed capacity taking queued work
    abandoned_from: Counter[str] = Counter()
    cap: dict[str, int] = {}
    load: defaultdict[str, int] = defaultdict(int)
    peak: defaultdict[str, int] = defaultdict(int)
    holder: dict[str, tuple[str, int]] = {}  # contact -> (agent, weight)

    def problem(msg: str, ev: dict[str, Any]) -> None:
        if len(problems) < 50:
            problems.append(f"{msg}: {ev}")

    for ev in events:
        t, cid, aid = ev["type"], ev.get("contact"), ev.get("agent")
        types[t] += 1
        if t in ("agent.created", "agent.updated"):
            cap[aid] = ev["cap"]
            if ev["load"] != load[aid]:
                problem(f"agent {aid} load {ev['load']} != replayed {load[aid]}", ev)
        elif t == "contact.created":
            created[cid] += 1
        elif t in ("contact.completed", "contact.abandoned", "contact.expired"):
            ended[cid] += 1
            if t == "contact.abandoned":
                abandoned_from[ev.get("previous", "?")] += 1
        if t in HOLDING_EVENTS or (t == "contact.assigned" and ev.get("auto")):
            pulled += str((ev.get("explain") or {}).get("why", "")).startswith("agent freed")
            if cid in holder:
                problem(f"{cid} offered to {aid} while held by {holder[cid][0]}", ev)
            holder[cid] = (aid, ev["w"])
            load[aid] += ev["w"]
            peak[aid] = max(peak[aid], load[aid])
            if load[aid] > cap.get(aid, 0):
                problem(f"agent {aid} over capacity: {load[aid]} > {cap.get(aid)}", ev)
            if ev["load"] != load[aid]:
                problem(f"agent {aid} recorded load {ev['load']} != replayed {load[aid]}", ev)
        elif t in RELEASING_EVENTS or (
            # a callback dial nobody answered frees the agent at once
            t == "contact.callback_attempted" and ev.get("outcome") != "answered"
        ):
            released = ev.get("released", 0)
            held = holder.pop(cid, None)
            if held is None:
                if released:
                    problem(f"{cid} released {released} but no agent held it", ev)
                if t in ("contact.completed", "contact.rejected", "contact.offer_timeout"):
                    problem(f"{cid} {t} without a holder", ev)
                continue
            if held[0] != aid or held[1] != released:
                problem(f"{cid} held by {held} but {t} released {released} from {aid}", ev)
            load[aid] -= released
            if "load" in ev and ev["load"] != load[aid]:
                problem(f"agent {aid} recorded load {ev['load']} != replayed {load[aid]}", ev)
            if load[aid] < 0:
                problem(f"agent {aid} load went negative", ev)
    return {
        "problems": problems,
        "created": created,
        "ended": ended,
        "types": types,
        "abandoned_from": abandoned_from,
        "pulled": pulled,
        "load": load,
        "peak": peak,
        "holder": holder,
        "cap": cap,
    }


async def check_redis_left_nothing(
    client: Redis, ws: str, agents: list[str], may_miss: set[str]
) -> list[str]:
    """No load, no holds, no queue entries; agents available (or `missed` for
    those whose offers timed out, which is what the engine does then)."""
    tag = "{ws:" + ws + "}"
    problems = []
    pipe = client.pipeline(transaction=False)
    for aid in agents:
        pipe.hgetall(f"{tag}:a:{aid}")
    for aid, h in zip(agents, await pipe.execute(), strict=True):
        held = sorted(k for k in h if k.startswith("h:"))
        if h.get("load") != "0" or held:
            problems.append(f"agent {aid}: load {h.get('load')}, holds {held[:5]}")
        if h.get("st") != "available" and not (h.get("st") == "missed" and aid in may_miss):
            problems.append(f"agent {aid} ended in state {h.get('st')}")
    for pattern in (":q:*", ":qa:*", ":aq:*"):
        async for key in client.scan_iter(match=tag + pattern, count=1000):
            n = await client.zcard(key)
            if n:
                problems.append(f"{key} still has {n} entries: {await client.zrange(key, 0, 4)}")
    return problems


def check_sla_steps(
    events: list[dict[str, Any]], clock: str, thresholds: dict[int, int]
) -> dict[str, Any]:
    """Every step of `clock` (index -> ms after the clock started, seconds-based
    policies without pauses) due before the clock stopped was recorded exactly
    once, none due after it; a step's own due time is the event's `at - late_ms`."""
    started: dict[str, int] = {}
    stopped: dict[str, int] = {}
    fired: Counter[tuple[str, int]] = Counter()
    problems: list[str] = []
    late = after_stop = 0  # fired late; recorded after the clock had stopped
    for ev in events:
        t, cid = ev["type"], ev.get("contact")
        if t == "contact.created" and ev.get("sla"):
            started[cid] = ev["at"]
        elif t in SLA_STOP_EVENTS and ev.get("clock") == clock:
            stopped[cid] = ev["at"]
        elif t in SLA_STEP_EVENTS and ev.get("clock") == clock:
            step = int(ev["step"])
            fired[(cid, step)] += 1
            late += ev["late_ms"] > LATE_MS
            after_stop += bool(ev.get("after_stop"))
            due = ev["at"] - ev["late_ms"]
            if cid in started and abs(due - (started[cid] + thresholds[step])) > 1:
                problems.append(
                    f"{cid} step {step} due at {due}, expected {started[cid] + thresholds[step]}"
                )
    due_steps = 0
    for cid, start in started.items():
        end = stopped.get(cid)
        for step, after in thresholds.items():
            n = fired[(cid, step)]
            if end is None or start + after <= end:
                due_steps += 1
                if n != 1 and end is not None:
                    problems.append(
                        f"{cid} step {step} due {start + after - end} ms before "
                        f"the clock stopped: recorded {n} times"
                    )
            elif n:
                problems.append(
                    f"{cid} step {step} due {start + after - end} ms after the "
                    f"clock stopped: recorded {n} times"
                )
    running = [cid for cid in started if cid not in stopped]
    by_step = Counter(step for (_, step), n in fired.items() for _ in range(n))
    return {
        "problems": problems[:50],
        "n_problems": len(problems),
        "due": due_steps,
        "fired": sum(fired.values()),
        "late": late,
        "running": running,
        "contacts": len(started),
        "by_step": by_step,
        "after_stop": after_stop,
    }
