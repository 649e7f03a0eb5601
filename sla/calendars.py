"""Compiled calendars of a routing config, built once per config version."""

from __future__ import annotations

from collections import OrderedDict

from router.config import RoutingConfig
from sla.calendar import BusinessCalendar, compile_calendar
from sla.policy import SlaPolicy

_CACHE: OrderedDict[int, tuple[RoutingConfig, dict[str, BusinessCalendar]]] = OrderedDict()
_SIZE = 64


def calendars(cfg: RoutingConfig) -> dict[str, BusinessCalendar]:
    # Keyed by identity: a config object is immutable and replaced on reload;
    # holding it in the value keeps its id from being reused while cached.
    hit = _CACHE.get(id(cfg))
    if hit is not None and hit[0] is cfg:
        _CACHE.move_to_end(id(cfg))
        return hit[1]
    compiled = {name: compile_calendar(c) for name, c in cfg.calendars.items()}
    _CACHE[id(cfg)] = (cfg, compiled)
    if len(_CACHE) > _SIZE:
        _CACHE.popitem(last=False)
    return compiled


def calendar_for(cfg: RoutingConfig, policy: SlaPolicy) -> BusinessCalendar | None:
    return calendars(cfg)[policy.calendar] if policy.calendar else None
