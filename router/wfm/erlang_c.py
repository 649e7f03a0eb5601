"""Erlang B and Erlang C (M/M/n). Pure code.

Erlang C (M/M/n): Poisson arrivals at `rate`, exponential handle times with
mean `aht`, `n` agents, callers never hang up. Offered load A = rate * aht
(erlangs). Erlang B comes from the recursion B(0) = 1,
B(k) = A B(k-1) / (k + A B(k-1)) (no factorials, stable for any n), then
C = n B / (n - A (1 - B)) = P(W > 0), SL(t) = P(W <= t) = 1 - C exp(-(n - A) t / aht),
ASA = C aht / (n - A), occupancy = A / n. With n <= A the queue grows without
bound: P(W > 0) = 1, SL = 0, ASA = inf, occupancy 1 (`stable=False`).
"""

from __future__ import annotations

import math

from router.wfm.queueing import (
    QueueMetrics,
    check_agents,
    check_non_negative,
    clamp,
    offered_load,
)


def erlang_b(agents: int, load: float) -> float:
    """Blocking probability of M/M/n/n, by the recursion on n (stable, O(n))."""
    check_agents("agents", agents, minimum=0)
    check_non_negative("load", load)
    b = 1.0
    for k in range(1, agents + 1):
        b = load * b / (k + load * b)
    return b


def erlang_c(agents: int, load: float) -> float:
    """P(W > 0) in M/M/n; 1.0 when agents <= load (unstable)."""
    check_agents("agents", agents)
    b = erlang_b(agents, load)
    if agents <= load:
        return 1.0
    return agents * b / (agents - load * (1.0 - b))


def erlang_c_metrics(rate: float, aht: float, agents: int, answer_time: float) -> QueueMetrics:
    """Erlang C performance with `agents` on the phones; see the module notes."""
    load = offered_load(rate, aht)
    check_agents("agents", agents)
    check_non_negative("answer_time", answer_time)
    if agents <= load:
        return QueueMetrics(
            model="erlang_c",
            agents=agents,
            offered_load=load,
            answer_time=answer_time,
            service_level=0.0,
            wait_probability=1.0,
            asa=math.inf,
            abandon_probability=0.0,
            occupancy=1.0,
            stable=False,
        )
    c = erlang_c(agents, load)
    spare = agents - load
    return QueueMetrics(
        model="erlang_c",
        agents=agents,
        offered_load=load,
        answer_time=answer_time,
        service_level=clamp(1.0 - c * math.exp(-spare * answer_time / aht)),
        wait_probability=c,
        asa=c * aht / spare,
        abandon_probability=0.0,
        occupancy=load / agents,
        stable=True,
    )
