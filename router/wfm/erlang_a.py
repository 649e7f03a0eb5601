"""Erlang A (M/M/n+M): waiting with abandonment. Pure code.

Erlang A (M/M/n+M): the same plus exponential patience with mean `patience`
(abandonment rate theta = 1/patience per waiting caller); always stable. Exact
closed forms from the birth-death chain of the number in system (Mandelbaum &
Zeltyn, "The Palm/Erlang-A queue, with applications to call centers", 2007,
sections 3-4; derived again from the chain here), with mu = 1/aht,
x = n mu / theta, y = rate / theta and

    A(x, y) = sum_{j>=0} y^j / prod_{i=1..j} (x + i)      (= x e^y y^-x gamma(x, y))

- p_n = E_B / (1 + (A(x, y) - 1) E_B), E_B = Erlang B(n, rate * aht);
- P(W > 0) = p_n A(x, y);
- P(Ab) = sum_j p_{n+j} (j+1) / (x+j+1): a caller who finds j waiting moves
  up a place at rate n mu + i theta (i ahead) and hangs up at rate theta, so
  he is answered with probability prod_{i=0..j} (x+i)/(x+i+1) = x / (x+j+1);
- P(answered, W > t) = p_n x/(x+1) exp(-(x+1) theta t + y (1 - e^(-theta t)))
  A(x+1, y e^(-theta t));
- ASA = E[W | answered], E[W; answered] = sum_j p_{n+j} x/(x+j+1) H_j / theta,
  H_j = sum_{i=1..j+1} 1/(x+i) (his offered wait is a sum of exponentials with
  rates n mu + i theta, i = 0..j);
- occupancy = rate * aht * (1 - P(Ab)) / n (only answered contacts keep agents busy).

Why no scipy.special.gammainc: the formulas need e^y y^-x gamma(x, y), whose
factors overflow at call-center sizes (y = rate * patience is thousands), so
scipy's regularized value would still have to be rescaled in log space, and
the ASA needs the sum over j anyway; a 40 MB dependency for that is not worth
it. The series is summed from its largest term outward (log of that term from
`lgamma`): the terms are log-concave in j, so the geometric bound
term * r / (1 - r) on what is left stops the sum after O(sqrt(y)) terms however
large y is, with no truncation guess. Its log-space rounding grows like
1e-16 * y, so rate * patience is limited to 1e8 (errors below 1e-8 there); the
results match the birth-death chain solved state by state, a simulation and
Erlang C as patience grows (tests/wfm/test_staffing.py).
"""

from __future__ import annotations

import math

from router.wfm.erlang_c import erlang_b
from router.wfm.queueing import (
    QueueMetrics,
    check_agents,
    check_non_negative,
    check_positive,
    clamp,
    offered_load,
)

# Relative size below which the rest of a series is dropped.
_EPS = 1e-17
# Erlang A sums O(sqrt(rate * patience)) terms, and its log-space error grows
# like 1e-16 * rate * patience: beyond this it is slow and no longer exact.
_MAX_ARRIVALS_PER_PATIENCE = 1e8


def _series(x: float, y: float) -> tuple[float, int, list[float]]:
    """Terms T_j = y^j / prod_{i=1..j}(x+i) of A(x, y), scaled by the largest.

    Returns (log of the largest term, j of the first term kept, scaled terms):
    A(x, y) = exp(log_max) * sum(terms). The terms rise while y/(x+j+1) >= 1
    and fall after, so summing outward from the top and stopping once the
    geometric bound on what is left drops below _EPS of the sum is exact to
    rounding, whatever the size of x and y.
    """
    if y <= 0.0:
        return 0.0, 0, [1.0]
    top = max(0, math.floor(y - x))
    log_max = top * math.log(y) - (math.lgamma(x + top + 1.0) - math.lgamma(x + 1.0))
    down: list[float] = []
    total = 1.0
    term, j = 1.0, top
    while j > 0:
        ratio = (x + j) / y  # T_{j-1} / T_j, < 1 below the top, falling as j falls
        term *= ratio
        j -= 1
        down.append(term)
        total += term
        if term * ratio < _EPS * total * (1.0 - ratio):
            break
    first = j
    up: list[float] = []
    term, j = 1.0, top
    while True:
        ratio = y / (x + j + 1.0)  # T_{j+1} / T_j, < 1 above the top, falling as j rises
        term *= ratio
        j += 1
        up.append(term)
        total += term
        if ratio < 1.0 and term * ratio < _EPS * total * (1.0 - ratio):
            break
    down.reverse()
    return log_max, first, [*down, 1.0, *up]


