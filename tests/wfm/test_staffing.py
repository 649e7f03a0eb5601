"""Staffing mathematics: published worked examples, an independent birth-death
solver, a seeded simulation, and properties. Pure code: no Redis, no HTTP."""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
from collections.abc import Callable

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.cli.staffing import add_cli, staffing_report
from router.wfm.erlang_a import erlang_a_metrics
from router.wfm.erlang_c import erlang_b, erlang_c, erlang_c_metrics
from router.wfm.queueing import QueueMetrics, ServiceTarget, parse_target, scheduled_agents
from router.wfm.staffing import StaffingCapExceeded, StaffingPlan, agents_needed, queue_metrics

T80_20 = ServiceTarget(percent=80, seconds=20)


# ------------------------------------------------------------------ published Erlang C values

# Call Centre Helper's worked example ("Erlang C Formula - Made Simple With an Easy
# Worked Example"): 100 calls in 30 minutes, AHT 180 s, 80% within 20 s, maximum
# occupancy 85%, shrinkage 30%. Its figures as printed by two independent
# implementations' documentation:
#  [PW] pyworkforce 0.1.0 README, https://pypi.org/project/pyworkforce/0.1.0/
#       ErlangC(transactions=100, asa=20/60, aht=3, interval=30, max_occupancy=0.85,
#       shrinkage=0.3).required_positions(service_level=0.8) ->
#       raw_positions 14, positions 20, service_level 0.8883500191794669,
#       occupancy 0.7142857142857143, waiting_probability 0.1741319335950498
#  [RC] CRAN package ErlangC 0.1.0 README (Damonsoul, 2024),
#       https://stat.ethz.ch/CRAN/web/packages/ErlangC/readme/README.html
#       erlang_c(100, 30 min, 180 s, 20 s, 14 agents) -> traffic_intensity 10,
#       wait_probability 0.1741319, service_level 0.88835,
#       average_speed_of_answer 7.83593701177724 s, occupancy 0.7142857;
#       calculate_agents(...) -> agents 14; first row of its search ($process, 11
#       agents): wait_probability 0.6821182, service_level 0.3896138.
CCH_RATE = 100 / 1800  # contacts per second
CCH_AHT = 180.0


def test_call_centre_helper_14_agents() -> None:
    m = erlang_c_metrics(CCH_RATE, CCH_AHT, 14, 20)
    assert m.offered_load == pytest.approx(10)  # [RC] traffic_intensity 10
    assert m.wait_probability == pytest.approx(0.1741319335950498, rel=1e-12)  # [PW]
    assert m.service_level == pytest.approx(0.8883500191794669, rel=1e-12)  # [PW]
    assert m.asa == pytest.approx(7.83593701177724, rel=1e-12)  # [RC] seconds
    assert m.occupancy == pytest.approx(0.7142857142857143, rel=1e-12)  # [PW]
    assert m.stable and m.abandon_probability == 0


def test_call_centre_helper_11_agents() -> None:
    m = erlang_c_metrics(CCH_RATE, CCH_AHT, 11, 20)
    assert m.wait_probability == pytest.approx(0.6821182, abs=5e-8)  # [RC] $process row 1
    assert m.service_level == pytest.approx(0.3896138, abs=5e-8)  # [RC] $process row 1


def test_call_centre_helper_agents_needed() -> None:
    plan = agents_needed(CCH_RATE, CCH_AHT, T80_20, max_occupancy=0.85, shrinkage=0.3)
    assert plan.model == "erlang_c"
    assert plan.agents == 14  # [PW] raw_positions, [RC] agents
    # [PW] positions: 14 / (1 - 0.3) = 20 (not 21 from the float 20.000000000000004).
    assert plan.scheduled == 20
    assert plan.service_level == pytest.approx(0.8883500191794669, rel=1e-12)  # [PW]
    assert plan.occupancy == pytest.approx(0.7142857142857143, rel=1e-12)  # [PW]
    assert plan.wait_probability == pytest.approx(0.1741319335950498, rel=1e-12)  # [PW]
    assert plan.limited_by == ["service_level"]


