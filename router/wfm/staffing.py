"""Staffing mathematics for one contact-center pool (workforce management). Pure code.

Units: every time is in **seconds** and every rate is in **contacts per second**,
as in the rest of the engine (the CLI converts `--per hour` etc. at the edge).
Probabilities, occupancy, shrinkage and abandon limits are fractions in [0, 1];
only a service-level target is written the industry way, `80/20` = 80 percent
answered within 20 seconds (`ServiceTarget.percent`, `ServiceTarget.seconds`).

Models
------
Erlang C (M/M/n): Poisson arrivals at `rate`, exponential handle times with
mean `aht`, `n` agents, callers never hang up. Offered load A = rate * aht
(erlangs). Erlang B comes from the recursion B(0) = 1,
B(k) = A B(k-1) / (k + A B(k-1)) (no factorials, stable for any n), then
C = n B / (n - A (1 - B)) = P(W > 0), SL(t) = P(W <= t) = 1 - C exp(-(n - A) t / aht),
ASA = C aht / (n - A), occupancy = A / n. With n <= A the queue grows without
bound: P(W > 0) = 1, SL = 0, ASA = inf, occupancy 1 (`stable=False`).

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

Service level in Erlang A is **answered within t among all arrivals**:
P(answered and W <= t). Abandoned contacts count as failures whenever they
hang up, the conservative definition (it never exceeds P(W <= t) over all
arrivals, nor the answered-only ratio). For Erlang C it is plain P(W <= t).

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

import argparse
import math
import sys
from collections.abc import Callable
from typing import Literal

import msgspec

__all__ = [
    "MAX_AGENTS",
    "QueueMetrics",
    "ServiceTarget",
    "StaffingCapExceeded",
    "StaffingPlan",
    "add_cli",
    "agents_needed",
    "erlang_a_metrics",
    "erlang_b",
    "erlang_c",
    "erlang_c_metrics",
    "offered_load",
    "parse_target",
    "queue_metrics",
    "scheduled_agents",
    "staffing_report",
]

Model = Literal["erlang_c", "erlang_a"]

# Upper bound of the agents-needed search unless the caller gives another.
MAX_AGENTS = 10_000
# Relative size below which the rest of a series is dropped.
_EPS = 1e-17
# Slack on comparisons with limits, so that rounding noise in a metric exactly
# at its limit (0.85 occupancy = 17 erlangs on 20 agents) never adds an agent.
_SLACK = 1e-12
# Erlang A sums O(sqrt(rate * patience)) terms, and its log-space error grows
# like 1e-16 * rate * patience: beyond this it is slow and no longer exact.
_MAX_ARRIVALS_PER_PATIENCE = 1e8
# Seconds per unit of the CLI's `--per`.
_PER_SECONDS = {"second": 1.0, "minute": 60.0, "half-hour": 1800.0, "hour": 3600.0}


class StaffingCapExceeded(ValueError):
    """No number of agents up to the cap meets the targets."""

    def __init__(self, max_agents: int, detail: str) -> None:
        super().__init__(f"max_agents: {detail}")
        self.max_agents = max_agents


class ServiceTarget(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`percent` of contacts answered within `seconds` (80/20 = 80% within 20 s)."""

    percent: float
    seconds: float

    def __post_init__(self) -> None:
        _finite("target percent", self.percent)
        if not 0.0 <= self.percent < 100.0:
            raise ValueError(
                f"target percent must be in [0, 100) (100% is never reached), got {self.percent}"
            )
        _non_negative("target seconds", self.seconds)


class QueueMetrics(msgspec.Struct, frozen=True):
    """Steady-state performance of one pool with a given number of agents."""

    model: Model
    agents: int
    # Erlangs: rate * aht, the agents kept busy on average if every contact is answered.
    offered_load: float
    # Seconds of the service-level definition.
    answer_time: float
    # P(answered within answer_time) among all arrivals.
    service_level: float
    # P(an arriving contact waits at all).
    wait_probability: float
    # Average speed of answer: mean wait of answered contacts, seconds (inf if unstable).
    asa: float
    # Fraction of arrivals that hang up before an answer (0 in Erlang C).
    abandon_probability: float
    # Fraction of on-phone agent time spent handling contacts.
    occupancy: float
    # False only for Erlang C with agents <= offered load (the queue grows for ever).
    stable: bool


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


