"""Properties of the config validator and the rule engine over generated inputs.

Validator (router/routing/validation.py `parse_config`, with sla/checks.py): any JSON
document and any damaged valid config is either accepted or refused with the
validation error types only; every problem names a path that exists in the
document, or a known field missing under an existing parent; a config built
only from declared names is accepted, round-trips through its wire form, and
its cross references hold.

Rule engine (router/routing/rules.py `plan_route`, router/routing/membership.py): the rules that
contribute are exactly those an independent reading of the conditions selects
(merges up to the first non-merge match); a merge rule only adds; the plan's
pools exist and serve the contact's channel, stages start at once and never go
back in time; the rank (`enqueued_at - priority_offset`, as create.lua sets it)
falls as the tier offset rises and grows with the arrival time; pool
membership is exactly the pools whose requirements an agent meets, and more
proficiency never loses a pool or a score.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.routing.config import RoutingConfig, Rule, Stage
from router.routing.membership import agent_pools, eligible, skill_score
from router.routing.rules import RoutePlan, plan_route
from router.routing.validation import parse_config
from router.runtime.errors import BadRequest, InvalidInput
from tests.support.documents import json_paths

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TIERS = ("standard", "vip", "gold")
CHANNELS = ("voice", "chat", "email")
SKILLS = ("cards", "loans", "fx")
POOLS = ("p1", "p2", "p3")
POLICIES = ("s1", "s2")
INTENTS = ("card", "loan", "fraud")
LANGUAGES = ("en", "es")
FLAGS = ("vulnerable", "elderly")
RISK = ("high", "low", 1, True)


# --- generators --------------------------------------------------------------------------


def subset(names: Sequence[Any], min_size: int = 1) -> st.SearchStrategy[list[Any]]:
    if not names:
        return st.just([])
    return st.lists(st.sampled_from(names), min_size=min_size, max_size=len(names), unique=True)


def stages_from(pools: Sequence[str]) -> st.SearchStrategy[list[dict[str, Any]]]:
    """1-3 stages over `pools`: the first at once, the others later and later."""
    waits = st.lists(st.integers(1, 300), max_size=2).map(lambda w: [0, *sorted(w)])
    return waits.flatmap(
        lambda afters: st.tuples(*(subset(pools) for _ in afters)).map(
            lambda chosen: [{"pools": p, "after": a} for p, a in zip(chosen, afters, strict=True)]
        )
    )


@st.composite
def when_clauses(draw: st.DrawFn, tiers: list[str], channels: list[str]) -> dict[str, Any]:
    when: dict[str, Any] = {}
    options = {
        "channel": subset(channels),
        "tier": subset(tiers),
        "intent": subset(INTENTS),
        "language": subset(LANGUAGES),
        "flags": subset(FLAGS),
        "attributes": st.fixed_dictionaries({"risk": subset(RISK)}),
    }
    for key in draw(subset(list(options), min_size=0)):
        when[key] = draw(options[key])
    return when


@st.composite
def rules(draw: st.DrawFn, cfg: dict[str, Any], count: int) -> list[dict[str, Any]]:
    serving = {p: set(pool["channels"]) for p, pool in cfg["pools"].items()}
    out = []
    for i in range(count):
        rule: dict[str, Any] = {"name": f"r{i}"}
        when = draw(when_clauses(list(cfg["tiers"]), list(cfg["channels"])))
        rule["merge"] = draw(st.booleans())
        if not when and not rule["merge"] and i < count - 1:
            when = {"intent": [INTENTS[i % len(INTENTS)]]}  # a catch-all only last
        if when:
            rule["when"] = when
        if draw(st.booleans()):
            # a rule on channels may only route to pools serving one of them
            wanted = set(when.get("channel", CHANNELS))
            usable = [p for p, chs in serving.items() if chs & wanted]
            if usable:
                rule["stages"] = draw(stages_from(usable))
        rule["priority_offset"] = draw(st.integers(-300, 300))
        if draw(st.booleans()):
            rule["sla"] = draw(st.sampled_from(list(cfg["sla_policies"])))
        if draw(st.booleans()):
            rule["overflow_wait"] = draw(st.integers(0, 600))
        out.append(rule)
    return out


@st.composite
def valid_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A routing config whose every reference is to a declared name."""
    tiers = draw(subset(TIERS))
    channels = draw(subset(CHANNELS))
    skills = draw(subset(SKILLS, min_size=0))
    cfg: dict[str, Any] = {
        "tiers": {t: {"priority_offset": draw(st.integers(0, 600))} for t in tiers},
        "channels": {
            c: {"weight": draw(st.integers(1, 100)), "auto_accept": draw(st.booleans())}
            for c in channels
        },
        "skills": skills,
        "pools": {},
        "sla_policies": {p: {"answer": draw(st.integers(1, 600))} for p in draw(subset(POLICIES))},
    }
    for name in draw(subset(POOLS)):
        reqs = [{"skill": s, "min": draw(st.integers(1, 10))} for s in draw(subset(skills, 0))]
        cfg["pools"][name] = {
            "skills": reqs,
            "channels": draw(subset(channels)),
            "strategy": draw(st.sampled_from(["longest_idle", "most_skilled", "least_occupied"])),
        }
    cfg["rules"] = draw(rules(cfg, draw(st.integers(0, 4))))
    cfg["defaults"] = {
        "tier": draw(st.sampled_from(tiers)),
        # mostly a default route; without one, unmatched contacts are refused
        "stages": draw(
            st.sampled_from([True, True, True, False]).flatmap(
                lambda route: stages_from(list(cfg["pools"])) if route else st.just([])
            )
        ),
    }
    if draw(st.booleans()):
        cfg["defaults"]["sla"] = draw(st.sampled_from(list(cfg["sla_policies"])))
    return cfg


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from([*TIERS, *CHANNELS, *SKILLS, *POOLS, *POLICIES, "", "a b", "x" * 70]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=10) | st.sampled_from(["skills", "pools", "when"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@st.composite
def damaged_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid config with 1-3 values replaced (names swapped or any JSON) or removed."""
    doc = copy.deepcopy(draw(valid_docs()))
    for _ in range(draw(st.integers(1, 3))):
        paths = json_paths(doc)
        if not paths:
            break
        *parent_path, last = draw(st.sampled_from(paths))
        parent: Any = doc
        for part in parent_path:
            parent = parent[part]
        if draw(st.integers(0, 4)) == 0:
            del parent[last]
        else:
            parent[last] = draw(json_values)
    return doc


# --- the validator ------------------------------------------------------------------------

_SCHEMA = msgspec.json.schema(RoutingConfig)


def _field_names(node: object) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        properties = node.get("properties")
        names |= set(properties) if isinstance(properties, dict) else set()
        for value in node.values():
            names |= _field_names(value)
    elif isinstance(node, list):
        for value in node:
            names |= _field_names(value)
    return names


KNOWN_FIELDS = _field_names(_SCHEMA)
_PART = re.compile(r'\.?([A-Za-z0-9_:-]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def parse_path(path: str) -> list[str | int]:
    """`pools["eu.cards"].skills[0].skill` -> ["pools", "eu.cards", "skills", 0, "skill"]."""
    parts: list[str | int] = []
    pos = 0
    while pos < len(path):
        m = _PART.match(path, pos)
        assert m is not None and m.end() > pos, f"unreadable problem path {path!r}"
        name, index, quoted = m.groups()
        parts.append(int(index) if index is not None else json.loads(quoted) if quoted else name)
        pos = m.end()
    return parts


def _names_something(doc: object, parts: Sequence[str | int]) -> bool:
    """The path exists in `doc` as far as it goes; from where it leaves it (a
    required field left out, a default found wrong) it names known fields only."""
    node = doc
    for i, part in enumerate(parts):
        in_object = isinstance(node, dict) and isinstance(part, str) and part in node
        in_array = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_object or in_array):
            return all(isinstance(p, str) and p in KNOWN_FIELDS for p in parts[i:])
        node = node[part]  # type: ignore[index]
    return True


def check_outcome(doc: object) -> RoutingConfig | None:
    """The validator's answer, with the properties every answer must have."""
    try:
        cfg = parse_config(json.dumps(doc).encode())
    except InvalidInput as exc:
        assert exc.problems and exc.status == 422
        for problem in exc.problems:
            assert problem.message, problem
            parts = parse_path(problem.field)
            assert _names_something(doc, parts), (problem, doc)
        return None
    except BadRequest as exc:
        assert exc.status == 400
        return None
    check_references(cfg)
    return cfg


def check_references(cfg: RoutingConfig) -> None:
    """What an accepted config guarantees the engine (no lookup can miss)."""
    assert cfg.defaults.tier in cfg.tiers
    for pool in cfg.pools.values():
        assert set(pool.channels) <= set(cfg.channels)
        assert {r.skill for r in pool.skills} <= set(cfg.skills)
    routes: list[list[Stage]] = [cfg.defaults.stages, *(r.stages or [] for r in cfg.rules)]
    for stages in routes:
        assert all(p in cfg.pools for stage in stages for p in stage.pools)
        assert not stages or stages[0].after == 0
        assert [s.after for s in stages] == sorted(s.after for s in stages)
    for rule in cfg.rules:
        assert set(rule.when.channel or ()) <= set(cfg.channels)
        assert set(rule.when.tier or ()) <= set(cfg.tiers)
        assert rule.sla is None or rule.sla in cfg.sla_policies
    assert cfg.defaults.sla is None or cfg.defaults.sla in cfg.sla_policies
    assert len({r.name for r in cfg.rules}) == len(cfg.rules)


@SETTINGS
@given(json_values)
def test_any_json_is_accepted_or_refused_cleanly(doc: object) -> None:
    check_outcome(doc)


@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from([*_SCHEMA["$defs"]["RoutingConfig"]["properties"], "x"]), json_values
    )
)
def test_config_shaped_json_is_refused_cleanly(doc: dict[str, object]) -> None:
    check_outcome(doc)


