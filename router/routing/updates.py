"""Changing a contact after creation (PATCH): tier, intent, attributes, required
skills and priority boost, while it waits or is being served.

The router re-runs the rules with the merged values (pure Python, like create)
and, when another SLA policy now applies, re-plans the clocks with the budget
they used (calendar arithmetic); `update.lua` then applies it all in one call:
the new rank from the contact's arrival, the stages its age has reached, its
queues, its clocks and the `contact.updated` event. The script refuses when
what the plan was computed from changed meanwhile (a timer's boost, another
update, a clock that moved); the router reads again and re-plans.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Protocol, cast

import msgspec
from msgspec import UNSET
from redis.asyncio import Redis

from router.routing.config import RoutingConfig, SkillRequirement
from router.routing.configstore import ConfigStore
from router.routing.handoff import handoff_in
from router.routing.library import Scripts
from router.routing.model import MAX_ATTRIBUTES, TERMINAL_STATES, ContactPatch
from router.routing.records import pairs
from router.routing.rules import RoutePlan, plan_route
from router.routing.slaops import RUNNING, policy_for
from router.runtime.errors import Conflict, FieldProblem, InvalidInput, NotFound
from router.store.batch import ScriptBatcher
from router.store.keys import WsKeys
from sla.business_time import add_business
from sla.calendars import calendar_for, fingerprints
from sla.policy import CLOCKS, clock_of, schedule, steps_text, used_between

_JSON = msgspec.json.Encoder()
_ATTRS = msgspec.json.Decoder(dict[str, Any])
# What the rules read that a patch can change: re-routed when one of them changes.
_RULE_INPUTS = ("tier", "intent", "attrs")
# What the rules decide: kept as it is otherwise.
_ROUTE = ("toff", "roff", "stages", "ovf", "rules", "sla")
# Fields the plan is computed from that other operations change too (timer
# boosts and expansions, transfers, another update): the script checks them.
# An answer, response or resolution meanwhile would change which clocks to start.
_GUARDED = ("off", "stages", "sla", "uv", "tgt", "ans", "responded", "resolved")
# What reaching each clock's goal leaves in the record: a clock the old policy
# lacked starts only when its goal is still ahead.
_REACHED = {"answer": "ans", "first_response": "responded", "resolve": "resolved"}
RETRIES = 3


class Updatable(Protocol):
    """What an update needs of the engine (`router/routing/engine.py`)."""

    configs: ConfigStore
    scripts: Scripts
    batcher: ScriptBatcher

    def client(self, ws_name: str) -> Redis: ...


def _skills(req: str) -> list[SkillRequirement]:
    """The record's `req` ("skill:min,...") back as requirements."""
    out = []
    for part in filter(None, req.split(",")):
        skill, _, least = part.rpartition(":")
        out.append(SkillRequirement(skill=skill, min=int(least)))
    return out


def _req(skills: list[SkillRequirement]) -> str:
    return ",".join(f"{r.skill}:{r.min}" for r in skills)


def _stages(plan: RoutePlan) -> str:
    return "|".join(f"{round(s.after * 1000)}:{','.join(s.pools)}" for s in plan.stages)


def _merged_attributes(old: dict[str, Any], patch: ContactPatch) -> dict[str, Any]:
    if patch.attributes is UNSET:
        return old
    if patch.attributes is None:
        return {}
    merged = dict(old)
    for name, value in patch.attributes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    if len(merged) > MAX_ATTRIBUTES:
        why = f"at most {MAX_ATTRIBUTES} attributes once merged"
        raise InvalidInput([FieldProblem("attributes", why)])
    return merged


def _plan(cfg: RoutingConfig, raw: dict[str, str], patch: ContactPatch) -> RoutePlan:
    """The rules re-run with the contact's values and the patch's."""
    tier = raw.get("tier") or None if patch.tier is UNSET else patch.tier
    intent = raw.get("intent") or None if patch.intent is UNSET else patch.intent
    skills = _skills(raw.get("req", "")) if patch.skills is UNSET else patch.skills or []
    try:
        return plan_route(
            cfg,
            channel=raw["ch"],
            tier=tier,
            intent=intent,
            language=raw.get("lang") or None,
            flags=[f for f in raw.get("flags", "").split(",") if f],
            attributes=_merged_attributes(_ATTRS.decode(raw.get("attrs") or "{}"), patch),
            skills=skills,
            handoff=handoff_in(raw),  # a hand-off never changes: its rules still hold
        )
    except InvalidInput as exc:  # the patch's field names, not create's
        names = {"customer.tier": "tier", "channel": "intent"}
        raise InvalidInput(
            [FieldProblem(names.get(p.field, p.field), p.message) for p in exc.problems]
        ) from None


