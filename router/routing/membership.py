"""Pool membership: which pools an agent belongs to, derived from its skills.

Membership is never configured per agent (SPEC: "Pool membership is derived from
skills"), so a skill change or a config reload only has to re-run this. Pure code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from router.routing.config import RoutingConfig, SkillRequirement

__all__ = ["agent_pools", "eligible", "skill_score"]


def eligible(skills: Mapping[str, int], required: Sequence[SkillRequirement]) -> bool:
    """Whether an agent with `skills` (skill -> proficiency) meets every requirement."""
    # A missing skill counts as proficiency 0, below any minimum (>= 1).
    return all(skills.get(req.skill, 0) >= req.min for req in required)


def skill_score(skills: Mapping[str, int], required: Sequence[SkillRequirement]) -> int:
    """0..100: ten times the mean proficiency over the required skills.

    Ranks agents for the `most_skilled` strategy. A pool that requires nothing
    scores an agent by its best skill, so generalists still rank by expertise.
    """
    if not required:
        return 10 * max(skills.values(), default=0)
    total = sum(skills.get(req.skill, 0) for req in required)
    # Half-up integer rounding of 10 * total / n: exact, and unlike round()'s
    # half-to-even it never ranks a 12.5 below a 12.5 computed elsewhere as 13.
    n = len(required)
    return (20 * total + n) // (2 * n)


def agent_pools(cfg: RoutingConfig, skills: Mapping[str, int]) -> dict[str, int]:
    """Pool name -> skill score, for every pool whose requirements the agent meets."""
    return {
        name: skill_score(skills, pool.skills)
        for name, pool in cfg.pools.items()
        if eligible(skills, pool.skills)
    }