def test_jones_the_net_average_hour() -> None:
    # Jones the Net, "Erlang uplift", http://www.jonesthenet.com/budgeting/service-levels-erlang/erlang-uplift/
    # 250 calls in the average hour, AHT 330 s, 80% answered in 30 s: "Erlang ...
    # thinks we need 28 advisors" (22.9 erlangs by the accountant's sum).
    plan = agents_needed(250 / 3600, 330, ServiceTarget(percent=80, seconds=30))
    assert plan.offered_load == pytest.approx(22.9, abs=0.05)
    assert plan.agents == 28
    assert erlang_c_metrics(250 / 3600, 330, 27, 30).service_level < 0.8


def test_erlang_c_exact_small_case() -> None:
    # By hand: A = 2, n = 3. B(3, 2) = (8/6) / (1 + 2 + 2 + 8/6) = 4/19;
    # C = 3B / (3 - 2(1 - B)) = (12/19) / (27/19) = 4/9.
    assert erlang_b(3, 2.0) == pytest.approx(4 / 19, rel=1e-14)
    assert erlang_c(3, 2.0) == pytest.approx(4 / 9, rel=1e-14)


# ------------------------------------------------------------------ Erlang B / C recursions


def _logsumexp(xs: list[float]) -> float:
    top = max(xs)
    return top + math.log(math.fsum(math.exp(v - top) for v in xs))


def _direct_erlang_b(n: int, a: float) -> float:
    """A^n/n! / sum_k A^k/k!, each term in log space."""
    logs = [k * math.log(a) - math.lgamma(k + 1) for k in range(n + 1)]
    return math.exp(logs[-1] - _logsumexp(logs))


def _direct_erlang_c(n: int, a: float) -> float:
    """[A^n/n! n/(n-A)] / [sum_{k<n} A^k/k! + A^n/n! n/(n-A)], in log space."""
    top = n * math.log(a) - math.lgamma(n + 1) + math.log(n / (n - a))
    logs = [k * math.log(a) - math.lgamma(k + 1) for k in range(n)] + [top]
    return math.exp(top - _logsumexp(logs))


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 200), a=st.floats(0.01, 250))
def test_erlang_b_recursion_matches_direct_formula(n: int, a: float) -> None:
    assert erlang_b(n, a) == pytest.approx(_direct_erlang_b(n, a), rel=1e-10, abs=1e-300)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 200), spare=st.floats(0.001, 0.999))
def test_erlang_c_matches_direct_formula(n: int, spare: float) -> None:
    a = n * (1 - spare)
    assert erlang_c(n, a) == pytest.approx(_direct_erlang_c(n, a), rel=1e-10, abs=1e-300)


def test_erlang_b_large_pool_has_no_overflow() -> None:
    # 9,500 erlangs on 10,000 agents: A^n/n! alone overflows a float.
    assert 0 < erlang_b(10_000, 9_500.0) < 1e-5
    assert 0 < erlang_c(10_000, 9_500.0) < 1e-4


def test_unstable_erlang_c() -> None:
    for n in (5, 10):  # A = 10: 10 agents are exactly saturated
        m = erlang_c_metrics(CCH_RATE, CCH_AHT, n, 20)
        assert not m.stable
        assert m.service_level == 0 and m.wait_probability == 1
        assert math.isinf(m.asa) and m.occupancy == 1
    assert erlang_c(10, 10.0) == 1.0


# ------------------------------------------------------------------ Erlang A: independent solver

# No published Erlang A table was reachable to cite, so Erlang A is checked
# against (a) Erlang C as patience grows, (b) the birth-death chain solved state
# by state here with none of the module's closed forms, and (c) a simulation.