# ---------------------------------------------------------------- validation


def _finite(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    _finite(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def _positive(name: str, value: float) -> None:
    _finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def _agents(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _fraction(name: str, value: float, *, open_low: bool, open_high: bool) -> None:
    _finite(name, value)
    low_ok = value > 0 if open_low else value >= 0
    high_ok = value < 1 if open_high else value <= 1
    if not (low_ok and high_ok):
        interval = f"{'(' if open_low else '['}0, 1{')' if open_high else ']'}"
        raise ValueError(f"{name} must be a fraction in {interval}, got {value}")


def _check_patience(patience: float | None) -> float | None:
    """None or +inf mean no abandonment (Erlang C)."""
    if patience is None or patience == math.inf:
        return None
    _positive("patience", patience)
    return patience


def parse_target(text: str) -> ServiceTarget:
    """`"80/20"` -> 80% answered within 20 seconds."""
    percent, sep, seconds = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return ServiceTarget(percent=float(percent), seconds=float(seconds))
    except ValueError as exc:
        detail = str(exc) or "expected PERCENT/SECONDS such as 80/20"
        raise ValueError(f"target {text!r}: {detail}") from None


def offered_load(rate: float, aht: float) -> float:
    """Erlangs: contacts per second times seconds of handling per contact."""
    _non_negative("rate", rate)
    _positive("aht", aht)
    return rate * aht


def scheduled_agents(agents: int, shrinkage: float) -> int:
    """Agents to roster so that `agents` are on the phones: ceil(n / (1 - shrinkage))."""
    _agents("agents", agents, minimum=0)
    _fraction("shrinkage", shrinkage, open_low=False, open_high=True)
    return math.ceil(agents / (1.0 - shrinkage) - 1e-9)


# ---------------------------------------------------------------- Erlang B / C


def erlang_b(agents: int, load: float) -> float:
    """Blocking probability of M/M/n/n, by the recursion on n (stable, O(n))."""
    _agents("agents", agents, minimum=0)
    _non_negative("load", load)
    b = 1.0
    for k in range(1, agents + 1):
        b = load * b / (k + load * b)
    return b


def erlang_c(agents: int, load: float) -> float:
    """P(W > 0) in M/M/n; 1.0 when agents <= load (unstable)."""
    _agents("agents", agents)
    b = erlang_b(agents, load)
    if agents <= load:
        return 1.0
    return agents * b / (agents - load * (1.0 - b))


def erlang_c_metrics(rate: float, aht: float, agents: int, answer_time: float) -> QueueMetrics:
    """Erlang C performance with `agents` on the phones; see the module notes."""
    load = offered_load(rate, aht)
    _agents("agents", agents)
    _non_negative("answer_time", answer_time)
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
        service_level=_clamp(1.0 - c * math.exp(-spare * answer_time / aht)),
        wait_probability=c,
        asa=c * aht / spare,
        abandon_probability=0.0,
        occupancy=load / agents,
        stable=True,
    )


# ---------------------------------------------------------------- Erlang A


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
    _positive("patience", patience)
    _agents("agents", agents)
    _non_negative("answer_time", answer_time)
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
        service_level=_clamp(1.0 - abandon - late),
        wait_probability=_clamp(wait),
        asa=asa,
        abandon_probability=abandon,
        occupancy=_clamp(load * answered / n),
        stable=True,
    )


def queue_metrics(
    rate: float, aht: float, agents: int, answer_time: float, patience: float | None = None
) -> QueueMetrics:
    """Erlang A when a finite `patience` is given, else Erlang C."""
    p = _check_patience(patience)
    if p is None:
        return erlang_c_metrics(rate, aht, agents, answer_time)
    return erlang_a_metrics(rate, aht, p, agents, answer_time)


def _clamp(p: float) -> float:
    return min(1.0, max(0.0, p))


# ---------------------------------------------------------------- agents needed


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
    if m.service_level < target.percent / 100.0 - _SLACK:
        broken.append("service_level")
    if max_occupancy is not None and m.occupancy > max_occupancy + _SLACK:
        broken.append("occupancy")
    if max_asa is not None and m.asa > max_asa * (1.0 + _SLACK):
        broken.append("asa")
    if max_abandon is not None and m.abandon_probability > max_abandon + _SLACK:
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
    p = _check_patience(patience)
    if max_occupancy is not None:
        _fraction("max_occupancy", max_occupancy, open_low=True, open_high=False)
    if max_asa is not None:
        _positive("max_asa", max_asa)
    if max_abandon is not None:
        _fraction("max_abandon", max_abandon, open_low=False, open_high=False)
    _fraction("shrinkage", shrinkage, open_low=False, open_high=True)
    _agents("max_agents", max_agents)

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


# ---------------------------------------------------------------- what-if report and CLI


def staffing_report(plan: StaffingPlan) -> str:
    """A plain-text summary of a plan, one figure a line."""
    if plan.model == "erlang_a":
        model = f"Erlang A (M/M/n+M), mean patience {plan.patience:g} s"
    else:
        model = "Erlang C (M/M/n), no abandonment"
    t = plan.target
    asa = "infinite" if math.isinf(plan.asa) else f"{plan.asa:.1f} s"
    lines = [
        f"model              {model}",
        f"offered load       {plan.offered_load:.2f} erlangs "
        f"({plan.rate * 3600:g} contacts/hour, AHT {plan.aht:g} s)",
        f"target             {t.percent:g}% answered within {t.seconds:g} s",
        f"agents on phones   {plan.agents}",
        f"agents scheduled   {plan.scheduled} (shrinkage {plan.shrinkage:.0%})",
        f"service level      {plan.service_level:.1%} answered within {t.seconds:g} s",
        f"ASA                {asa}",
        f"abandon rate       {plan.abandon_probability:.1%}",
        f"occupancy          {plan.occupancy:.1%}",
        f"P(wait > 0)        {plan.wait_probability:.1%}",
        f"limited by         {', '.join(plan.limited_by) or '-'}",
    ]
    return "\n".join(lines)


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `staffing` on the router CLI's subparsers (handler sets `fn`)."""
    sp = subparsers.add_parser(
        "staffing",
        help="agents needed for a service-level target (Erlang C, or Erlang A with --patience)",
    )
    sp.add_argument("--rate", type=float, required=True, help="contacts per --per")
    sp.add_argument("--per", choices=sorted(_PER_SECONDS), default="hour", help="(default hour)")
    sp.add_argument("--aht", type=float, required=True, help="average handle time, seconds")
    sp.add_argument("--target", default="80/20", help="PERCENT/SECONDS (default 80/20)")
    sp.add_argument("--patience", type=float, help="mean patience, seconds: Erlang A")
    sp.add_argument("--max-occupancy", type=float, help="fraction, e.g. 0.85")
    sp.add_argument("--max-asa", type=float, help="seconds")
    sp.add_argument("--max-abandon", type=float, help="fraction, e.g. 0.05 (Erlang A)")
    sp.add_argument("--shrinkage", type=float, default=0.0, help="fraction in [0, 1)")
    sp.add_argument("--max-agents", type=int, default=MAX_AGENTS)
    sp.add_argument("--json", action="store_true", help="print the plan as JSON")
    sp.set_defaults(fn=_staffing_cmd)


def _staffing_cmd(args: argparse.Namespace) -> int:
    try:
        _non_negative("rate", args.rate)
        plan = agents_needed(
            args.rate / _PER_SECONDS[args.per],
            args.aht,
            parse_target(args.target),
            patience=args.patience,
            max_occupancy=args.max_occupancy,
            max_asa=args.max_asa,
            max_abandon=args.max_abandon,
            shrinkage=args.shrinkage,
            max_agents=args.max_agents,
        )
    except ValueError as exc:
        print(f"staffing: {exc}", file=sys.stderr)
        return 2
    print(msgspec.json.encode(plan).decode() if args.json else staffing_report(plan))
    return 0
