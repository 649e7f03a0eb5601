"""SLA policies: clocks, escalation ladders and their schedules. Pure code.

A policy has up to three clocks. `answer` runs from the contact's arrival to
its acceptance, `first_response` from arrival to the first response sent to the
customer, `resolve` from arrival until the gateway marks the case resolved (it
can pause while the bank waits on the customer). Each clock has a target and a
ladder: warnings at fractions of the target (`at` < 1), the breach (`at` = 1,
always present), then escalation steps `after` seconds past the breach. Every
step carries actions (notify, boost, expand, reassign, create_followup).

Durations are wall-clock seconds, or business seconds when the policy names a
calendar. The engine's clock is Redis TIME; the calendar arithmetic here runs
in Python, so a schedule is handed to the scripts as *offsets from now*
(`delta_ms`): the scripts add them to their own TIME. Replica clock drift thus
shifts only where a business-hours boundary falls, by the drift, never the
order of events.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Literal

from msgspec import Meta, Struct

from sla.business_time import BusinessCalendar, add_business, business_between

__all__ = [
    "CLOCKS",
    "Boost",
    "Clock",
    "CreateFollowup",
    "Expand",
    "LowRating",
    "Notify",
    "Reassign",
    "ScheduledStep",
    "SlaPolicy",
    "Step",
    "clock_of",
    "schedule",
    "select_policy",
    "step_kind",
]

Name = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Seconds = Annotated[float, Meta(ge=0, le=31_536_000)]
ClockName = Literal["answer", "first_response", "resolve"]
CLOCKS: tuple[ClockName, ...] = ("answer", "first_response", "resolve")
# Who a notification goes to: `team_supervisor` (the supervisor of the agent
# holding the contact), `role:<name>` or `person:<id>`.
Target = Annotated[
    str, Meta(pattern=r"^(team_supervisor|role:[A-Za-z0-9_.-]+|person:[A-Za-z0-9_.:@-]+)$")
]


class Notify(Struct, tag="notify", tag_field="do", forbid_unknown_fields=True, frozen=True):
    to: Annotated[list[Target], Meta(min_length=1, max_length=8)]


class Boost(Struct, tag="boost", tag_field="do", forbid_unknown_fields=True, frozen=True):
    """Adds to the contact's priority offset: its rank moves at once."""

    seconds: Annotated[float, Meta(gt=0, le=86_400)]


class Expand(Struct, tag="expand", tag_field="do", forbid_unknown_fields=True, frozen=True):
    """Adds pools the contact waits in (from now on)."""

    pools: Annotated[list[Name], Meta(min_length=1, max_length=8)]


class Reassign(Struct, tag="reassign", tag_field="do", forbid_unknown_fields=True, frozen=True):
    """Pulls back an offer nobody accepted and routes the contact again."""


class CreateFollowup(
    Struct, tag="create_followup", tag_field="do", forbid_unknown_fields=True, frozen=True
):
    """A new contact for the same customer with its own routing and SLA."""

    channel: Name
    intent: Name | None = None
    sla: Name | None = None


Action = Notify | Boost | Expand | Reassign | CreateFollowup