def _fields(cfg: RoutingConfig, raw: dict[str, str], patch: ContactPatch) -> dict[str, str]:
    """Every routing field of the updated record, as stored ('' for none)."""
    plan = _plan(cfg, raw, patch)  # checks tier and skills even when the route stays
    n = functools.partial(_ms, raw)
    boost = n("boff") if patch.boost is UNSET else round((patch.boost or 0) * 1000)
    # boosts from SLA escalations stay: the offset is tier + rules + patch + those
    escalated = n("off") - n("toff") - n("roff") - n("boff")
    intent = raw.get("intent", "") if patch.intent is UNSET else patch.intent or ""
    attrs = _merged_attributes(_ATTRS.decode(raw.get("attrs") or "{}"), patch)
    skills = _skills(raw.get("req", "")) if patch.skills is UNSET else patch.skills or []
    fields = {
        "tier": plan.tier,
        "intent": intent,
        "boff": str(boost) if boost else "",
        "req": _req(skills),
        "attrs": _JSON.encode(attrs).decode() if attrs else "",
    }
    if any(fields[f] != raw.get(f, "") for f in _RULE_INPUTS):
        toff, roff = round(plan.tier_offset * 1000), round(plan.rule_offset * 1000)
        ovf = plan.overflow_wait
        fields |= {
            "toff": str(toff) if toff else "",
            "roff": str(roff) if roff else "",
            "stages": _stages(plan),
            "ovf": str(round(ovf * 1000)) if ovf is not None else "",
            "rules": ",".join(plan.rules),
            "sla": policy_for(cfg, plan, raw["ch"], intent or None, None) or "",
        }
    else:
        # what the rules read is unchanged: the route stays as it is, with any
        # SLA expansion or transfer to a pool it had since
        fields |= {f: raw.get(f, "") for f in _ROUTE}
    fields["off"] = str(_ms(fields, "toff") + _ms(fields, "roff") + boost + escalated)
    return fields


def _ms(raw: Mapping[str, str], field: str) -> int:
    v = raw.get(field)
    return int(float(v)) if v not in (None, "") else 0


def _shown(field: str, value: str) -> object:
    """A changed field as the event shows it (never attribute values)."""
    if field in ("off", "boff"):
        return int(value or 0)
    if field == "stages":
        return [
            {"after_ms": int(a), "pools": p.split(",")}
            for a, _, p in (s.partition(":") for s in filter(None, value.split("|")))
        ]
    if field in ("rules", "req"):
        # none as null: the script's JSON would turn an empty list into {}
        return [x for x in value.split(",") if x] or None
    return value or None


_EVENT_NAMES = {"off": "priority_offset_ms", "boff": "boost_ms", "req": "skills"}


