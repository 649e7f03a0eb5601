"""SLA schedules as pure code: ladders, business-time offsets, budget already used."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sla.business_time import compile_calendar
from sla.calendar import Calendar
from sla.policy import (
    Boost,
    Clock,
    CreateFollowup,
    Expand,
    Notify,
    Reassign,
    SlaPolicy,
    Step,
    actions_text,
    ladder,
    plan_text,
    schedule,
    select_policy,
)

SH = ZoneInfo("Asia/Shanghai")
OFFICE = compile_calendar(
    Calendar(
        timezone="Asia/Shanghai",
        hours={d: ["09:00-12:00", "13:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    )
)


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=SH).timestamp() * 1000)  # type: ignore[misc]


def test_ladder_always_has_the_breach_and_keeps_config_indexes() -> None:
    clock = Clock(target=100, ladder=[Step(after=60), Step(at=0.8)])
    assert [(s.at, s.after) for s in ladder(clock)] == [(None, 60), (0.8, None), (1.0, None)]
    steps = schedule(clock, None, 0)
    assert [(s.index, s.kind, s.delta_ms) for s in steps] == [
        (0, "escalation", 160_000),
        (1, "warning", 80_000),
        (2, "breach", 100_000),
    ]


def test_business_time_offsets_skip_the_weekend_and_lunch() -> None:
    friday_5pm = ms(2025, 1, 10, 17, 0)
    steps = schedule(Clock(target=7200, ladder=[Step(at=0.5)]), OFFICE, friday_5pm)
    # an hour of business time ends at 18:00 Friday; two hours at 10:00 Monday
    assert friday_5pm + steps[0].delta_ms == ms(2025, 1, 10, 18, 0)
    assert friday_5pm + steps[1].delta_ms == ms(2025, 1, 13, 10, 0)
    lunch = ms(2025, 1, 13, 11, 30)
    (breach,) = schedule(Clock(target=3600), OFFICE, lunch)
    assert lunch + breach.delta_ms == ms(2025, 1, 13, 13, 30)


def test_budget_already_used_moves_steps_forward_or_makes_them_due_now() -> None:
    clock = Clock(target=100, ladder=[Step(at=0.5)])
    steps = schedule(clock, None, 1_000, used_ms=70_000)
    assert [(s.kind, s.delta_ms) for s in steps] == [("warning", 0), ("breach", 30_000)]


def test_plan_text_and_actions_text_are_what_the_scripts_parse() -> None:
    policy = SlaPolicy(answer=20.0, resolve=Clock(target=60, ladder=[Step(at=0.5)]))
    text = plan_text(policy, None, 0, {"answer": "fa", "resolve": "fr"})
    assert text == "answer:20000:fa:0.20000|resolve:60000:fr:0.30000,1.60000"
    acts = [
        Notify(to=["team_supervisor", "role:duty"]),
        Boost(seconds=30),
        Boost(seconds=1.5),
        Expand(pools=["a", "b"]),
        Reassign(),
        CreateFollowup(channel="voice", sla="cb"),
    ]
    assert actions_text(acts) == "31500;a,b;1;team_supervisor,role:duty;voice//cb"


def test_rule_policy_wins_over_selectors() -> None:
    from sla.policy import Selector

    policies = {
        "vip": SlaPolicy(answer=20, when=Selector(tier=["vip"])),
        "mail": SlaPolicy(answer=3600, when=Selector(channel=["email"])),
    }
    assert select_policy(policies, None, tier="vip", channel="voice", intent=None) == "vip"
    assert select_policy(policies, None, tier="gold", channel="email", intent=None) == "mail"
    assert select_policy(policies, "x", tier="vip", channel="voice", intent=None) == "x"
    assert select_policy(policies, None, tier="gold", channel="chat", intent=None) is None