def _chain_metrics(rate: float, aht: float, patience: float, n: int, t: float) -> dict[str, float]:
    """M/M/n+M from the chain: p_k by balance, P(Ab) = theta E[Q] / rate (flow
    balance of abandonments), ASA and SL from the pure-death chain a waiting
    caller sees (uniformization for the SL), truncated where p_k < 1e-20."""
    mu, th = 1 / aht, 1 / patience
    p, total, k = [1.0], 1.0, 0
    while k <= n or p[-1] > 1e-20 * total:
        k += 1
        p.append(p[-1] * rate / (min(k, n) * mu + max(0, k - n) * th))
        total += p[-1]
    p = [v / total for v in p]
    top = len(p) - 1
    wait = math.fsum(p[n:])
    queue = math.fsum((k - n) * p[k] for k in range(n + 1, top + 1))
    abandon = th * queue / rate
    occupancy = math.fsum(min(k, n) * p[k] for k in range(top + 1)) / n
    jobs = top - n + 1  # a caller finding n + j in the system has j ahead, j < jobs
    # From "i ahead": leave at r = n mu + (i+1) theta; move up w.p. (n mu + i theta)/r.
    served_after, timed = [], []  # P(answered | i), E[W; answered | i]
    prev_p, prev_e = 1.0, 0.0
    for i in range(jobs):
        r = n * mu + (i + 1) * th
        up = (n * mu + i * th) / r
        prev_e = up * (prev_p / r + prev_e)
        prev_p = up * prev_p
        served_after.append(prev_p)
        timed.append(prev_e)
    asa = math.fsum(p[n + j] * timed[j] for j in range(jobs)) / (1 - abandon)
    # Uniformization: u_s[i] = P(answered within s jumps | i ahead).
    lam = n * mu + jobs * th
    lt = lam * t
    steps = int(lt + 12 * math.sqrt(lt) + 40) if lt > 0 else 0
    u = [0.0] * jobs
    within = [0.0] * jobs
    for s in range(1, steps + 1):
        nxt = []
        for i in range(jobs):
            up = n * mu + i * th
            ahead = u[i - 1] if i else 1.0
            nxt.append(up / lam * ahead + (1 - (up + th) / lam) * u[i])
        u = nxt
        weight = math.exp(-lt + s * math.log(lt) - math.lgamma(s + 1))  # Poisson(lt) at s
        within = [w + weight * v for w, v in zip(within, u, strict=True)]
    answered_in_t = (1 - wait) + math.fsum(p[n + j] * within[j] for j in range(jobs))
    return {
        "wait": wait,
        "abandon": abandon,
        "occupancy": occupancy,
        "asa": asa,
        "sl": answered_in_t,
        "answered": math.fsum(p[n + j] * served_after[j] for j in range(jobs)) + (1 - wait),
    }


CHAIN_CASES = [
    # rate /s, AHT s, patience s, agents, answer time s
    (100 / 1800, 180, 60, 10, 20),  # A = 10 on 10 agents
    (100 / 1800, 180, 60, 12, 20),
    (100 / 1800, 180, 300, 8, 20),  # overloaded: only abandonment keeps it stable
    (100 / 1800, 180, 10, 3, 30),  # very impatient, badly understaffed
    (0.05, 180, 60, 9, 0),  # t = 0: SL = P(no wait)
    (0.05, 180, 60, 9, 300),
    (1 / 30, 400, 200, 16, 15),
    (0.5, 20, 30, 11, 10),  # fast contacts (chat-like)
    (0.002, 300, 120, 1, 20),  # single agent, light load
]


@pytest.mark.parametrize(("rate", "aht", "patience", "n", "t"), CHAIN_CASES)
def test_erlang_a_matches_birth_death_chain(
    rate: float, aht: float, patience: float, n: int, t: float
) -> None:
    m = erlang_a_metrics(rate, aht, patience, n, t)
    ref = _chain_metrics(rate, aht, patience, n, t)
    assert m.model == "erlang_a" and m.stable
    assert m.wait_probability == pytest.approx(ref["wait"], rel=1e-9)
    assert m.abandon_probability == pytest.approx(ref["abandon"], rel=1e-9)
    assert 1 - m.abandon_probability == pytest.approx(ref["answered"], rel=1e-9)
    assert m.occupancy == pytest.approx(ref["occupancy"], rel=1e-9)
    assert m.asa == pytest.approx(ref["asa"], rel=1e-9)
    assert m.service_level == pytest.approx(ref["sl"], rel=1e-8)


