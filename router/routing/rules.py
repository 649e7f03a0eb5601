"""Rule evaluation: which pools a new contact waits in, and how it ranks there.

Runs once per contact on the hot path, so it walks the config as it is: no
indexes to keep in step with hot reloads, and no allocation beyond the plan
itself unless a stage has to be narrowed to the contact's channel. Pure code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from router.routing.config import (
    AttributeValue,
    Conditions,
    HandoffConditions,
    RoutingConfig,
    Rule,
    SkillRequirement,
    Stage,
)
from router.routing.model import HandoffIn
from router.runtime.errors import FieldProblem, InvalidInput

__all__ = ["RoutePlan", "plan_route"]

_MISSING = object()


class RoutePlan(msgspec.Struct, frozen=True):
    """The outcome of the rules for one contact.

    `stages` may be the config's own list (shared to save a copy per contact):
    treat it as read-only.
    """

    stages: list[Stage]
    tier: str
    tier_offset: float
    rule_offset: float
    # Seconds the contact ranks ahead of its arrival: tier_offset + rule_offset.
    priority_offset: float
    overflow_wait: float | None
    sla: str | None
    # Names of the rules that contributed, in evaluation order (for audit).
    rules: list[str]


class _Outcome:
    """What the matching rules contributed; the first rule to set a field wins."""

    __slots__ = ("names", "offset", "overflow_wait", "sla", "stages")

    def __init__(self) -> None:
        self.names: list[str] = []
        self.offset = 0.0
        self.stages: list[Stage] | None = None
        self.sla: str | None = None
        self.overflow_wait: float | None = None

    def add(self, rule: Rule) -> None:
        self.names.append(rule.name)
        self.offset += rule.priority_offset
        # An empty list sets nothing (validation rejects it; be safe anyway).
        if self.stages is None and rule.stages:
            self.stages = rule.stages
        if self.sla is None:
            self.sla = rule.sla
        if self.overflow_wait is None:
            self.overflow_wait = rule.overflow_wait


def plan_route(
    cfg: RoutingConfig,
    *,
    channel: str,
    tier: str | None,
    intent: str | None,
    language: str | None,
    flags: Sequence[str],
    attributes: Mapping[str, object],
    skills: Sequence[SkillRequirement] = (),
    handoff: HandoffIn | None = None,
) -> RoutePlan:
    """Evaluate the rules for a contact; raise `InvalidInput` if it cannot be routed."""
    tier_name = cfg.defaults.tier if tier is None else tier
    _check_contact(cfg, channel, tier_name, tier is None, skills)
    tier_offset = cfg.tiers[tier_name].priority_offset

    outcome = _Outcome()
    for rule in cfg.rules:
        if _matches(rule.when, channel, tier_name, intent, language, flags, attributes, handoff):
            outcome.add(rule)
            if not rule.merge:
                break

    stages = outcome.stages or cfg.defaults.stages
    if not stages:
        raise InvalidInput(
            [
                FieldProblem(
                    "intent", "no rule routes this contact and no default route is configured"
                )
            ]
        )
    return RoutePlan(
        stages=_for_channel(cfg, stages, channel),
        tier=tier_name,
        tier_offset=tier_offset,
        rule_offset=outcome.offset,
        priority_offset=tier_offset + outcome.offset,
        overflow_wait=outcome.overflow_wait,
        sla=outcome.sla if outcome.sla is not None else cfg.defaults.sla,
        rules=outcome.names,
    )


def _check_contact(
    cfg: RoutingConfig,
    channel: str,
    tier: str,
    default_tier: bool,
    skills: Sequence[SkillRequirement],
) -> None:
    # Report every bad field at once; the common all-valid case allocates nothing.
    problems: list[FieldProblem] = []
    if channel not in cfg.channels:
        problems.append(
            FieldProblem(
                "channel", f"unknown channel {channel!r}; known: {', '.join(cfg.channels)}"
            )
        )
    if tier not in cfg.tiers:
        what = "the default tier" if default_tier else "unknown tier"
        problems.append(
            FieldProblem("customer.tier", f"{what} {tier!r} is not one of: {', '.join(cfg.tiers)}")
        )
    for i, req in enumerate(skills):
        if req.skill not in cfg.skills:
            problems.append(FieldProblem(f"skills[{i}].skill", f"unknown skill {req.skill!r}"))
    if problems:
        raise InvalidInput(problems)


def _matches(
    when: Conditions,
    channel: str,
    tier: str,
    intent: str | None,
    language: str | None,
    flags: Sequence[str],
    attributes: Mapping[str, object],
    handoff: HandoffIn | None,
) -> bool:
    # Cheapest tests first; a condition left out (None) always holds.
    return (
        (when.channel is None or channel in when.channel)
        and (when.tier is None or tier in when.tier)
        and (when.intent is None or intent in when.intent)
        and (when.language is None or language in when.language)
        and (when.flags is None or all(flag in flags for flag in when.flags))
        and (when.attributes is None or _attributes_match(when.attributes, attributes))
        and (when.handoff is None or _handoff_matches(when.handoff, handoff))
    )


def _handoff_matches(when: HandoffConditions, handoff: HandoffIn | None) -> bool:
    if handoff is None:
        return False
    conf = handoff.confidence
    if (when.min_confidence is not None or when.max_confidence is not None) and conf is None:
        return False  # a bound asks how sure the bot was; no answer fails it
    return (
        (when.bot is None or handoff.bot in when.bot)
        and (when.intent is None or handoff.intent in when.intent)
        and (when.min_confidence is None or conf is None or conf >= when.min_confidence)
        and (when.max_confidence is None or conf is None or conf <= when.max_confidence)
        and (
            when.fields is None
            or all(handoff.fields.get(k) in values for k, values in when.fields.items())
        )
    )


def _attributes_match(
    accepted: dict[str, list[AttributeValue]], attributes: Mapping[str, object]
) -> bool:
    for name, values in accepted.items():
        value = attributes.get(name, _MISSING)
        if value is _MISSING or not _value_in(value, values):
            return False
    return True


def _value_in(value: object, accepted: list[AttributeValue]) -> bool:
    # Python has True == 1 and 1 == 1.0; JSON routing data should only get the
    # second. A boolean matches only the same boolean; numbers match by value.
    if isinstance(value, bool):
        return any(a is value for a in accepted)
    return any(a == value and not isinstance(a, bool) for a in accepted)


def _for_channel(cfg: RoutingConfig, stages: list[Stage], channel: str) -> list[Stage]:
    """The stages narrowed to pools serving `channel`, without stages left empty."""
    kept: list[Stage] | None = None  # copied only once something is dropped
    for i, stage in enumerate(stages):
        narrowed = _stage_for_channel(cfg, stage, channel)
        if narrowed is not stage and kept is None:
            kept = stages[:i]
        if kept is not None and narrowed is not None:
            kept.append(narrowed)
    result = stages if kept is None else kept
    if not result:
        raise InvalidInput(
            [FieldProblem("channel", f"no pool on this contact's route serves channel {channel!r}")]
        )
    if result[0].after != 0:
        # The stage meant to start at once was dropped: start the next one at
        # once rather than leave the contact in no queue until its time comes.
        result = [Stage(pools=result[0].pools), *result[1:]]
    return result


def _stage_for_channel(cfg: RoutingConfig, stage: Stage, channel: str) -> Stage | None:
    """`stage` itself if all its pools serve `channel`, a narrowed copy, or None."""
    pools = cfg.pools
    for i, name in enumerate(stage.pools):
        pool = pools.get(name)
        if pool is None or channel not in pool.channels:
            serving = stage.pools[:i] + [
                p for p in stage.pools[i + 1 :] if (q := pools.get(p)) and channel in q.channels
            ]
            return Stage(pools=serving, after=stage.after) if serving else None
    return stage