class Step(Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """A rung of the ladder: `at` a fraction of the target, or `after` seconds
    past the breach; exactly one of them."""

    at: Annotated[float, Meta(gt=0, le=1)] | None = None
    after: Annotated[float, Meta(gt=0, le=31_536_000)] | None = None
    actions: Annotated[list[Action], Meta(max_length=8)] = []


class Clock(Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    target: Annotated[float, Meta(gt=0, le=31_536_000)]
    ladder: Annotated[list[Step], Meta(max_length=16)] = []


class LowRating(Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """When a served contact gets a CSAT score below `csat_below` (CSAT 1..5) or
    an NPS score below `nps_below` (NPS 0..10; 7 makes every detractor low), run
    `actions`. Each survey kind is judged on its own; a contact rated low on
    both gets its notifications twice but one follow-up contact per action
    (follow-up ids are derived from the contact, not the kind)."""

    actions: Annotated[list[Action], Meta(min_length=1, max_length=8)]
    csat_below: Annotated[int, Meta(ge=2, le=5)] | None = None
    nps_below: Annotated[int, Meta(ge=1, le=10)] | None = None
    # The threshold on the single 1..10 rating before surveys had kinds. Still
    # read so stored documents load; a new document giving it is refused
    # (sla/checks.py) with a pointer to csat_below / nps_below.
    below: Annotated[int, Meta(ge=1, le=11)] | None = None

    def thresholds(self) -> dict[str, int]:
        """Survey kind -> the score a rating must reach not to be low."""
        given = {"csat": self.csat_below, "nps": self.nps_below}
        return {kind: below for kind, below in given.items() if below is not None}


class Selector(Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """Picks a policy for contacts no rule gave one: all given lists must match."""

    tier: list[Name] | None = None
    channel: list[Name] | None = None
    intent: list[Name] | None = None


class SlaPolicy(Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """A clock is a number (target seconds, breach only) or a `Clock` with a ladder."""

    answer: float | Clock | None = None
    first_response: float | Clock | None = None
    resolve: float | Clock | None = None
    # Name of a calendar in the config: durations count business time.
    calendar: Name | None = None
    when: Selector | None = None
    low_rating: LowRating | None = None


def clock_of(policy: SlaPolicy, name: str) -> Clock | None:
    value = getattr(policy, name, None)
    if value is None:
        return None
    if isinstance(value, Clock):
        return value
    return Clock(target=float(value))


def select_policy(
    policies: Mapping[str, SlaPolicy],
    chosen: str | None,
    *,
    tier: str,
    channel: str,
    intent: str | None,
) -> str | None:
    """A rule's (or the default's) policy wins; else the first whose `when` matches."""
    if chosen is not None:
        return chosen
    for name, p in policies.items():
        w = p.when
        if w is None:
            continue
        if w.tier is not None and tier not in w.tier:
            continue
        if w.channel is not None and channel not in w.channel:
            continue
        if w.intent is not None and intent not in w.intent:
            continue
        return name
    return None


def step_kind(step: Step) -> str:
    if step.after is not None:
        return "escalation"
    return "breach" if step.at == 1 else "warning"


def ladder(clock: Clock) -> list[Step]:
    """The ladder in firing order, with the breach step always present.

    Warnings by fraction, the breach, escalations by delay. Ties keep the
    config's order, which `Step` index numbers refer to (see `schedule`).
    """
    steps = list(clock.ladder)
    if not any(s.at == 1 for s in steps):
        steps.append(Step(at=1.0))
    return steps


def _threshold_ms(clock: Clock, step: Step) -> int:
    """Budget consumed when the step is due, in (business) milliseconds."""
    target = round(clock.target * 1000)
    if step.after is not None:
        return target + round(step.after * 1000)
    return round(target * (step.at or 1.0))


class ScheduledStep(Struct, frozen=True, array_like=True):
    index: int  # position in `ladder(clock)`
    kind: str  # warning | breach | escalation
    threshold_ms: int  # budget consumed when due
    delta_ms: int  # due time minus now


def schedule(
    clock: Clock,
    cal: BusinessCalendar | None,
    now_ms: int,
    used_ms: int = 0,
) -> list[ScheduledStep]:
    """The steps still ahead when `used_ms` of the budget is spent at `now_ms`.

    A step whose threshold is already consumed (an outage, or a resume late in
    the budget) is due at once: delta 0, and the timer store counts it late.
    """
    out: list[ScheduledStep] = []
    for i, step in enumerate(ladder(clock)):
        threshold = _threshold_ms(clock, step)
        left = threshold - used_ms
        delta = 0 if left <= 0 else add_business(cal, now_ms, left) - now_ms
        out.append(ScheduledStep(i, step_kind(step), threshold, delta))
    return out


def breach_delta(steps: Sequence[ScheduledStep]) -> int:
    return next(s.delta_ms for s in steps if s.kind == "breach")


def used_between(cal: BusinessCalendar | None, start_ms: int, end_ms: int) -> int:
    """Budget a running clock consumed between two instants."""
    return max(0, business_between(cal, start_ms, end_ms))


def actions_text(actions: Sequence[Action]) -> str:
    """Compact form of a step's actions for the Lua scripts (runtime hash).

    `boost_ms;expand pools csv;reassign 0|1;notify targets csv;followups`
    where each follow-up is `channel/intent/sla` and several are joined by
    `+`. Names cannot contain `;`, `,`, `/` or `+` (the config's name pattern).
    """
    boost = 0
    expand: list[str] = []
    reassign = 0
    notify: list[str] = []
    followups: list[str] = []
    for a in actions:
        if isinstance(a, Boost):
            boost += round(a.seconds * 1000)
        elif isinstance(a, Expand):
            expand += [p for p in a.pools if p not in expand]
        elif isinstance(a, Reassign):
            reassign = 1
        elif isinstance(a, Notify):
            notify += [t for t in a.to if t not in notify]
        else:
            followups.append(f"{a.channel}/{a.intent or ''}/{a.sla or ''}")
    return f"{boost};{','.join(expand)};{reassign};{','.join(notify)};{'+'.join(followups)}"


def runtime_fields(policies: Mapping[str, SlaPolicy]) -> Iterator[str]:
    """`sla:<policy>:<clock>:<index>` -> "kind|" + actions_text, for the fire script;
    `sla:<policy>:rating:<survey kind>` -> "below|" + actions_text, for rate.lua."""
    for name, policy in policies.items():
        for clock_name in CLOCKS:
            clock = clock_of(policy, clock_name)
            if clock is None:
                continue
            for i, step in enumerate(ladder(clock)):
                yield f"sla:{name}:{clock_name}:{i}"
                yield step_kind(step) + "|" + actions_text(step.actions)
        if policy.low_rating is not None:
            actions = actions_text(policy.low_rating.actions)
            for kind, below in policy.low_rating.thresholds().items():
                yield f"sla:{name}:rating:{kind}"
                yield f"{below}|{actions}"


def steps_text(steps: Sequence[ScheduledStep]) -> str:
    return ",".join(f"{s.index}.{s.delta_ms}" for s in steps)


def plan_text(
    policy: SlaPolicy, cal: BusinessCalendar | None, now_ms: int, fps: Mapping[str, str]
) -> str:
    """What `create.lua` needs to start a policy's clocks now:
    `clock:breach_delta_ms:fingerprint:i.delta_ms,...` per clock, joined by `|`."""
    parts = []
    for name in CLOCKS:
        clock = clock_of(policy, name)
        if clock is None:
            continue
        steps = schedule(clock, cal, now_ms)
        parts.append(f"{name}:{breach_delta(steps)}:{fps[name]}:{steps_text(steps)}")
    return "|".join(parts)