@settings(max_examples=40, deadline=None)
@given(
    load=st.floats(0.05, 25),
    aht=st.floats(10, 600),
    patience_ratio=st.floats(0.05, 3),
    n=st.integers(1, 30),
    t=st.floats(0, 120),
)
def test_erlang_a_matches_chain_property(
    load: float, aht: float, patience_ratio: float, n: int, t: float
) -> None:
    rate = load / aht
    patience = patience_ratio * aht
    m = erlang_a_metrics(rate, aht, patience, n, t)
    ref = _chain_metrics(rate, aht, patience, n, t)
    assert m.wait_probability == pytest.approx(ref["wait"], rel=1e-8, abs=1e-12)
    assert m.abandon_probability == pytest.approx(ref["abandon"], rel=1e-8, abs=1e-12)
    assert m.asa == pytest.approx(ref["asa"], rel=1e-8, abs=1e-9)
    assert m.service_level == pytest.approx(ref["sl"], rel=1e-7, abs=1e-10)


@pytest.mark.parametrize(("n", "t"), [(11, 20), (14, 20), (14, 0), (20, 60), (12, 5)])
def test_erlang_a_tends_to_erlang_c_as_patience_grows(n: int, t: float) -> None:
    # Erlang A = Erlang C + O(1/patience): (A - C) * patience must settle on a
    # constant as patience grows (it does to 7 digits here), and A - C -> 0.
    c = erlang_c_metrics(CCH_RATE, CCH_AHT, n, t)

    def scaled_gaps(patience: float) -> list[float]:
        a = erlang_a_metrics(CCH_RATE, CCH_AHT, patience, n, t)
        return [
            (a.service_level - c.service_level) * patience,
            (a.wait_probability - c.wait_probability) * patience,
            (a.asa - c.asa) / c.asa * patience,
            (a.occupancy - c.occupancy) * patience,
            a.abandon_probability * patience,
        ]

    at_1e8, at_1e9 = scaled_gaps(1e8), scaled_gaps(1e9)
    assert at_1e9 == pytest.approx(at_1e8, rel=1e-3, abs=1e-3)
    assert max(abs(g) for g in at_1e9) < 1e4  # so every gap at 1e9 s is below 1e-5
    # P(Ab) = E[W] / patience (Little's law on the queue), E[W] -> Erlang C's ASA.
    assert at_1e9[4] == pytest.approx(c.asa, rel=1e-5)


