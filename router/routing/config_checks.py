"""Cross-reference problems of a routing config that no schema can express:
a rule naming an unknown pool, a pool serving an undeclared channel, a stage
that can never serve its rule, a retention window too long, SLA policy checks.

The checks walk plain JSON values rather than the typed Structs, so they also
run on a document that failed the schema: one bad field must not hide an
unrelated dangling reference elsewhere. Pure code, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final

from router.routing.config import MAX_WINDOW_S, WINDOW_UNITS, Defaults, window_seconds
from router.routing.schema_problems import clip, json_path
from router.routing.surveys import survey_problems
from router.runtime.errors import FieldProblem
from sla.calendar import zone_of
from sla.checks import sla_problems

_DEFAULTS: Final = Defaults()
COLLECTIONS = ("tiers", "channels", "pools", "sla_policies", "skills")
_CONDITION_LISTS = ("channel", "tier", "intent", "language", "flags")


class _Declared:
    """Names a config declares; `None` where the collection is unusable."""

    def __init__(self, doc: dict[str, Any], broken: frozenset[str]) -> None:
        def names(key: str, kind: type[dict[Any, Any]] | type[list[Any]]) -> frozenset[str] | None:
            # An optional collection left out is empty, not unknown; a required
            # one left out has a schema problem and is in `broken`.
            value = doc.get(key, kind())
            if key in broken or not isinstance(value, kind):
                return None
            return frozenset(n for n in value if isinstance(n, str))

        self.tiers = names("tiers", dict)
        self.channels = names("channels", dict)
        self.skills = names("skills", list)
        self.pools = names("pools", dict)
        self.sla_policies = names("sla_policies", dict)
        # pool -> channels it serves, to spot stages that can never serve a rule
        self.pool_channels = {
            name: frozenset(c for c in _seq(_obj(pool).get("channels")) if isinstance(c, str))
            for name, pool in _obj(doc.get("pools")).items()
        }


def semantic_problems(doc: dict[str, Any], broken: frozenset[str]) -> list[FieldProblem]:
    declared = _Declared(doc, broken)
    problems: list[FieldProblem] = []
    problems += _duplicate_skills(doc.get("skills"))
    for name, pool in _obj(doc.get("pools")).items():
        problems += _pool_problems(["pools", name], _obj(pool), declared)
    problems += _rules_problems(_seq(doc.get("rules")), declared)
    problems += _defaults_problems(_obj(doc.get("defaults")), declared)
    problems += _retention_problems(_obj(doc.get("retention")), _obj(doc.get("defaults")))
    problems += (FieldProblem(json_path(where), msg) for where, msg in sla_problems(doc))
    problems += (FieldProblem(json_path(where), msg) for where, msg in survey_problems(doc))
    problems += _timezone_problems(doc.get("timezone", "UTC"))
    problems += _callback_problems(doc.get("callbacks"), declared)
    return problems


def _callback_problems(callbacks: object, declared: _Declared) -> Iterator[FieldProblem]:
    # Only a config that sets up callbacks must declare their channel: configs
    # without a "voice" channel stay valid as long as they never mention callbacks.
    if not isinstance(callbacks, dict):
        return
    channel = callbacks.get("channel", "voice")
    yield from _unknown_name(["callbacks", "channel"], channel, declared.channels, "channel")
    known = declared.channels or frozenset()
    served = any(channel in pool for pool in declared.pool_channels.values())
    if isinstance(channel, str) and channel in known and not served:
        yield FieldProblem("callbacks.channel", f"no pool serves channel {channel!r}")


def _timezone_problems(zone: object) -> Iterator[FieldProblem]:
    # the schema checks it is a short string; only the tz database knows the names
    if isinstance(zone, str) and 0 < len(zone) <= 64 and zone_of(zone) is None:
        yield FieldProblem("timezone", f"unknown IANA timezone {zone!r}")


def _retention_problems(
    retention: dict[str, Any], defaults: dict[str, Any]
) -> Iterator[FieldProblem]:
    for name, window in retention.items():
        # the schema checks the spelling; only the length is left
        if (
            isinstance(window, str)
            and window[-1:] in WINDOW_UNITS
            and window[:-1].isdigit()
            and window_seconds(window) > MAX_WINDOW_S
        ):
            yield FieldProblem(json_path(["retention", name]), "at most 3650 days")
    if retention.get("contacts") == "keep":
        yield FieldProblem(
            "retention.contacts", 'contact data must expire: give a window such as "30d"'
        )
    if retention.get("grace") == "keep":
        yield FieldProblem(
            "retention.grace", 'finished contacts must leave Redis: give a window such as "1h"'
        )
    if retention.get("contacts") is not None and defaults.get("retention") is not None:
        yield FieldProblem(
            "defaults.retention", "superseded by retention.contacts: give only one of them"
        )


def _duplicate_skills(skills: object) -> Iterator[FieldProblem]:
    seen: set[str] = set()
    for i, skill in enumerate(_seq(skills)):
        if not isinstance(skill, str):
            continue
        if skill in seen:
            yield FieldProblem(json_path(["skills", i]), f"skill {skill!r} is declared twice")
        seen.add(skill)


def _pool_problems(
    base: list[str | int], pool: dict[str, Any], declared: _Declared
) -> Iterator[FieldProblem]:
    required: set[str] = set()
    for i, req in enumerate(_seq(pool.get("skills"))):
        skill = _obj(req).get("skill")
        if not isinstance(skill, str):
            continue
        where = json_path([*base, "skills", i, "skill"])
        if declared.skills is not None and skill not in declared.skills:
            yield FieldProblem(where, f"unknown skill {skill!r}; declare it in skills")
        elif skill in required:
            yield FieldProblem(where, f"skill {skill!r} is required twice")
        required.add(skill)
    yield from _unknown_names(
        [*base, "channels"], pool.get("channels"), declared.channels, "channel", "channels"
    )


def _rules_problems(rules: Sequence[object], declared: _Declared) -> Iterator[FieldProblem]:
    first_use: dict[str, int] = {}
    catch_all: int | None = None
    for i, value in enumerate(rules):
        rule = _obj(value)
        name = rule.get("name")
        if isinstance(name, str):
            if name in first_use:
                yield FieldProblem(
                    json_path(["rules", i, "name"]),
                    f"rule name {name!r} is already used by rules[{first_use[name]}]",
                )
            first_use.setdefault(name, i)
        if catch_all is not None:
            yield FieldProblem(
                json_path(["rules", i]),
                f"never reached: rules[{catch_all}] matches every contact and does not merge",
            )
        yield from _rule_problems(i, rule, declared)
        if catch_all is None and _matches_everything(rule):
            catch_all = i


def _matches_everything(rule: dict[str, Any]) -> bool:
    when = _obj(rule.get("when"))
    return rule.get("merge") is not True and all(v is None for v in when.values())


def _rule_problems(i: int, rule: dict[str, Any], declared: _Declared) -> Iterator[FieldProblem]:
    base: list[str | int] = ["rules", i]
    when = _obj(rule.get("when"))
    yield from _conditions_problems([*base, "when"], when, declared)
    stages = rule.get("stages")
    if isinstance(stages, list) and not stages:
        yield FieldProblem(
            json_path([*base, "stages"]),
            "must list at least one stage; omit it to leave routing to later rules or defaults",
        )
    channels = _seq(when.get("channel"))
    serves = frozenset(c for c in channels if isinstance(c, str)) if channels else None
    yield from _stages_problems([*base, "stages"], stages, declared, serves)
    yield from _unknown_name([*base, "sla"], rule.get("sla"), declared.sla_policies, "SLA policy")


def _conditions_problems(
    base: list[str | int], when: dict[str, Any], declared: _Declared
) -> Iterator[FieldProblem]:
    for key in _CONDITION_LISTS:
        if when.get(key) == []:
            yield FieldProblem(
                json_path([*base, key]), "an empty list never matches; omit the condition instead"
            )
    for attribute, accepted in _obj(when.get("attributes")).items():
        if accepted == []:
            yield FieldProblem(
                json_path([*base, "attributes", attribute]),
                "an empty list never matches; omit the attribute instead",
            )
    yield from _handoff_problems([*base, "handoff"], _obj(when.get("handoff")))
    yield from _unknown_names(
        [*base, "channel"], when.get("channel"), declared.channels, "channel", "channels"
    )
    yield from _unknown_names([*base, "tier"], when.get("tier"), declared.tiers, "tier", "tiers")


def _handoff_problems(base: list[str | int], when: dict[str, Any]) -> Iterator[FieldProblem]:
    for key in ("bot", "intent"):
        if when.get(key) == []:
            yield FieldProblem(
                json_path([*base, key]), "an empty list never matches; omit the condition instead"
            )
    for name, accepted in _obj(when.get("fields")).items():
        if accepted == []:
            yield FieldProblem(
                json_path([*base, "fields", name]),
                "an empty list never matches; omit the field instead",
            )
    low, high = when.get("min_confidence"), when.get("max_confidence")
    if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
        yield FieldProblem(
            json_path([*base, "min_confidence"]),
            f"min_confidence {low} is above max_confidence {high}: no hand-off matches",
        )


def _stages_problems(
    base: list[str | int],
    stages: object,
    declared: _Declared,
    rule_channels: frozenset[str] | None,
) -> Iterator[FieldProblem]:
    previous = 0.0
    for j, value in enumerate(_seq(stages)):
        stage = _obj(value)
        after = stage.get("after", 0.0)
        if _is_number(after):
            if j == 0 and after != 0:
                yield FieldProblem(
                    json_path([*base, 0, "after"]),
                    f"the first stage must start at once (after 0), not after {after:g}",
                )
            elif after < previous:
                yield FieldProblem(
                    json_path([*base, j, "after"]),
                    f"stages must not start earlier than the one before ({after:g} < {previous:g})",
                )
            previous = max(previous, after)
        yield from _stage_pool_problems(
            [*base, j, "pools"], stage.get("pools"), declared, rule_channels
        )


def _stage_pool_problems(
    base: list[str | int],
    pools: object,
    declared: _Declared,
    rule_channels: frozenset[str] | None,
) -> Iterator[FieldProblem]:
    for k, pool in enumerate(_seq(pools)):
        if not isinstance(pool, str) or declared.pools is None:
            continue
        if pool not in declared.pools:
            yield FieldProblem(json_path([*base, k]), f"unknown pool {pool!r}; declare it in pools")
        elif rule_channels is not None and not rule_channels & declared.pool_channels[pool]:
            # The pool would be dropped for every contact this rule matches.
            yield FieldProblem(
                json_path([*base, k]),
                f"pool {pool!r} serves none of this rule's channels "
                f"({', '.join(sorted(rule_channels))})",
            )


def _defaults_problems(defaults: dict[str, Any], declared: _Declared) -> Iterator[FieldProblem]:
    tier = defaults.get("tier", _DEFAULTS.tier)
    yield from _unknown_name(["defaults", "tier"], tier, declared.tiers, "tier")
    yield from _unknown_name(
        ["defaults", "sla"], defaults.get("sla"), declared.sla_policies, "SLA policy"
    )
    yield from _stages_problems(["defaults", "stages"], defaults.get("stages"), declared, None)


def _unknown_names(
    base: list[str | int],
    values: object,
    known: frozenset[str] | None,
    what: str,
    collection: str,
) -> Iterator[FieldProblem]:
    if known is None:
        return
    for k, value in enumerate(_seq(values)):
        if isinstance(value, str) and value not in known:
            yield FieldProblem(
                json_path([*base, k]), f"unknown {what} {value!r}; declare it in {collection}"
            )


def _unknown_name(
    where: list[str | int], value: object, known: frozenset[str] | None, what: str
) -> Iterator[FieldProblem]:
    if known is not None and isinstance(value, str) and value not in known:
        names = ", ".join(sorted(known)) or "none declared"
        yield FieldProblem(json_path(where), clip(f"unknown {what} {value!r} (known: {names})"))


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _seq(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
