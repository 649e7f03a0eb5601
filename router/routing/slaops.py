"""SLA operations that need the router's Python: resuming a paused clock and
re-planning running ones (calendar arithmetic), and creating follow-up contacts
(rules). Each ends in one script call guarded by the clock's generation."""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol, cast

from redis.asyncio import Redis

from router.routing.config import RoutingConfig
from router.routing.configstore import ConfigStore
from router.routing.model import ContactIn, ContactOut, Customer, SlaClockOut
from router.routing.rules import RoutePlan
from router.runtime.errors import Conflict, NotFound
from router.store.keys import WsKeys
from sla.calendars import calendar_for, fingerprints
from sla.policy import (
    CLOCKS,
    SlaPolicy,
    clock_of,
    plan_text,
    schedule,
    select_policy,
    steps_text,
    used_between,
)

log = logging.getLogger(__name__)

RUNNING = frozenset({"active", "warned", "breached"})
REPLAN_BATCH = 500


def _num(state: dict[str, str], clock: str, field: str) -> int:
    v = state.get(f"{clock}.{field}")
    return int(float(v)) if v not in (None, "") else 0


def sla_clocks(state: dict[str, str]) -> dict[str, SlaClockOut]:
    out: dict[str, SlaClockOut] = {}
    for clock in CLOCKS:
        st = state.get(clock + ".st")
        if st is None:
            continue
        f = functools.partial(_num, state, clock)
        # step markers `<clock>.f<index>` (not `.fp`, the fingerprint)
        marks = [k for k in state if k.startswith(clock + ".f") and k[len(clock) + 2 :].isdigit()]
        fired = [f(k[len(clock) + 1 :]) for k in marks]
        out[clock] = SlaClockOut(
            status=st,
            policy=state.get("sla", ""),
            started_at=f("start") / 1000,
            due_at=f("due") / 1000,
            ended_at=f("end") / 1000 or None,
            paused_ms=f("paused"),
            warned_at=min(fired, default=0) / 1000 or None,
        )
    return out


def _replan_args(
    state: dict[str, str], clock_name: str, policy: SlaPolicy, cfg: RoutingConfig, used: int
) -> list[Any]:
    """Script args for a new schedule with `used` budget spent: steps not yet fired."""
    clock = clock_of(policy, clock_name)
    assert clock is not None
    cal = calendar_for(cfg, policy)
    steps = [
        s
        for s in schedule(clock, cal, round(time.time() * 1000), used)
        if f"{clock_name}.f{s.index}" not in state
    ]
    breach = next((s.delta_ms for s in steps if s.kind == "breach"), -1)
    return [clock_name, state[f"{clock_name}.g"], used, breach, steps_text(steps)]


def policy_for(
    cfg: RoutingConfig, plan: RoutePlan, channel: str, intent: str | None, override: str | None
) -> str | None:
    """The SLA policy a contact's route selects (see `start_plan`)."""
    chosen = override or (plan.sla if plan.sla != cfg.defaults.sla else None)
    return (
        select_policy(cfg.sla_policies, chosen, tier=plan.tier, channel=channel, intent=intent)
        or plan.sla
    )


def start_plan(
    cfg: RoutingConfig, plan: RoutePlan, channel: str, intent: str | None, override: str | None
) -> tuple[str | None, str]:
    """The policy of a new contact and the plan text `create.lua` starts its clocks
    from. A rule's policy wins, then the first policy whose `when` matches, then
    the default (`plan.sla` holds the rule's or else the default's)."""
    name = policy_for(cfg, plan, channel, intent, override)
    policy = cfg.sla_policies.get(name) if name else None
    if name is None or policy is None:
        return name, ""
    cal = calendar_for(cfg, policy)
    return name, plan_text(policy, cal, round(time.time() * 1000), fingerprints(cfg, name))


class Contacts(Protocol):
    """What SLA operations need of the engine (`router/routing/engine.py`), which
    owns them: they read through it and end in one of its script calls."""

    configs: ConfigStore

    def client(self, ws_name: str) -> Redis: ...

    async def contact_action(
        self, ws_name: str, cid: str, action: str, args: Sequence[Any], actor: str
    ) -> ContactOut: ...

    async def create_contact(
        self,
        ws_name: str,
        body: ContactIn,
        actor: str,
        sla_override: str | None = None,
        gateway: str | None = None,
    ) -> ContactOut: ...


