"""Agents needed for a pool: the fewest agents meeting every target. Pure code.

The models are Erlang C (`router/wfm/erlang_c.py`) and Erlang A with
abandonment (`router/wfm/erlang_a.py`); inputs and results are
`router/wfm/queueing.py`.

Service level in Erlang A is **answered within t among all arrivals**:
P(answered and W <= t). Abandoned contacts count as failures whenever they
hang up, the conservative definition (it never exceeds P(W <= t) over all
arrivals, nor the answered-only ratio). For Erlang C it is plain P(W <= t).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import msgspec

from router.wfm.erlang_a import erlang_a_metrics
from router.wfm.erlang_c import erlang_c_metrics
from router.wfm.queueing import (
    SLACK,
    Model,
    QueueMetrics,
    ServiceTarget,
    check_agents,
    check_fraction,
    check_patience,
    check_positive,
    offered_load,
    scheduled_agents,
)

# Upper bound of the agents-needed search unless the caller gives another.
MAX_AGENTS = 10_000


class StaffingCapExceeded(ValueError):
    """No number of agents up to the cap meets the targets."""

    def __init__(self, max_agents: int, detail: str) -> None:
        super().__init__(f"max_agents: {detail}")
        self.max_agents = max_agents


class StaffingPlan(msgspec.Struct, frozen=True):
    """What a workforce manager reads: how many agents, and what they will achieve."""

    model: Model
    rate: float  # contacts per second
    aht: float  # seconds
    patience: float | None  # seconds, Erlang A only
    target: ServiceTarget
    offered_load: float  # erlangs
    agents: int  # on the phones at once
    scheduled: int  # rostered, after shrinkage
    shrinkage: float
    service_level: float
    asa: float
    abandon_probability: float
    occupancy: float
    wait_probability: float
    # The limits that n - 1 agents would break: "service_level", "occupancy",
    # "asa", "abandon", "stability" (Erlang C needs more agents than erlangs).
    limited_by: list[str]


def queue_metrics(
    rate: float, aht: float, agents: int, answer_time: float, patience: float | None = None
) -> QueueMetrics:
    """Erlang A when a finite `patience` is given, else Erlang C."""
    p = check_patience(patience)
    if p is None:
        return erlang_c_metrics(rate, aht, agents, answer_time)
    return erlang_a_metrics(rate, aht, p, agents, answer_time)


def _broken_limits(
    m: QueueMetrics,
    target: ServiceTarget,
    max_occupancy: float | None,
    max_asa: float | None,
    max_abandon: float | None,
) -> list[str]:
    broken = []
    if not m.stable:
        broken.append("stability")
    if m.service_level < target.percent / 100.0 - SLACK:
        broken.append("service_level")
    if max_occupancy is not None and m.occupancy > max_occupancy + SLACK:
        broken.append("occupancy")
    if max_asa is not None and m.asa > max_asa * (1.0 + SLACK):
        broken.append("asa")
    if max_abandon is not None and m.abandon_probability > max_abandon + SLACK:
        broken.append("abandon")
    return broken


def _first_meeting(low: int, cap: int, meets: Callable[[int], bool]) -> int | None:
    """Smallest n in [low, cap] with meets(n), for a predicate false then true in n.

    Doubling steps from `low`, then bisection: O(log n) evaluations.
    """
    if meets(low):
        return low
    bad, step = low, 1
    while True:
        cand = min(bad + step, cap)
        if cand <= bad:
            return None
        if meets(cand):
            good = cand
            break
        bad, step = cand, step * 2
    while good - bad > 1:
        mid = (bad + good) // 2
        if meets(mid):
            good = mid
        else:
            bad = mid
    return good


def agents_needed(
    rate: float,
    aht: float,
    target: ServiceTarget,
    *,
    patience: float | None = None,
    max_occupancy: float | None = None,
    max_asa: float | None = None,
    max_abandon: float | None = None,
    shrinkage: float = 0.0,
    max_agents: int = MAX_AGENTS,
) -> StaffingPlan:
    """Fewest agents on the phones meeting every limit given, then rostered with shrinkage.

    Erlang A when `patience` (seconds) is given and finite, else Erlang C. Limits:
    the service-level `target`; `max_occupancy` and `max_abandon` (fractions);
    `max_asa` (seconds). Every metric is monotone in the number of agents, so a
    doubling-then-bisection search from a lower bound finds the smallest n. The
    lower bound: Erlang C needs n > A; in Erlang A at most n / A of the contacts
    can be answered, so n >= A * target. At least one agent even with no
    contacts forecast. Raises StaffingCapExceeded beyond `max_agents`.
    """
    load = offered_load(rate, aht)
    p = check_patience(patience)
    if max_occupancy is not None:
        check_fraction("max_occupancy", max_occupancy, open_low=True, open_high=False)
    if max_asa is not None:
        check_positive("max_asa", max_asa)
    if max_abandon is not None:
        check_fraction("max_abandon", max_abandon, open_low=False, open_high=False)
    check_fraction("shrinkage", shrinkage, open_low=False, open_high=True)
    check_agents("max_agents", max_agents)

    def evaluate(n: int) -> QueueMetrics:
        return queue_metrics(rate, aht, n, target.seconds, p)

    def broken(n: int) -> list[str]:
        return _broken_limits(evaluate(n), target, max_occupancy, max_asa, max_abandon)

    if p is None:
        low = math.floor(load) + 1
    else:
        low = max(1, math.ceil(load * target.percent / 100.0 - 1e-9))
    if low > max_agents:
        raise StaffingCapExceeded(
            max_agents, f"{load:.2f} erlangs need more than {max_agents} agents"
        )
    n = _first_meeting(low, max_agents, lambda k: not broken(k))
    if n is None:
        raise StaffingCapExceeded(
            max_agents,
            f"{max_agents} agents do not meet the limits ({', '.join(broken(max_agents))}) "
            f"for {load:.2f} erlangs; raise max_agents or relax the targets",
        )
    m = evaluate(n)
    limited_by = broken(n - 1) if n > 1 else []
    return StaffingPlan(
        model=m.model,
        rate=rate,
        aht=aht,
        patience=p,
        target=target,
        offered_load=load,
        agents=n,
        scheduled=scheduled_agents(n, shrinkage),
        shrinkage=shrinkage,
        service_level=m.service_level,
        asa=m.asa,
        abandon_probability=m.abandon_probability,
        occupancy=m.occupancy,
        wait_probability=m.wait_probability,
        limited_by=limited_by,
    )