@SETTINGS
@given(damaged_docs())
def test_damaged_configs_are_refused_cleanly(doc: dict[str, Any]) -> None:
    check_outcome(doc)


@SETTINGS
@given(valid_docs())
def test_configs_of_declared_names_are_accepted_and_round_trip(doc: dict[str, Any]) -> None:
    cfg = check_outcome(doc)
    assert cfg is not None, doc
    again = parse_config(msgspec.json.encode(msgspec.to_builtins(cfg)))
    assert again == cfg


# --- the rule engine --------------------------------------------------------------------


def contacts_for(doc: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Contacts mostly on the config's channels and tiers, sometimes not."""
    return st.fixed_dictionaries(
        {
            "channel": st.sampled_from(list(doc["channels"])) | st.sampled_from(CHANNELS),
            "tier": st.none() | st.sampled_from(list(doc["tiers"])) | st.sampled_from(TIERS),
            "intent": st.none() | st.sampled_from(INTENTS),
            "language": st.none() | st.sampled_from(LANGUAGES),
            "flags": subset(FLAGS, min_size=0),
            "attributes": st.dictionaries(st.just("risk"), st.sampled_from([*RISK, 0, False, "x"])),
        }
    )


# A config and a contact for it.
routed = valid_docs().flatmap(lambda doc: st.tuples(st.just(doc), contacts_for(doc)))


def parsed(doc: dict[str, Any]) -> RoutingConfig:
    return parse_config(json.dumps(doc).encode())


def plan(cfg: RoutingConfig, contact: Mapping[str, Any]) -> RoutePlan | InvalidInput:
    try:
        return plan_route(cfg, **contact)
    except InvalidInput as exc:
        return exc


def holds(rule: Rule, c: Mapping[str, Any], tier: str) -> bool:
    """An independent reading of a rule's conditions (all given ones hold)."""
    w = rule.when
    checks = [
        w.channel is None or c["channel"] in w.channel,
        w.tier is None or tier in w.tier,
        w.intent is None or c["intent"] in w.intent,
        w.language is None or c["language"] in w.language,
        w.flags is None or set(w.flags) <= set(c["flags"]),
    ]
    if w.attributes is not None:
        for name, accepted in w.attributes.items():
            value = c["attributes"].get(name, KeyError)
            # JSON semantics: true is not 1, 1 is 1.0
            checks.append(
                any(type(a) is type(value) and a == value for a in accepted)
                or (
                    type(value) in (int, float)
                    and any(type(a) in (int, float) and a == value for a in accepted)
                )
            )
    return all(checks)


@SETTINGS
@given(routed)
def test_plan_follows_first_match_and_merges(case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    doc, contact = case
    cfg = parsed(doc)
    p = plan(cfg, contact)
    tier = contact["tier"] or cfg.defaults.tier
    if isinstance(p, InvalidInput):
        fields = {f.field for f in p.problems}
        assert fields <= {"channel", "customer.tier", "intent"}, p.problems
        assert (contact["channel"] not in cfg.channels) == ("channel" in fields) or (
            "channel" in fields and "no pool" in p.problems[0].message
        )
        assert (tier not in cfg.tiers) == ("customer.tier" in fields)
        return
    expected: list[Rule] = []
    for rule in cfg.rules:
        if holds(rule, contact, tier):
            expected.append(rule)
            if not rule.merge:
                break
    assert p.rules == [r.name for r in expected]
    assert p.tier == tier and p.tier_offset == cfg.tiers[tier].priority_offset
    assert p.rule_offset == sum(r.priority_offset for r in expected)
    assert p.priority_offset == p.tier_offset + p.rule_offset
    setters = [r for r in expected if r.stages]
    route = setters[0].stages if setters else cfg.defaults.stages
    assert route, "planned without a route"
    firsts = [r.sla for r in expected if r.sla is not None]
    assert p.sla == (firsts[0] if firsts else cfg.defaults.sla)
    # the pools exist and serve the channel; stages start at once, never go back
    assert p.stages and p.stages[0].after == 0
    assert [s.after for s in p.stages] == sorted(s.after for s in p.stages)
    for stage in p.stages:
        assert stage.pools
        for name in stage.pools:
            assert name in cfg.pools and contact["channel"] in cfg.pools[name].channels
            assert any(name in s.pools for s in route)


@SETTINGS
@given(routed, st.data())
def test_a_merge_rule_only_adds(case: tuple[dict[str, Any], dict[str, Any]], data: Any) -> None:
    doc, contact = case
    cfg = parsed(doc)
    p = plan(cfg, contact)
    if isinstance(p, InvalidInput):
        return
    merges = [r for r in cfg.rules if r.merge and r.name in p.rules]
    if not merges:
        return
    merge = data.draw(st.sampled_from(merges))
    without = msgspec.structs.replace(cfg, rules=[r for r in cfg.rules if r is not merge])
    q = plan(without, contact)
    if isinstance(q, InvalidInput):
        assert merge.stages, q.problems  # only losing the route it gave can do that
        return
    # the same rules minus this one, its offset less; nothing else it did not set
    assert q.rules == [name for name in p.rules if name != merge.name]
    assert p.priority_offset - q.priority_offset == merge.priority_offset
    if merge.sla is None:
        assert q.sla == p.sla
    if not merge.stages:
        assert q.stages == p.stages


@SETTINGS
@given(routed, st.integers(0, 10_000), st.floats(0, 86_400), st.floats(0, 86_400))
def test_rank_falls_with_tier_offset_and_rises_with_arrival(
    case: tuple[dict[str, Any], dict[str, Any]], boost: int, t1: float, t2: float
) -> None:
    doc, contact = case
    cfg = parsed(doc)
    p = plan(cfg, contact)
    if isinstance(p, InvalidInput):
        return

    def rank(plan: RoutePlan, enqueued_at: float) -> float:
        return enqueued_at - plan.priority_offset  # create.lua: c.rank = NOW - c.off

    tier = p.tier
    tiers = dict(cfg.tiers)
    offset = tiers[tier].priority_offset + boost
    tiers[tier] = msgspec.structs.replace(tiers[tier], priority_offset=offset)
    boosted = plan(msgspec.structs.replace(cfg, tiers=tiers), contact)
    assert isinstance(boosted, RoutePlan) and boosted.rules == p.rules
    assert boosted.priority_offset == p.priority_offset + boost
    assert rank(boosted, t1) <= rank(p, t1)  # a higher tier is served as if it waited longer
    early, late = sorted((t1, t2))
    assert rank(p, early) <= rank(p, late)  # the same plan: first come, first served


agent_skills = st.dictionaries(st.sampled_from([*SKILLS, "other"]), st.integers(1, 10), max_size=4)


@SETTINGS
@given(valid_docs(), agent_skills, st.sampled_from(SKILLS), st.integers(1, 9))
def test_membership_is_exactly_the_pools_an_agent_qualifies_for(
    doc: dict[str, Any], skills: dict[str, int], skill: str, more: int
) -> None:
    cfg = parsed(doc)
    pools = agent_pools(cfg, skills)
    assert set(pools) == {
        name
        for name, pool in cfg.pools.items()
        if all(skills.get(r.skill, 0) >= r.min for r in pool.skills)
    }
    assert all(0 <= score <= 100 for score in pools.values())
    assert all(eligible(skills, cfg.pools[name].skills) for name in pools)
    better = {**skills, skill: min(10, skills.get(skill, 0) + more)}
    raised = agent_pools(cfg, better)
    assert set(pools) <= set(raised)  # more proficiency never loses a pool ...
    assert all(raised[name] >= score for name, score in pools.items())  # ... nor a score
    for name in raised:
        assert raised[name] == skill_score(better, cfg.pools[name].skills)
