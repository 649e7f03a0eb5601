"""Pool membership and skill scores, derived from an agent's skills."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from router.cli.demo import demo_agents, demo_config
from router.routing.config import Channel, Pool, RoutingConfig, SkillRequirement, Tier
from router.routing.membership import agent_pools, eligible, skill_score


def req(skill: str, minimum: int = 1) -> SkillRequirement:
    return SkillRequirement(skill=skill, min=minimum)


def test_eligible_at_the_minimum_but_not_below() -> None:
    required = [req("cards", 5), req("english", 3)]
    assert eligible({"cards": 5, "english": 3}, required)
    assert eligible({"cards": 10, "english": 9, "loans": 1}, required)
    assert not eligible({"cards": 4, "english": 9}, required)
    assert not eligible({"cards": 9, "english": 2}, required)
    assert not eligible({"cards": 9}, required)  # a missing skill is below any minimum
    assert eligible({}, [])


def test_skill_score_is_ten_times_the_mean_proficiency() -> None:
    assert skill_score({"cards": 5}, [req("cards")]) == 50
    assert skill_score({"cards": 7, "english": 8, "loans": 1}, [req("cards"), req("english")]) == 75
    assert skill_score({"a": 10, "b": 10, "c": 10}, [req("a"), req("b"), req("c")]) == 100
    # 10 * 7 / 3 = 23.33 -> 23; 10 * 8 / 3 = 26.67 -> 27
    three = [req("a"), req("b"), req("c")]
    assert skill_score({"a": 5, "b": 1, "c": 1}, three) == 23
    assert skill_score({"a": 6, "b": 1, "c": 1}, three) == 27


def test_skill_score_rounds_halves_up() -> None:
    four = [req("a"), req("b"), req("c"), req("d")]
    # 10 * 5 / 4 = 12.5 and 10 * 7 / 4 = 17.5: both up, never to even.
    assert skill_score({"a": 2, "b": 1, "c": 1, "d": 1}, four) == 13
    assert skill_score({"a": 4, "b": 1, "c": 1, "d": 1}, four) == 18


def test_pool_without_requirements_admits_everyone_by_best_skill() -> None:
    assert skill_score({"cards": 3, "loans": 8}, []) == 80
    assert skill_score({}, []) == 0


def config() -> RoutingConfig:
    return RoutingConfig(
        tiers={"standard": Tier()},
        channels={"voice": Channel()},
        skills=["cards", "loans", "english"],
        pools={
            "cards": Pool(skills=[req("cards", 3)], channels=["voice"]),
            "cards_en": Pool(skills=[req("cards", 3), req("english", 6)], channels=["voice"]),
            "loans": Pool(skills=[req("loans", 7)], channels=["voice"]),
            "overflow": Pool(skills=[], channels=["voice"]),
        },
    )


def test_agent_pools_lists_every_pool_met_with_its_score() -> None:
    cfg = config()
    assert agent_pools(cfg, {"cards": 4, "english": 9, "loans": 6}) == {
        "cards": 40,
        "cards_en": 65,
        "overflow": 90,
    }
    assert agent_pools(cfg, {"loans": 7}) == {"loans": 70, "overflow": 70}
    assert agent_pools(cfg, {}) == {"overflow": 0}


def test_every_demo_pool_has_members() -> None:
    cfg = demo_config()
    members = {name: 0 for name in cfg.pools}
    for _, agent in demo_agents():
        for pool in agent_pools(cfg, agent.skills):
            members[pool] += 1
    assert all(count > 0 for count in members.values()), members
    # Senior complaint handlers are a strict subset of complaint handlers.
    assert members["complaints_senior"] < members["complaints"]


def test_demo_agents_are_deterministic_and_well_formed() -> None:
    agents = demo_agents()
    assert agents == demo_agents()
    assert len(agents) >= 60
    ids = [aid for aid, _ in agents]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"a\d{3}", aid) for aid in ids)
    assert ids[0] == "a001"
    declared = set(demo_config().skills)
    for _, agent in agents:
        assert agent.capacity == 100
        assert agent.supervisor is not None and agent.supervisor.startswith("sup")
        assert agent.team
        assert set(agent.skills) <= declared
        assert all(1 <= p <= 10 for p in agent.skills.values())
    assert len({a.team for _, a in agents}) >= 4


skills_strategy = st.dictionaries(
    st.sampled_from(["cards", "loans", "english", "wealth"]), st.integers(1, 10)
)


@settings(max_examples=200)
@given(skills_strategy)
def test_membership_matches_eligibility_and_scores_are_bounded(skills: dict[str, int]) -> None:
    cfg = config()
    pools = agent_pools(cfg, skills)
    assert set(pools) == {n for n, p in cfg.pools.items() if eligible(skills, p.skills)}
    assert all(0 <= score <= 100 for score in pools.values())
    # An agent in a pool scores at least 10x the pool's lowest minimum.
    for name, score in pools.items():
        minimums = [r.min for r in cfg.pools[name].skills]
        assert score >= 10 * min(minimums, default=0)
