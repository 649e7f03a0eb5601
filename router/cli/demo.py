"""The demo workspace: a bank's credit-card contact center, seeded by `router seed`.

It doubles as a worked example of every routing feature (tier offsets, first
match and merge rules, bullseye stages, overflow, channel filtering, all three
agent-selection strategies) and as the fixture the tests and load tests use,
so it must stay valid (`validate_config`) and deterministic.
"""

from __future__ import annotations

import random

from router.routing.config import (
    Channel,
    Conditions,
    Defaults,
    Pool,
    RoutingConfig,
    Rule,
    ServiceLevel,
    SkillRequirement,
    Stage,
    Tier,
)
from router.routing.model import AgentIn
from router.routing.surveys import Surveys
from sla.calendar import Calendar, Weekday
from sla.policy import (
    Boost,
    Clock,
    CreateFollowup,
    Expand,
    LowRating,
    Notify,
    Reassign,
    SlaPolicy,
    Step,
)

__all__ = ["DEMO_WORKSPACE", "demo_agents", "demo_config"]

DEMO_WORKSPACE = "demo"


def _req(*skills: tuple[str, int]) -> list[SkillRequirement]:
    return [SkillRequirement(skill=s, min=m) for s, m in skills]


def _stages(*stages: tuple[float, list[str]]) -> list[Stage]:
    return [Stage(pools=pools, after=after) for after, pools in stages]


def demo_config() -> RoutingConfig:
    """The credit-card center's routing config."""
    return RoutingConfig(
        description="Demo bank: credit-card contact center",
        tiers={
            "private": Tier(priority_offset=300.0),
            "vip": Tier(priority_offset=120.0),
            "gold": Tier(priority_offset=60.0),
            "standard": Tier(priority_offset=0.0),
        },
        channels={
            "voice": Channel(weight=100, offer_timeout=20.0, wrap_up=30.0),
            "chat": Channel(weight=25, offer_timeout=30.0, wrap_up=10.0),
            "app": Channel(weight=25, offer_timeout=30.0, wrap_up=10.0),
            # Email is worked from a backlog: a day to pick it up, no wrap-up.
            "email": Channel(
                weight=10, offer_timeout=120.0, wrap_up=0.0, auto_accept=False, max_wait=86_400.0
            ),
        },
        skills=["cards", "loans", "wealth", "complaints", "vulnerable", "english", "spanish"],
        pools=_pools(),
        rules=_rules(),
        sla_policies=_sla_policies(),
        calendars={
            # The back office that resolves complaints: weekdays with a lunch break.
            "back_office": Calendar(
                timezone="Asia/Shanghai",
                hours={d: ["09:00-12:00", "13:00-18:00"] for d in WEEKDAYS},
                holidays=["2026-01-01", "2026-10-01"],
            )
        },
        surveys=Surveys(kinds=("csat", "nps")),
        defaults=Defaults(
            tier="standard",
            stages=_stages((0, ["cards"])),
            sla="standard",
            continuity_prefer=20.0,
        ),
    )


WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")


def _sla_policies() -> dict[str, SlaPolicy]:
    callback = CreateFollowup(channel="voice", intent="callback", sla="callback_24h")
    # a dissatisfied CSAT (1, 2) or an NPS detractor (0..6) gets a call back
    low_rating = LowRating(
        csat_below=3, nps_below=7, actions=[callback, Notify(to=["team_supervisor"])]
    )
    return {
        "standard": SlaPolicy(answer=60.0, low_rating=low_rating),
        "vip": SlaPolicy(answer=20.0, low_rating=low_rating),
        "complaint": SlaPolicy(
            answer=120.0,
            # five business days to resolve, counted in the back office's hours
            resolve=Clock(target=5 * 9 * 3600.0, ladder=[Step(at=0.8)]),
            calendar="back_office",
        ),
        "complaint_vip": SlaPolicy(
            answer=Clock(
                target=30.0,
                ladder=[
                    Step(at=0.8, actions=[Notify(to=["team_supervisor"])]),
                    Step(at=1.0, actions=[Boost(seconds=60.0), Notify(to=["role:duty_manager"])]),
                    Step(after=60.0, actions=[Expand(pools=["cards"]), Reassign()]),
                ],
            ),
            low_rating=low_rating,
        ),
        "vulnerable": SlaPolicy(answer=30.0, low_rating=low_rating),
        "callback_24h": SlaPolicy(resolve=86_400.0),
    }


