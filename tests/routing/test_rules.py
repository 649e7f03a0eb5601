"""Rule evaluation: first match, merge, conditions, offsets, defaults, channel filtering."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.cli.demo import demo_config
from router.routing.config import (
    Channel,
    Conditions,
    Defaults,
    Pool,
    RoutingConfig,
    Rule,
    SkillRequirement,
    Stage,
    Tier,
)
from router.routing.rules import RoutePlan, plan_route
from router.runtime.errors import InvalidInput

DEMO = demo_config()


def make_config(rules: list[Rule], default_stages: list[Stage] | None = None) -> RoutingConfig:
    return RoutingConfig(
        tiers={
            "standard": Tier(),
            "gold": Tier(priority_offset=60),
            "vip": Tier(priority_offset=120),
        },
        channels={"voice": Channel(), "chat": Channel(weight=25), "email": Channel(weight=10)},
        skills=["cards", "loans"],
        pools={
            "cards": Pool(skills=[], channels=["voice", "chat", "email"]),
            "loans": Pool(skills=[], channels=["voice", "chat"]),
            "voice_only": Pool(skills=[], channels=["voice"]),
            "email_desk": Pool(skills=[], channels=["email"]),
        },
        rules=rules,
        defaults=Defaults(
            stages=[Stage(pools=["cards"])] if default_stages is None else default_stages,
            sla="std",
        ),
    )


def plan(
    cfg: RoutingConfig,
    *,
    channel: str = "voice",
    tier: str | None = None,
    intent: str | None = None,
    language: str | None = None,
    flags: Sequence[str] = (),
    attributes: Mapping[str, object] | None = None,
    skills: Sequence[SkillRequirement] = (),
) -> RoutePlan:
    return plan_route(
        cfg,
        channel=channel,
        tier=tier,
        intent=intent,
        language=language,
        flags=flags,
        attributes=attributes or {},
        skills=skills,
    )


def pools_of(p: RoutePlan) -> list[tuple[float, list[str]]]:
    return [(s.after, s.pools) for s in p.stages]


def to(*pools: str, after: float = 0.0) -> list[Stage]:
    return [Stage(pools=list(pools), after=after)]


# --- matching ---------------------------------------------------------------------


def test_first_matching_rule_wins() -> None:
    cfg = make_config(
        [
            Rule(name="loans", when=Conditions(intent=["loan"]), stages=to("loans"), sla="a"),
            Rule(name="any_loan", when=Conditions(intent=["loan"]), stages=to("cards"), sla="b"),
        ]
    )
    p = plan(cfg, intent="loan")
    assert p.rules == ["loans"]
    assert pools_of(p) == [(0.0, ["loans"])]
    assert p.sla == "a"


def test_non_matching_rules_are_skipped() -> None:
    cfg = make_config(
        [
            Rule(name="chat", when=Conditions(channel=["chat"]), stages=to("loans")),
            Rule(name="voice", when=Conditions(channel=["voice"]), stages=to("voice_only")),
        ]
    )
    assert plan(cfg, channel="voice").rules == ["voice"]
    assert plan(cfg, channel="chat").rules == ["chat"]


def test_merge_rules_contribute_and_evaluation_goes_on() -> None:
    cfg = make_config(
        [
            Rule(name="boost", when=Conditions(tier=["vip"]), priority_offset=30, merge=True),
            Rule(name="sla", sla="vip", overflow_wait=45, priority_offset=5, merge=True),
            Rule(
                name="loans",
                when=Conditions(intent=["loan"]),
                stages=to("loans"),
                sla="loans",
                overflow_wait=90,
                priority_offset=10,
            ),
            Rule(name="never", priority_offset=1000, stages=to("cards")),
        ]
    )
    p = plan(cfg, tier="vip", intent="loan")
    assert p.rules == ["boost", "sla", "loans"]
    assert p.rule_offset == 45
    assert p.tier_offset == 120
    assert p.priority_offset == 165
    # The first contributing rule that sets a field wins it.
    assert p.sla == "vip"
    assert p.overflow_wait == 45
    assert pools_of(p) == [(0.0, ["loans"])]


def test_stages_come_from_the_first_merge_rule_that_sets_them() -> None:
    cfg = make_config(
        [
            Rule(name="m", stages=to("voice_only"), merge=True),
            Rule(name="loans", when=Conditions(intent=["loan"]), stages=to("loans")),
        ]
    )
    p = plan(cfg, intent="loan")
    assert p.rules == ["m", "loans"]
    assert pools_of(p) == [(0.0, ["voice_only"])]


def test_all_given_conditions_must_hold() -> None:
    cfg = make_config(
        [
            Rule(
                name="vip_loan_en",
                when=Conditions(intent=["loan"], tier=["vip", "gold"], language=["en"]),
                stages=to("loans"),
            )
        ]
    )
    assert plan(cfg, intent="loan", tier="gold", language="en").rules == ["vip_loan_en"]
    assert plan(cfg, intent="loan", tier="gold", language="fr").rules == []
    assert plan(cfg, intent="loan", tier="standard", language="en").rules == []
    assert plan(cfg, intent="card", tier="vip", language="en").rules == []
    # A contact without an intent or language never meets a condition on it.
    assert plan(cfg, intent=None, tier="vip", language="en").rules == []
    assert plan(cfg, intent="loan", tier="vip", language=None).rules == []


def test_every_listed_flag_must_be_present() -> None:
    cfg = make_config(
        [Rule(name="r", when=Conditions(flags=["vulnerable", "elderly"]), stages=to("loans"))]
    )
    assert plan(cfg, flags=["elderly", "x", "vulnerable"]).rules == ["r"]
    assert plan(cfg, flags=["vulnerable"]).rules == []
    assert plan(cfg, flags=[]).rules == []


def test_attribute_conditions() -> None:
    cfg = make_config(
        [
            Rule(
                name="r",
                when=Conditions(attributes={"segment": ["sme", "corp"], "balance": [1, 2.5]}),
                stages=to("loans"),
            )
        ]
    )
    assert plan(cfg, attributes={"segment": "sme", "balance": 1}).rules == ["r"]
    assert plan(cfg, attributes={"segment": "corp", "balance": 2.5, "other": 7}).rules == ["r"]
    assert plan(cfg, attributes={"segment": "sme", "balance": 1.0}).rules == ["r"]
    assert plan(cfg, attributes={"segment": "retail", "balance": 1}).rules == []
    # A missing attribute fails its condition.
    assert plan(cfg, attributes={"segment": "sme"}).rules == []
    assert plan(cfg, attributes={}).rules == []


def test_booleans_and_numbers_do_not_match_each_other() -> None:
    cfg = make_config(
        [
            Rule(name="one", when=Conditions(attributes={"x": [1]}), stages=to("voice_only")),
            Rule(name="flagged", when=Conditions(attributes={"x": [True]}), stages=to("loans")),
        ]
    )
    assert plan(cfg, attributes={"x": True}).rules == ["flagged"]
    assert plan(cfg, attributes={"x": 1}).rules == ["one"]
    assert plan(cfg, attributes={"x": False}).rules == []
    assert plan(cfg, attributes={"x": "1"}).rules == []


# --- tiers, defaults and errors ---------------------------------------------------


def test_tier_offset_and_default_tier() -> None:
    cfg = make_config([Rule(name="r", priority_offset=15, stages=to("cards"))])
    gold = plan(cfg, tier="gold")
    assert (gold.tier, gold.tier_offset, gold.rule_offset, gold.priority_offset) == (
        "gold",
        60,
        15,
        75,
    )
    default = plan(cfg, tier=None)
    assert (default.tier, default.priority_offset) == ("standard", 15)


def test_negative_rule_offsets_lower_priority() -> None:
    cfg = make_config([Rule(name="slow", priority_offset=-100, stages=to("cards"))])
    assert plan(cfg, tier="vip").priority_offset == 20


def test_default_route_and_sla_when_no_rule_routes() -> None:
    cfg = make_config([Rule(name="boost", priority_offset=10, merge=True)])
    p = plan(cfg, intent="anything")
    assert p.rules == ["boost"]
    assert pools_of(p) == [(0.0, ["cards"])]
    assert p.sla == "std"
    assert p.overflow_wait is None


def test_no_route_at_all_is_invalid_input_on_intent() -> None:
    cfg = make_config(
        [Rule(name="loans", when=Conditions(intent=["loan"]), stages=to("loans"))],
        default_stages=[],
    )
    assert plan(cfg, intent="loan").rules == ["loans"]
    with pytest.raises(InvalidInput) as info:
        plan(cfg, intent="card")
    assert [p.field for p in info.value.problems] == ["intent"]


def test_unknown_channel_tier_and_skills_are_named() -> None:
    cfg = make_config([])
    with pytest.raises(InvalidInput) as info:
        plan(cfg, channel="fax")
    assert [p.field for p in info.value.problems] == ["channel"]
    assert "'fax'" in info.value.problems[0].message

    with pytest.raises(InvalidInput) as info:
        plan(cfg, tier="platinum")
    assert [p.field for p in info.value.problems] == ["customer.tier"]

    with pytest.raises(InvalidInput) as info:
        plan(
            cfg,
            channel="fax",
            tier="platinum",
            skills=[SkillRequirement(skill="cards"), SkillRequirement(skill="mortgages", min=3)],
        )
    assert [p.field for p in info.value.problems] == ["channel", "customer.tier", "skills[1].skill"]


# --- channel filtering --------------------------------------------------------------


def test_pools_not_serving_the_channel_are_dropped() -> None:
    stages = [
        Stage(pools=["voice_only", "cards"]),
        Stage(pools=["loans"], after=30),
        Stage(pools=["email_desk", "loans"], after=60),
    ]
    cfg = make_config([Rule(name="r", stages=stages)])
    assert pools_of(plan(cfg, channel="chat")) == [
        (0.0, ["cards"]),
        (30.0, ["loans"]),
        (60.0, ["loans"]),
    ]
    assert pools_of(plan(cfg, channel="email")) == [(0.0, ["cards"]), (60.0, ["email_desk"])]


def test_route_untouched_by_filtering_is_shared_not_copied() -> None:
    stages = [Stage(pools=["cards", "loans"]), Stage(pools=["voice_only"], after=20)]
    cfg = make_config([Rule(name="r", stages=stages)])
    assert plan(cfg, channel="voice").stages is cfg.rules[0].stages


def test_dropping_the_first_stage_starts_the_next_at_once() -> None:
    cfg = make_config(
        [Rule(name="r", stages=[Stage(pools=["voice_only"]), Stage(pools=["cards"], after=45)])]
    )
    assert pools_of(plan(cfg, channel="email")) == [(0.0, ["cards"])]
    assert pools_of(plan(cfg, channel="voice")) == [(0.0, ["voice_only"]), (45.0, ["cards"])]


def test_no_pool_serving_the_channel_is_invalid_input_on_channel() -> None:
    cfg = make_config([Rule(name="r", when=Conditions(intent=["x"]), stages=to("voice_only"))])
    with pytest.raises(InvalidInput) as info:
        plan(cfg, channel="email", intent="x")
    assert [p.field for p in info.value.problems] == ["channel"]


# --- the demo workspace ---------------------------------------------------------------


def test_demo_vip_complaint_goes_to_senior_handlers_first() -> None:
    p = plan(DEMO, channel="voice", tier="vip", intent="complaint")
    assert p.rules == ["complaint_vip"]
    assert pools_of(p) == [(0.0, ["complaints_senior"]), (30.0, ["complaints"])]
    assert p.priority_offset == 120 + 120
    assert p.sla == "complaint_vip"
    assert p.overflow_wait == 60


def test_demo_vulnerable_email_falls_through_to_cards() -> None:
    voice = plan(DEMO, channel="voice", intent="card", flags=["vulnerable"])
    assert pools_of(voice) == [(0.0, ["vulnerable"]), (60.0, ["cards"])]
    email = plan(DEMO, channel="email", intent="card", flags=["vulnerable"])
    assert pools_of(email) == [(0.0, ["cards"])]
    assert email.rules == ["vulnerable"]


def test_demo_merge_rules_stack() -> None:
    p = plan(DEMO, tier="private", intent="wealth", attributes={"fraud_risk": "high"})
    assert p.rules == ["fraud_alert", "vip_service", "wealth_private"]
    assert p.priority_offset == 300 + 180
    assert p.sla == "vip"
    assert pools_of(p) == [(0.0, ["wealth"]), (60.0, ["loans"])]


def test_demo_unmatched_contact_takes_the_default_route() -> None:
    p = plan(DEMO, channel="chat", intent="travel")
    assert p.rules == []
    assert pools_of(p) == [(0.0, ["cards"])]
    assert p.sla == "standard"


# --- properties ---------------------------------------------------------------------

_RULES = {r.name: r for r in DEMO.rules}


@settings(max_examples=300, deadline=None)
@given(
    channel=st.sampled_from([*DEMO.channels, "fax"]),
    tier=st.sampled_from([None, *DEMO.tiers, "platinum"]),
    intent=st.sampled_from([None, "card", "loan", "wealth", "complaint", "travel"]),
    language=st.sampled_from([None, "en", "es"]),
    flags=st.lists(st.sampled_from(["vulnerable", "elderly", "deceased"]), max_size=3),
    fraud=st.sampled_from([None, "high", "low", True, 1]),
)
def test_demo_routing_properties(
    channel: str,
    tier: str | None,
    intent: str | None,
    language: str | None,
    flags: list[str],
    fraud: object,
) -> None:
    attributes = {} if fraud is None else {"fraud_risk": fraud}
    try:
        p = plan(
            DEMO,
            channel=channel,
            tier=tier,
            intent=intent,
            language=language,
            flags=flags,
            attributes=attributes,
        )
    except InvalidInput as exc:
        fields = {f.field for f in exc.problems}
        assert fields <= {"channel", "customer.tier"}
        assert (channel not in DEMO.channels) == ("channel" in fields)
        return
    assert channel in DEMO.channels
    contributing = [_RULES[name] for name in p.rules]
    assert p.tier == (tier or DEMO.defaults.tier)
    assert p.tier_offset == DEMO.tiers[p.tier].priority_offset
    assert p.rule_offset == sum(r.priority_offset for r in contributing)
    assert p.priority_offset == p.tier_offset + p.rule_offset
    # Only the last contributing rule may end evaluation.
    assert all(r.merge for r in contributing[:-1])
    assert p.rules == [r.name for r in DEMO.rules if r.name in p.rules]  # config order
    assert p.stages and p.stages[0].after == 0
    assert [s.after for s in p.stages] == sorted(s.after for s in p.stages)
    assert all(channel in DEMO.pools[name].channels for s in p.stages for name in s.pools)
    assert p.sla in DEMO.sla_policies
