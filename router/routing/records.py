"""A contact's and an agent's Redis records and their wire types: the record a
new contact is stored as, and the records read back as API answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from router.routing.callbacks import callback_out
from router.routing.config import RoutingConfig, Stage
from router.routing.handoff import handoff_fields, handoff_out
from router.routing.model import (
    AgentOut,
    ContactIn,
    ContactOut,
    TimelineEntry,
)
from router.routing.personal import pack, unpack
from router.routing.rules import RoutePlan

_JSON = msgspec.json.Encoder()
_TIMELINE = msgspec.json.Decoder(TimelineEntry)


def pairs(flat: Sequence[Any] | dict[str, str]) -> dict[str, str]:
    """A hash as Redis answered it: a map (RESP3, a record read outside a script)
    or a flat list of fields and values (RESP2, or returned by a script)."""
    if isinstance(flat, dict):
        return flat
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _stages_text(stages: Sequence[Stage]) -> str:
    return "|".join(f"{round(s.after * 1000)}:{','.join(s.pools)}" for s in stages)


def _stages_list(text: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for part in filter(None, text.split("|")):
        after, _, pools = part.partition(":")
        out.append({"after": int(after) / 1000, "pools": pools.split(",")})
    return out


def _f(raw: dict[str, str], key: str) -> float | None:
    v = raw.get(key)
    return int(float(v)) / 1000 if v not in (None, "") else None


def contact_out(raw: dict[str, str], created: bool) -> ContactOut:
    stages = _stages_list(raw.get("stages", ""))
    stage = int(raw.get("stage", "1"))
    pools: list[str] = []
    for s in stages[:stage]:
        pools += [p for p in s["pools"] if p not in pools]  # type: ignore[attr-defined]
    return ContactOut(
        id=raw["id"],
        state=raw["st"],
        channel=raw["ch"],
        tier=raw.get("tier", ""),
        intent=raw.get("intent") or None,
        customer_id=raw.get("cust", ""),
        agent=raw.get("agent") or None,
        pools=[raw["tgt"]] if raw.get("tgt") else pools,
        stages=stages,
        stage=stage,
        rank=float(raw["rank"]) / 1000,
        priority_offset=float(raw.get("off", "0")) / 1000,
        enqueued_at=float(raw["enq"]) / 1000,
        created_at=float(raw["created"]) / 1000,
        offer_expires_at=_f(raw, "oexp"),
        sla=raw.get("sla") or None,
        rules=[r for r in raw.get("rules", "").split(",") if r],
        created=created,
        gateway=raw.get("gw") or None,
        # in full here: responses mask it by caller (router/security/privacy.py present)
        personal=unpack(raw.get("pii")),
        callback=callback_out(raw),
        handoff=handoff_out(raw),
    )


# Fields of a new contact's record left out when empty or zero: the record of
# every queued contact is in Redis, and most contacts have no intent, rules,
# language, flags, required skills or attributes (readers default them).
_OPTIONAL = ("intent", "lang", "flags", "rules", "req", "attrs", "toff", "roff")


def contact_record(
    cfg: RoutingConfig,
    body: ContactIn,
    plan: RoutePlan,
    sla: str | None,
    version: int,
    gateway: str | None,
) -> dict[str, object]:
    """The record `create.lua` stores for a new contact (before its script fields)."""
    record: dict[str, object] = {
        "id": body.id,
        "ch": body.channel,
        "tier": plan.tier,
        "intent": body.intent or "",
        "lang": body.customer.language or "",
        "flags": ",".join(body.customer.flags),  # the rules read them again on an update
        "cust": body.customer.id,
        "stages": _stages_text(plan.stages),
        "off": round(plan.priority_offset * 1000),
        "toff": round(plan.tier_offset * 1000),
        "roff": round(plan.rule_offset * 1000),
        "sla": sla or "",
        "rules": ",".join(plan.rules),
        "req": ",".join(f"{r.skill}:{r.min}" for r in body.skills),
        "attrs": _JSON.encode(body.attributes).decode() if body.attributes else "",
        "cfgv": version,
    }
    for name in _OPTIONAL:
        if record[name] in ("", 0):
            del record[name]
    if plan.overflow_wait is not None:
        record["ovf"] = round(plan.overflow_wait * 1000)
    if gateway:
        record["gw"] = gateway
    if body.handoff is not None:
        record |= handoff_fields(cfg, body.handoff)
    pii = pack(body)
    if pii is not None:  # only when given: most contacts carry none
        record["pii"] = pii
    return record


def timeline_entry(raw: str | bytes) -> TimelineEntry:
    # stored in Redis TIME milliseconds; the API speaks seconds like every other time
    e = _TIMELINE.decode(raw)
    return msgspec.structs.replace(e, at=e.at / 1000)


def agent_out(raw: dict[str, str]) -> AgentOut:
    return AgentOut(
        id=raw["id"],
        state=raw["st"],
        reason=raw.get("reason") or None,
        skills=msgspec.json.decode(raw.get("skills", "{}")),
        capacity=int(raw.get("cap", "0")),
        load=int(raw.get("load", "0")),
        team=raw.get("team") or None,
        supervisor=raw.get("sup") or None,
        pools=[p.split("=")[0] for p in raw.get("pools", "").split(",") if p],
        contacts=sorted(k[2:] for k in raw if k.startswith("h:")),
        idle_since=_f(raw, "idle"),
        missed_offers=int(raw.get("missed", "0")),
    )