def _simulate(
    rate: float, aht: float, patience: float, n: int, t: float, customers: int, seed: int
) -> dict[str, list[float]]:
    """FCFS M/M/n+M, customer by customer: a caller takes the agent that frees
    first unless his patience runs out before; callers who hang up take no
    agent (the Kiefer-Wolfowitz recursion with reneging). Per-batch estimates
    over 20 batches after a 5% warm-up."""
    rng = random.Random(seed)
    free = [0.0] * n  # heap of the times agents next become free
    clock = 0.0
    rows: list[tuple[bool, bool, bool, float]] = []  # in t, hung up, waited, wait
    for _ in range(customers):
        clock += rng.expovariate(rate)
        start = max(clock, free[0])
        wait = start - clock
        if wait > rng.expovariate(1 / patience):
            rows.append((False, True, True, 0.0))
            continue
        heapq.heapreplace(free, start + rng.expovariate(1 / aht))
        rows.append((wait <= t, False, wait > 0, wait))
    rows = rows[customers // 20 :]
    size = len(rows) // 20
    out: dict[str, list[float]] = {"sl": [], "abandon": [], "wait": [], "asa": []}
    for b in range(20):
        batch = rows[b * size : (b + 1) * size]
        answered = [r for r in batch if not r[1]]
        out["sl"].append(sum(r[0] for r in batch) / size)
        out["abandon"].append(sum(r[1] for r in batch) / size)
        out["wait"].append(sum(r[2] for r in batch) / size)
        out["asa"].append(sum(r[3] for r in answered) / len(answered))
    return out


def test_erlang_a_matches_simulation() -> None:
    # 9 erlangs on 9 agents, patience 60 s: P(Ab) about 12%. Batch means of 20
    # batches of ~9,500 callers are close to independent and normal; each
    # estimate must fall within 4.5 standard errors of the exact value (two-sided
    # p = 3e-4 for Student's t with 19 degrees of freedom). The seed is fixed, so
    # the run is reproducible; the bound is what makes it meaningful.
    rate, aht, patience, n, t = 0.05, 180.0, 60.0, 9, 20.0
    exact = erlang_a_metrics(rate, aht, patience, n, t)
    sim = _simulate(rate, aht, patience, n, t, customers=200_000, seed=20240611)
    for key, value in (
        ("sl", exact.service_level),
        ("abandon", exact.abandon_probability),
        ("wait", exact.wait_probability),
        ("asa", exact.asa),
    ):
        mean = statistics.fmean(sim[key])
        se = statistics.stdev(sim[key]) / math.sqrt(len(sim[key]))
        assert abs(mean - value) < 4.5 * se, (key, mean, value, se)


@settings(max_examples=150, deadline=None)
@given(
    load=st.floats(0.01, 3000),
    aht=st.floats(5, 1800),
    patience_ratio=st.floats(0.01, 100),
    spread=st.floats(0.05, 2.0),
    t=st.floats(0, 600),
)
def test_erlang_a_outputs_are_consistent(
    load: float, aht: float, patience_ratio: float, spread: float, t: float
) -> None:
    n = max(1, round(load * spread))
    rate, patience = load / aht, patience_ratio * aht
    m = erlang_a_metrics(rate, aht, patience, n, t)
    for p in (m.service_level, m.wait_probability, m.abandon_probability, m.occupancy):
        assert 0 <= p <= 1
    assert math.isfinite(m.asa) and m.asa >= 0
    # Answered within t needs to be answered; the hang-ups all waited first.
    assert m.service_level <= 1 - m.abandon_probability + 1e-12
    assert m.abandon_probability <= m.wait_probability + 1e-12
    # Throughput: answered contacts need (1 - P(Ab)) * A busy agents of the n.
    assert load * (1 - m.abandon_probability) <= n * (1 + 1e-9)
    # At t = 0 the service level is the chance of no wait at all.
    at_zero = erlang_a_metrics(rate, aht, patience, n, 0)
    assert at_zero.service_level == pytest.approx(1 - m.wait_probability, abs=1e-9)


def test_erlang_a_service_level_limits_in_t() -> None:
    m = erlang_a_metrics(0.05, 180, 60, 9, 1e6)  # everyone answered is answered by then
    assert m.service_level == pytest.approx(1 - m.abandon_probability, abs=1e-12)


def test_erlang_a_heavy_overload_fluid_limit() -> None:
    # 1,800 erlangs on 100 agents: agents are always busy, so the answered
    # fraction is n / A and everyone else hangs up.
    m = erlang_a_metrics(10, 180, 600, 100, 20)
    assert m.abandon_probability == pytest.approx(1 - 100 / 1800, rel=1e-9)
    assert m.occupancy == pytest.approx(1, abs=1e-9)
    # The queue holds about (rate - n mu) patience callers; the last one in
    # reaches an agent after patience * ln((Q + n mu / theta) / (n mu / theta)).
    assert m.asa == pytest.approx(600 * math.log(1800 / 100), rel=1e-3)


# ------------------------------------------------------------------ monotonicity in n


@settings(max_examples=100, deadline=None)
@given(
    load=st.floats(0.1, 300),
    aht=st.floats(10, 900),
    patience=st.one_of(st.none(), st.floats(5, 3600)),
    t=st.floats(0, 120),
    extra=st.integers(0, 40),
)
def test_service_level_increases_with_agents(
    load: float, aht: float, patience: float | None, t: float, extra: int
) -> None:
    rate = load / aht
    n = max(1, math.floor(load) - 3 + extra)
    lo = queue_metrics(rate, aht, n, t, patience)
    hi = queue_metrics(rate, aht, n + 1, t, patience)
    assert hi.service_level >= lo.service_level - 1e-12
    assert hi.asa <= lo.asa * (1 + 1e-9)
    assert hi.abandon_probability <= lo.abandon_probability + 1e-12
    assert hi.occupancy <= lo.occupancy + 1e-12
    if lo.stable and 0 < lo.wait_probability < 1 and lo.service_level < 1 - 1e-9:
        assert hi.service_level > lo.service_level


# ------------------------------------------------------------------ agents needed


def _meets(m: QueueMetrics, target: ServiceTarget, max_occupancy: float | None) -> bool:
    return (
        m.stable
        and m.service_level >= target.percent / 100 - 1e-12
        and (max_occupancy is None or m.occupancy <= max_occupancy + 1e-12)
    )


targets = st.builds(ServiceTarget, percent=st.floats(1, 99), seconds=st.floats(0, 120))


@settings(max_examples=150, deadline=None)
@given(
    load=st.floats(0.05, 400),
    aht=st.floats(10, 900),
    target=targets,
    patience=st.one_of(st.none(), st.floats(5, 1800)),
    max_occupancy=st.one_of(st.none(), st.floats(0.5, 1)),
)
def test_agents_needed_is_minimal(
    load: float,
    aht: float,
    target: ServiceTarget,
    patience: float | None,
    max_occupancy: float | None,
) -> None:
    rate = load / aht
    plan = agents_needed(rate, aht, target, patience=patience, max_occupancy=max_occupancy)
    assert plan.model == ("erlang_c" if patience is None else "erlang_a")
    at_n = queue_metrics(rate, aht, plan.agents, target.seconds, patience)
    assert _meets(at_n, target, max_occupancy)
    assert plan.service_level == at_n.service_level
    if plan.agents > 1:
        below = queue_metrics(rate, aht, plan.agents - 1, target.seconds, patience)
        assert not _meets(below, target, max_occupancy)  # n - 1 fails a limit
        assert plan.limited_by


@settings(max_examples=60, deadline=None)
@given(
    load=st.floats(0.05, 30),
    aht=st.floats(10, 900),
    target=targets,
    patience=st.one_of(st.none(), st.floats(5, 1800)),
)
def test_agents_needed_equals_linear_scan(
    load: float, aht: float, target: ServiceTarget, patience: float | None
) -> None:
    rate = load / aht
    n = 1
    while not _meets(queue_metrics(rate, aht, n, target.seconds, patience), target, None):
        n += 1
    assert agents_needed(rate, aht, target, patience=patience).agents == n


def test_abandonment_and_the_service_level_definition() -> None:
    # Usually callers who hang up shorten the queue, so Erlang A needs fewer agents...
    c = agents_needed(CCH_RATE, CCH_AHT, T80_20)
    a = agents_needed(CCH_RATE, CCH_AHT, T80_20, patience=180)
    assert a.agents < c.agents
    # ...but SL counts a hang-up as a miss, so with an answer time near the mean
    # patience the abandonments alone can break the target: Erlang C's one agent
    # answers 79.7% within 18 s; with a 10 s mean patience 21% hang up, and the
    # same agent answers only 78.0% within 18 s.
    target = ServiceTarget(percent=79, seconds=18)
    assert agents_needed(0.05, 10, target).agents == 1
    assert agents_needed(0.05, 10, target, patience=10).agents == 2
    one = erlang_a_metrics(0.05, 10, 10, 1, 18)
    assert one.service_level == pytest.approx(0.780, abs=5e-4)
    assert one.abandon_probability == pytest.approx(0.213, abs=5e-4)


def test_erlang_a_plan_with_abandon_and_asa_limits() -> None:
    free = agents_needed(CCH_RATE, CCH_AHT, T80_20, patience=60)
    assert free.model == "erlang_a" and free.patience == 60
    assert free.service_level >= 0.8 and free.limited_by == ["service_level"]
    capped = agents_needed(CCH_RATE, CCH_AHT, T80_20, patience=60, max_abandon=0.005)
    assert (
        capped.abandon_probability
        <= 0.005
        < erlang_a_metrics(CCH_RATE, CCH_AHT, 60, capped.agents - 1, 20).abandon_probability
    )
    assert capped.agents > free.agents and "abandon" in capped.limited_by
    fast = agents_needed(CCH_RATE, CCH_AHT, T80_20, max_asa=2.0)
    assert fast.asa <= 2.0 and "asa" in fast.limited_by
    assert erlang_c_metrics(CCH_RATE, CCH_AHT, fast.agents - 1, 20).asa > 2.0


def test_occupancy_limit_can_bind() -> None:
    # 10 erlangs at most 70% occupied: ceil(10 / 0.7) = 15 agents, above the 14 the SL needs.
    plan = agents_needed(CCH_RATE, CCH_AHT, T80_20, max_occupancy=0.7)
    assert plan.agents == 15 and plan.limited_by == ["occupancy"]


def test_large_pool_square_root_staffing() -> None:
    # 5,000 erlangs: the SL needs only a few times sqrt(A) agents above A.
    plan = agents_needed(20, 250, T80_20)
    assert 5000 < plan.agents < 5000 + 3 * math.sqrt(5000)
    below = erlang_c_metrics(20, 250, plan.agents - 1, 20)
    assert below.service_level < 0.8 <= plan.service_level


def test_zero_rate_needs_one_agent() -> None:
    plan = agents_needed(0.0, 180, T80_20)
    assert plan.agents == 1 and plan.service_level == 1 and plan.occupancy == 0


def test_cap_is_a_clear_error() -> None:
    with pytest.raises(StaffingCapExceeded, match="max_agents") as err:
        agents_needed(CCH_RATE, CCH_AHT, T80_20, max_agents=12)
    assert err.value.max_agents == 12
    with pytest.raises(StaffingCapExceeded, match="more than 5 agents"):
        agents_needed(CCH_RATE, CCH_AHT, T80_20, max_agents=5)
    # Erlang A: at most n / A of the callers can be answered, so 80% of 10
    # erlangs needs at least 8 agents whatever the patience.
    with pytest.raises(StaffingCapExceeded, match="more than 7 agents"):
        agents_needed(CCH_RATE, CCH_AHT, T80_20, patience=5, max_agents=7)


@pytest.mark.parametrize(
    ("agents", "shrinkage", "scheduled"),
    [(14, 0.3, 20), (14, 0.0, 14), (10, 0.35, 16), (0, 0.5, 0), (7, 0.3, 10), (1, 0.99, 100)],
)
def test_shrinkage(agents: int, shrinkage: float, scheduled: int) -> None:
    assert scheduled_agents(agents, shrinkage) == scheduled


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: erlang_c_metrics(-1, 180, 10, 20), "rate"),
        (lambda: erlang_c_metrics(math.nan, 180, 10, 20), "rate"),
        (lambda: erlang_c_metrics(0.1, 0, 10, 20), "aht"),
        (lambda: erlang_c_metrics(0.1, -5, 10, 20), "aht"),
        (lambda: erlang_c_metrics(0.1, 180, 0, 20), "agents"),
        (lambda: erlang_c_metrics(0.1, 180, 2.5, 20), "agents"),  # type: ignore[arg-type]
        (lambda: erlang_c_metrics(0.1, 180, 10, -1), "answer_time"),
        (lambda: erlang_a_metrics(0.1, 180, 0, 10, 20), "patience"),
        (lambda: erlang_a_metrics(0.1, 180, -3, 10, 20), "patience"),
        (lambda: erlang_a_metrics(1e3, 180, 1e6, 10, 20), "patience"),
        (lambda: ServiceTarget(percent=120, seconds=20), "target percent"),
        (lambda: ServiceTarget(percent=-5, seconds=20), "target percent"),
        (lambda: ServiceTarget(percent=100, seconds=20), "target percent"),
        (lambda: ServiceTarget(percent=80, seconds=-1), "target seconds"),
        (lambda: parse_target("80"), "target"),
        (lambda: parse_target("eighty/20"), "target"),
        (lambda: parse_target("180/20"), "target percent"),
        (lambda: agents_needed(0.1, 180, T80_20, shrinkage=1.0), "shrinkage"),
        (lambda: agents_needed(0.1, 180, T80_20, shrinkage=-0.1), "shrinkage"),
        (lambda: agents_needed(0.1, 180, T80_20, max_occupancy=0), "max_occupancy"),
        (lambda: agents_needed(0.1, 180, T80_20, max_occupancy=1.2), "max_occupancy"),
        (lambda: agents_needed(0.1, 180, T80_20, max_asa=0), "max_asa"),
        (lambda: agents_needed(0.1, 180, T80_20, max_abandon=1.5), "max_abandon"),
        (lambda: agents_needed(0.1, 180, T80_20, max_agents=0), "max_agents"),
        (lambda: scheduled_agents(14, 1.0), "shrinkage"),
    ],
)
def test_bad_input_names_the_parameter(call: Callable[[], object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        call()


def test_infinite_patience_is_erlang_c() -> None:
    assert queue_metrics(CCH_RATE, CCH_AHT, 14, 20, math.inf).model == "erlang_c"
    assert agents_needed(CCH_RATE, CCH_AHT, T80_20, patience=math.inf).model == "erlang_c"


def test_parse_target() -> None:
    assert parse_target("80/20") == ServiceTarget(percent=80, seconds=20)
    assert parse_target(" 90.5 / 15 ") == ServiceTarget(percent=90.5, seconds=15)


# ------------------------------------------------------------------ report and CLI


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="router")
    add_cli(parser.add_subparsers(dest="cmd", required=True))
    return parser.parse_args(["staffing", *argv])


def test_cli_erlang_c(capsys: pytest.CaptureFixture[str]) -> None:
    args = _cli("--rate", "200", "--aht", "180", "--max-occupancy", "0.85", "--shrinkage", "0.3")
    assert args.fn(args) == 0
    out = capsys.readouterr().out
    assert "agents on phones   14\n" in out
    assert "agents scheduled   20 (shrinkage 30%)" in out
    assert "service level      88.8% answered within 20 s" in out
    assert "Erlang C" in out and "10.00 erlangs" in out


def test_cli_erlang_a_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = _cli(
        "--rate", "1", "--per", "minute", "--aht", "300", "--target", "90/30",
        "--patience", "120", "--max-abandon", "0.03", "--json",
    )  # fmt: skip
    assert args.fn(args) == 0
    plan = msgspec.json.decode(capsys.readouterr().out, type=StaffingPlan)
    assert plan.model == "erlang_a" and plan.rate == pytest.approx(1 / 60)
    assert plan.target == ServiceTarget(percent=90, seconds=30)
    assert plan.abandon_probability <= 0.03 and plan.service_level >= 0.9


def test_cli_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    args = _cli("--rate", "200", "--aht", "180", "--target", "80")
    assert args.fn(args) == 2
    assert "target '80'" in capsys.readouterr().err
    args = _cli("--rate", "-1", "--aht", "180")
    assert args.fn(args) == 2
    assert "rate" in capsys.readouterr().err


def test_report_mentions_every_figure() -> None:
    plan = agents_needed(CCH_RATE, CCH_AHT, T80_20, patience=90, shrinkage=0.25)
    text = staffing_report(plan)
    labels = ["Erlang A", "mean patience 90 s", "200 contacts/hour", "agents on phones"]
    labels += ["agents scheduled", "ASA", "abandon rate", "occupancy", "limited by"]
    for label in labels:
        assert label in text