def sla_ops(
    cfg: RoutingConfig, raw: dict[str, str], new_sla: str, now_ms: int
) -> list[dict[str, Any]]:
    """What becomes of each clock when the policy changes from the record's to
    `new_sla`: running clocks keep the budget they used and take the new
    target and ladder (steps already due fire at once, but a warned clock is
    not warned again nor a breached one breached again);
    a clock the new policy lacks is cancelled; one it adds starts as if it
    had run since the contact arrived, unless its goal was already reached.
    Paused clocks stay paused: resuming plans them from the new policy."""
    old_sla = raw.get("sla", "")
    if new_sla == old_sla:
        return []
    new = cfg.sla_policies.get(new_sla)
    old = cfg.sla_policies.get(old_sla)
    cal = calendar_for(cfg, new) if new else None
    old_cal = calendar_for(cfg, old) if old else cal
    fps = fingerprints(cfg, new_sla) if new else {}
    ops: list[dict[str, Any]] = []
    for name in CLOCKS:
        st = raw.get(f"{name}.st")
        clock = clock_of(new, name) if new else None
        if st in RUNNING or st == "paused":
            if clock is None:
                ops.append({"clock": name, "op": "cancel"})
                continue
            if st == "paused":
                continue
            n = functools.partial(_ms, raw)
            used = n(f"{name}.used") + used_between(old_cal, n(f"{name}.run"), now_ms)
            op, start = "replan", n(f"{name}.start")
        elif st is None and clock is not None and not raw.get(_REACHED[name]):
            used = used_between(cal, _ms(raw, "created"), now_ms)
            op, start = "start", _ms(raw, "created")
        else:
            continue
        # a warned clock is not warned again; a breached one not breached again
        passed = {"warned": {"warning"}, "breached": {"warning", "breach"}}.get(st or "", set())
        steps = [s for s in schedule(clock, cal, now_ms, used) if s.kind not in passed]
        left = round(clock.target * 1000) - used
        # due: when the new target is (or was) reached at the rate the clock runs
        due = add_business(cal, now_ms, left) if left > 0 else now_ms + (left if cal is None else 0)
        ops.append(
            {
                "clock": name,
                "op": op,
                "start": start,
                "used": used,
                "due": due,
                "steps": steps_text(steps),
                "fp": fps[name],
            }
        )
    return ops


class ContactUpdates:
    def __init__(self, engine: Updatable) -> None:
        self._engine = engine

    async def update(
        self, ws_name: str, cid: str, patch: ContactPatch, actor: str
    ) -> tuple[dict[str, str], bool]:
        """Applies `patch`; returns the contact's record and whether anything changed."""
        eng = self._engine
        stored = await eng.configs.get(ws_name)
        ws = WsKeys(ws_name)
        for _ in range(RETRIES):
            pipe = eng.client(ws_name).pipeline(transaction=False)
            pipe.hgetall(ws.contact(cid))
            pipe.time()
            raw, (sec, micros) = await pipe.execute()
            raw = cast(dict[str, str], raw)
            if not raw or raw.get("restored"):
                raise NotFound(f"contact {cid!r} does not exist", field="contact_id")
            if raw["st"] in TERMINAL_STATES:
                raise Conflict(f"the contact has ended ({raw['st']})", state=raw["st"])
            now_ms = int(sec) * 1000 + int(micros) // 1000
            fields = _fields(stored.config, raw, patch)
            changed = {f: v for f, v in fields.items() if raw.get(f, "") != v}
            ops = sla_ops(stored.config, raw, fields["sla"], now_ms)
            attrs = sorted(_changed_names(raw.get("attrs", ""), fields["attrs"]))
            if not changed:  # a retried or empty patch: nothing happens, nothing recorded
                return raw, False
            changed["cfgv"] = str(stored.version)
            shown = [f for f in changed if f not in ("attrs", "cfgv", "toff", "roff", "ovf")]
            event: dict[str, object] = {
                "before": {_EVENT_NAMES.get(f, f): _shown(f, raw.get(f, "")) for f in shown},
                "after": {_EVENT_NAMES.get(f, f): _shown(f, changed[f]) for f in shown},
            }
            if attrs:
                event["attributes_changed"] = attrs  # names only: values are never logged
            guard = {f: raw.get(f, "") for f in _GUARDED}
            for name in CLOCKS:
                guard[f"{name}.g"] = raw.get(f"{name}.g", "")
            args = [actor, now_ms, _JSON.encode(guard), _JSON.encode(changed)]
            args += [_JSON.encode(ops), _JSON.encode(event)]
            res = await eng.batcher.call(eng.scripts["update"], (ws.runtime, ws.contact(cid)), args)
            if res[0] == -1:
                raise NotFound(f"contact {cid!r} does not exist", field="contact_id")
            if res[0] == -2:
                raise Conflict(f"cannot update: {res[2]}", state=res[1])
            if res[0] == 1:
                return pairs(res[1]), True
            # -4: the contact moved since it was read: plan again from the new record
        raise Conflict("the contact keeps changing; retry", state=raw.get("st"))


def _changed_names(old: str, new: str) -> set[str]:
    a, b = _ATTRS.decode(old or "{}"), _ATTRS.decode(new or "{}")
    # by their JSON: True and 1 are different values to the rules
    return {
        k
        for k in a.keys() | b.keys()
        if k not in a or k not in b or _JSON.encode(a[k]) != _JSON.encode(b[k])
    }