def _pools() -> dict[str, Pool]:
    every = ["voice", "chat", "app", "email"]
    return {
        "cards": Pool(
            skills=_req(("cards", 3)),
            channels=every,
            strategy="longest_idle",
            service_level=ServiceLevel(percent=80.0, seconds=20.0),
            max_queue=500,
            handle_time=240.0,
        ),
        "loans": Pool(
            skills=_req(("loans", 4)),
            channels=["voice", "chat", "email"],
            strategy="most_skilled",
            service_level=ServiceLevel(percent=80.0, seconds=30.0),
            max_queue=200,
            handle_time=420.0,
        ),
        # Private banking advisers: few, senior, English-speaking; no chat.
        "wealth": Pool(
            skills=_req(("wealth", 6), ("english", 7)),
            channels=["voice", "app", "email"],
            strategy="most_skilled",
            service_level=ServiceLevel(percent=90.0, seconds=15.0),
            max_queue=50,
            handle_time=600.0,
        ),
        # Spread complaints evenly: they are long and draining.
        "complaints": Pool(
            skills=_req(("complaints", 4)),
            channels=every,
            strategy="least_occupied",
            service_level=ServiceLevel(percent=80.0, seconds=60.0),
            max_queue=200,
            handle_time=480.0,
        ),
        "complaints_senior": Pool(
            skills=_req(("complaints", 8)),
            channels=every,
            strategy="most_skilled",
            service_level=ServiceLevel(percent=90.0, seconds=20.0),
            max_queue=50,
            handle_time=600.0,
        ),
        "cards_spanish": Pool(
            skills=_req(("cards", 3), ("spanish", 6)),
            channels=["voice", "chat", "app"],
            strategy="longest_idle",
            service_level=ServiceLevel(percent=80.0, seconds=30.0),
            max_queue=100,
            handle_time=300.0,
        ),
        # Vulnerable or elderly customers: trained staff on live channels
        # only, so their email falls through to the next stage (cards).
        "vulnerable": Pool(
            skills=_req(("vulnerable", 5)),
            channels=["voice", "chat", "app"],
            strategy="longest_idle",
            service_level=ServiceLevel(percent=90.0, seconds=20.0),
            max_queue=100,
            handle_time=600.0,
        ),
    }


def _rules() -> list[Rule]:
    # Order matters: first match wins unless a rule merges. Complaints come
    # first so a vip complaint keeps its own SLA rather than the vip one.
    return [
        # Merge: boost suspected fraud whatever else applies.
        Rule(
            name="fraud_alert",
            when=Conditions(attributes={"fraud_risk": ["high"]}),
            priority_offset=180.0,
            merge=True,
        ),
        Rule(
            name="complaint_vip",
            when=Conditions(intent=["complaint"], tier=["vip", "private"]),
            stages=_stages((0, ["complaints_senior"]), (30, ["complaints"])),
            priority_offset=120.0,
            overflow_wait=60.0,
            sla="complaint_vip",
        ),
        Rule(
            name="complaint",
            when=Conditions(intent=["complaint"]),
            stages=_stages((0, ["complaints"]), (120, ["complaints_senior"])),
            sla="complaint",
        ),
        # Merge: vip and private customers get the vip answer target and go on
        # to the intent rules below for their route.
        Rule(name="vip_service", when=Conditions(tier=["vip", "private"]), sla="vip", merge=True),
        Rule(
            name="vulnerable",
            when=Conditions(flags=["vulnerable"]),
            stages=_stages((0, ["vulnerable"]), (60, ["cards"])),
            priority_offset=60.0,
            sla="vulnerable",
        ),
        Rule(
            name="elderly",
            when=Conditions(flags=["elderly"]),
            stages=_stages((0, ["vulnerable"]), (60, ["cards"])),
            priority_offset=30.0,
            sla="vulnerable",
        ),
        # Wealth advisers are kept for private clients; others asking about
        # wealth go to loans and reach the advisers only after three minutes.
        Rule(
            name="wealth_private",
            when=Conditions(intent=["wealth"], tier=["private"]),
            stages=_stages((0, ["wealth"]), (60, ["loans"])),
        ),
        Rule(
            name="wealth",
            when=Conditions(intent=["wealth"]),
            stages=_stages((0, ["loans"]), (180, ["wealth"])),
        ),
        Rule(
            name="loan",
            when=Conditions(intent=["loan"]),
            stages=_stages((0, ["loans"]), (90, ["cards"])),
            overflow_wait=120.0,
        ),
        # Spanish speakers: cards agents who speak it, then any cards agent.
        Rule(
            name="card_spanish",
            when=Conditions(intent=["card"], language=["es"]),
            stages=_stages((0, ["cards_spanish"]), (60, ["cards"])),
        ),
        Rule(
            name="card",
            when=Conditions(intent=["card"]),
            stages=_stages((0, ["cards"]), (120, ["loans"])),
            overflow_wait=90.0,
        ),
    ]


# (team, supervisor, number of agents, skill -> (lowest, highest) proficiency)
_TEAMS: list[tuple[str, str, int, dict[str, tuple[int, int]]]] = [
    ("cards_a", "sup1", 12, {"cards": (4, 9), "english": (6, 10), "loans": (1, 4)}),
    ("cards_b", "sup2", 12, {"cards": (3, 8), "english": (5, 9), "spanish": (6, 10)}),
    ("lending", "sup3", 10, {"loans": (4, 10), "cards": (3, 7), "english": (6, 10)}),
    ("wealth", "sup4", 6, {"wealth": (6, 10), "loans": (5, 9), "english": (7, 10)}),
    ("complaints", "sup5", 10, {"complaints": (4, 10), "cards": (3, 7), "english": (6, 10)}),
    ("care", "sup6", 10, {"vulnerable": (5, 10), "cards": (3, 8), "complaints": (2, 7)}),
]


def demo_agents() -> list[tuple[str, AgentIn]]:
    """60 agents (a001..a060) in six teams; the same list on every call."""
    rng = random.Random(1999)  # fixed seed: reproducible demos and tests
    agents: list[tuple[str, AgentIn]] = []
    for team, supervisor, size, ranges in _TEAMS:
        for k in range(size):
            skills = {skill: rng.randint(lo, hi) for skill, (lo, hi) in ranges.items()}
            if team == "complaints" and k < 3:
                # Guarantee senior complaint handlers whatever the draw.
                skills["complaints"] = 8 + k
            agents.append(
                (
                    f"a{len(agents) + 1:03d}",
                    AgentIn(skills=skills, capacity=100, team=team, supervisor=supervisor),
                )
            )
    return agents