def _digamma(x: float) -> float:
    """psi(x) for x > 0: recurrence up to 10, then the asymptotic series (error < 1e-13)."""
    acc = 0.0
    while x < 10.0:
        acc -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    tail = f * (1 / 12 - f * (1 / 120 - f * (1 / 252 - f * (1 / 240 - f / 132))))
    return acc + math.log(x) - 0.5 / x - tail


def _harmonic(x: float, k: int) -> float:
    """sum_{i=1..k} 1/(x+i)."""
    if k <= 4096:
        return math.fsum(1.0 / (x + i) for i in range(1, k + 1))
    return _digamma(x + k + 1.0) - _digamma(x + 1.0)


def erlang_a_metrics(
    rate: float, aht: float, patience: float, agents: int, answer_time: float
) -> QueueMetrics:
    """Erlang A (M/M/n+M) performance with `agents` on the phones; see the module notes."""
    load = offered_load(rate, aht)
    check_positive("patience", patience)
    check_agents("agents", agents)
    check_non_negative("answer_time", answer_time)
    n = agents
    theta = 1.0 / patience
    x = n * patience / aht  # n mu / theta
    y = rate * patience  # lambda / theta: arrivals during one mean patience
    if y > _MAX_ARRIVALS_PER_PATIENCE:
        raise ValueError(
            f"patience: rate * patience = {y:.3g} arrivals within one mean patience "
            f"(limit {_MAX_ARRIVALS_PER_PATIENCE:.0e}); callers that patient never hang up "
            "in practice: use Erlang C (patience=None)"
        )
    eb = erlang_b(n, load)
    log_max, first, terms = _series(x, y)
    s0 = s_ab = s_w = 0.0
    h = _harmonic(x, first + 1)  # H_first
    for k, w in enumerate(terms):
        j = first + k
        if k:
            h += 1.0 / (x + j + 1.0)
        s0 += w
        s_ab += w * (j + 1.0) / (x + j + 1.0)
        s_w += w * x / (x + j + 1.0) * h
    # p_n = eb / (1 + (A - 1) eb) = eb e^-L / d with A = e^L s0.
    inv_max = math.exp(-log_max)
    d = inv_max + (s0 - inv_max) * eb
    wait = eb * s0 / d
    abandon = min(1.0, eb * s_ab / d)
    answered = 1.0 - abandon
    asa = eb * s_w / (d * theta) / answered if answered > 0.0 else math.inf
    late = 0.0  # P(answered, W > answer_time)
    if eb > 0.0:
        theta_t = theta * answer_time
        log_max1, _, terms1 = _series(x + 1.0, y * math.exp(-theta_t))
        log_late = (
            math.log(eb / d)
            - log_max
            + math.log(x / (x + 1.0))
            - (x + 1.0) * theta_t
            - y * math.expm1(-theta_t)
            + log_max1
        )
        late = math.exp(log_late) * math.fsum(terms1)
    return QueueMetrics(
        model="erlang_a",
        agents=n,
        offered_load=load,
        answer_time=answer_time,
        service_level=clamp(1.0 - abandon - late),
        wait_probability=clamp(wait),
        asa=asa,
        abandon_probability=abandon,
        occupancy=clamp(load * answered / n),
        stable=True,
    )