class SlaOps:
    def __init__(self, engine: Contacts) -> None:
        self._engine = engine

    async def resume_clock(self, ws_name: str, cid: str, clock_name: str, actor: str) -> ContactOut:
        """Resumes a paused clock with the budget it had left (business time)."""
        eng = self._engine
        cfg = (await eng.configs.get(ws_name)).config
        for _ in range(3):  # the generation check fails only if the clock moved meanwhile
            state = cast(
                dict[str, str], await eng.client(ws_name).hgetall(WsKeys(ws_name).sla(cid))
            )
            if not state.get("sla"):  # no record, or a record without a policy
                raise NotFound(f"contact {cid!r} has no SLA clocks", field="contact_id")
            policy = cfg.sla_policies.get(state["sla"])
            if (
                policy is None
                or clock_of(policy, clock_name) is None
                or (state.get(f"{clock_name}.st") != "paused")
            ):
                st = state.get(f"{clock_name}.st", "none")
                raise Conflict(f"the {clock_name} clock is not paused", state=st, field="clock")
            f = functools.partial(_num, state, clock_name)
            used = f("used") + used_between(calendar_for(cfg, policy), f("run"), f("pause"))
            args = _replan_args(state, clock_name, policy, cfg, used)
            args.append(fingerprints(cfg, state["sla"])[clock_name])
            try:
                return await eng.contact_action(ws_name, cid, "sla_resume", args, actor)
            except Conflict as exc:
                if exc.state != "paused" or "retry" not in exc.detail:
                    raise
        raise Conflict("the clock keeps changing; retry", state="paused", field="clock")

    async def replan(
        self, ws_name: str, old: RoutingConfig | None, new: RoutingConfig, actor: str
    ) -> int:
        """Re-plans every running clock whose definition (target, ladder, calendar)
        differs from `new`'s, keeping the budget used so far; returns how many.

        Budget used since the clock last (re)started is counted with the old
        calendar when the clock still matches `old`. A failure part-way leaves
        the rest on their old plan; putting the config again finishes the job,
        since clocks already re-planned carry the new fingerprint.
        """
        eng = self._engine
        ws = WsKeys(ws_name)
        cursor, done = 0, 0
        while True:
            cursor, found = await eng.client(ws_name).sscan(
                ws.sla_running, cursor, count=REPLAN_BATCH
            )
            ids = cast(list[str], found)
            if ids:
                pipe = eng.client(ws_name).pipeline(transaction=False)
                for cid in ids:
                    pipe.hgetall(ws.sla(cid))
                states = await pipe.execute()
                done += await self._replan_batch(ws_name, ids, states, old, new, actor)
            if cursor == 0:
                break
        if done:
            log.info("re-planned %d running SLA clocks of workspace %s", done, ws_name)
        return done

    async def _replan_batch(
        self,
        ws_name: str,
        ids: list[str],
        states: list[dict[str, str]],
        old: RoutingConfig | None,
        new: RoutingConfig,
        actor: str,
    ) -> int:
        done = 0
        for cid, state in zip(ids, states, strict=True):
            name = state.get("sla", "")
            policy = new.sla_policies.get(name)
            new_fps = fingerprints(new, name) if policy else {}
            old_fps = fingerprints(old, name) if old and name in old.sla_policies else {}
            for clock_name in CLOCKS:
                fp = state.get(f"{clock_name}.fp")
                if state.get(f"{clock_name}.st") not in RUNNING or clock_name not in new_fps:
                    continue  # paused clocks are planned from the config when resumed
                if fp == new_fps[clock_name]:
                    continue
                assert policy is not None
                counted_by = old if old and old_fps.get(clock_name) == fp else new
                counted_policy = counted_by.sla_policies[name]
                f = functools.partial(_num, state, clock_name)
                since = used_between(
                    calendar_for(counted_by, counted_policy), f("run"), round(time.time() * 1000)
                )
                args = _replan_args(state, clock_name, policy, new, f("used") + since)
                args.append(new_fps[clock_name])
                try:
                    await self._engine.contact_action(ws_name, cid, "sla_replan", args, actor)
                    done += 1
                except (Conflict, NotFound):
                    pass  # the clock moved or ended meanwhile: its new plan stands
        return done

    async def create_followup(self, ws_name: str, member: str) -> None:
        """Applies a `followup|contact|source/channel/intent/sla` timer: creates the
        follow-up contact under an id derived from the timer, so a re-fire finds
        it already there."""
        _, cid, arg = member.split("|", 2)
        _source, channel, intent, sla = arg.split("/")
        eng = self._engine
        raw = cast(dict[str, str], await eng.client(ws_name).hgetall(WsKeys(ws_name).contact(cid)))
        if not raw:
            return  # the original expired from Redis: nothing to follow up
        fid = "fu-" + hashlib.sha256(member.encode()).hexdigest()[:24]
        body = ContactIn(
            id=fid,
            channel=channel,
            customer=Customer(
                id=raw["cust"], tier=raw.get("tier") or None, language=raw.get("lang") or None
            ),
            intent=intent or None,
            attributes={"followup_of": cid},
        )
        # the gateway of the original sees (and resolves) its follow-up too
        await eng.create_contact(
            ws_name, body, "system:followup", sla_override=sla or None, gateway=raw.get("gw")
        )
