"""Reconciliation of a load test from the engine's own records (the event stream).

Checks what a bank's engineer signs off: every contact sent reached a terminal
state exactly once, no contact was held by two agents at once, no agent ever
held more than its capacity, and the SLA events agree with the recorded waits.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import msgspec
from redis.asyncio import Redis

TERMINAL = {"contact.completed", "contact.abandoned", "contact.expired"}
HOLD = {"contact.offered", "contact.assigned"}
RELEASE = {"contact.rejected", "contact.offer_timeout", "contact.completed",
           "contact.abandoned", "contact.transferred"}  # fmt: skip


async def read_events(client: Redis, key: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    last, dec = "-", msgspec.json.Decoder()
    while True:
        rows = await client.xrange(key, last, "+", count=20_000)
        rows = rows[1:] if last != "-" else rows
        if not rows:
            return out
        out.extend(dec.decode(f["e"]) for _, f in rows)
        last = rows[-1][0]


def _track_load(
    e: dict[str, Any], load: dict[str, int], peak: dict[str, int], problems: list[str]
) -> None:
    agent = e.get("agent")
    if agent and e.get("load") is not None:  # the agent's load after this change
        load[agent] = int(e["load"])
        peak[agent] = max(peak[agent], load[agent])
        if e.get("cap") is not None and load[agent] > int(e["cap"]):
            problems.append(f"{agent} over capacity: {load[agent]} > {e['cap']}")


def _sla_disagrees(e: dict[str, Any], answered: int | None) -> list[str]:
    """An answer-clock outcome against the recorded answer time."""
    due, cid = int(e["due"]), e["contact"]
    if answered is None:
        return []
    if e["type"] == "sla.met" and answered > due:
        return [f"{cid}: SLA met but answered {answered - due} ms late"]
    if e["type"] == "sla.breached" and answered < due:
        return [f"{cid}: SLA breached although answered before its due time"]
    return []


def reconcile(events: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    created: Counter[str] = Counter()
    ended: Counter[str] = Counter()
    holder: dict[str, str] = {}
    problems: list[str] = []
    load: dict[str, int] = defaultdict(int)
    peak: dict[str, int] = defaultdict(int)
    answered_at: dict[str, int] = {}
    sla_checked = 0
    for e in events:
        cid, t, agent = e.get("contact", ""), e["type"], e.get("agent")
        _track_load(e, load, peak, problems)
        if not str(cid).startswith(prefix):
            continue
        if t == "contact.created":
            created[cid] += 1
        elif t == "contact.offered" or (t == "contact.assigned" and e.get("auto")):
            if cid in holder:
                problems.append(f"{cid} offered to {agent} while {holder[cid]} held it")
            holder[cid] = str(agent)
        if t == "contact.assigned":
            answered_at[cid] = int(e["at"])
        if t in RELEASE:
            holder.pop(cid, None)
        if t in TERMINAL:
            ended[cid] += 1
        if t in ("sla.met", "sla.breached") and e.get("clock") == "answer":
            sla_checked += 1
            problems += _sla_disagrees(e, answered_at.get(cid))
    never_ended = [c for c in created if ended[c] == 0]
    twice = {c: n for c, n in ended.items() if n > 1}
    dup = {c: n for c, n in created.items() if n > 1}
    problems += [f"{c} created {n} times" for c, n in dup.items()]
    problems += [f"{c} ended {n} times" for c, n in twice.items()]
    return {
        "contacts": len(created),
        "ended": sum(1 for c in created if ended[c] == 1),
        "never_ended": never_ended,
        "problems": problems,
        "sla_checked": sla_checked,
        "still_held": len(holder),
        "peak_load_max": max(peak.values(), default=0),
        "outcomes": dict(
            Counter(
                e["type"]
                for e in events
                if e["type"] in TERMINAL and str(e.get("contact", "")).startswith(prefix)
            )
        ),
    }
