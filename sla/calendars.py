"""What the SLA engine derives from a routing config, built once per config version:
compiled calendars and a fingerprint of every policy clock's definition.

The config is anything with `calendars` and `sla_policies` (the routing
config, `router/routing/config.py`): this package sits below routing and
never imports it."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Protocol

import msgspec

from sla.business_time import BusinessCalendar, compile_calendar
from sla.calendar import Calendar
from sla.policy import CLOCKS, SlaPolicy, clock_of


class RoutingConfig(Protocol):
    """The parts of a routing config the SLA engine reads."""

    @property
    def calendars(self) -> Mapping[str, Calendar]: ...

    @property
    def sla_policies(self) -> Mapping[str, SlaPolicy]: ...


class Derived:
    __slots__ = ("calendars", "fingerprints")

    def __init__(self, cfg: RoutingConfig) -> None:
        self.calendars = {name: compile_calendar(c) for name, c in cfg.calendars.items()}
        # (policy, clock) -> fingerprint of what decides its due times: the
        # clock's target and ladder and the calendar it counts in. A running
        # clock whose fingerprint differs from the config's is re-planned.
        self.fingerprints: dict[tuple[str, str], str] = {}
        for name, policy in cfg.sla_policies.items():
            cal = cfg.calendars.get(policy.calendar) if policy.calendar else None
            for clock_name in CLOCKS:
                clock = clock_of(policy, clock_name)
                if clock is not None:
                    raw = msgspec.json.encode([clock, cal])
                    digest = hashlib.sha256(raw).hexdigest()[:16]
                    self.fingerprints[(name, clock_name)] = digest


_CACHE: OrderedDict[int, tuple[RoutingConfig, Derived]] = OrderedDict()
_SIZE = 64


def derived(cfg: RoutingConfig) -> Derived:
    # Keyed by identity: a config object is immutable and replaced on reload;
    # holding it in the value keeps its id from being reused while cached.
    hit = _CACHE.get(id(cfg))
    if hit is not None and hit[0] is cfg:
        _CACHE.move_to_end(id(cfg))
        return hit[1]
    d = Derived(cfg)
    _CACHE[id(cfg)] = (cfg, d)
    if len(_CACHE) > _SIZE:
        _CACHE.popitem(last=False)
    return d


def calendar_for(cfg: RoutingConfig, policy: SlaPolicy) -> BusinessCalendar | None:
    return derived(cfg).calendars[policy.calendar] if policy.calendar else None


def fingerprints(cfg: RoutingConfig, policy_name: str) -> dict[str, str]:
    """clock -> fingerprint for one policy."""
    return {c: fp for (p, c), fp in derived(cfg).fingerprints.items() if p == policy_name}
