"""The numbers the Lua scripts read from the runtime hash, derived from a config."""

from __future__ import annotations

from router.routing.config import RoutingConfig, window_seconds
from sla.policy import runtime_fields as sla_fields


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def runtime_fields(cfg: RoutingConfig) -> list[str]:
    """Flat field/value list for `{ws}:rt` (formats mirror lua/lib/10_runtime.lua)."""
    d = cfg.defaults
    out: list[str] = [
        "reoffer_ms", str(_ms(d.reoffer_after)),
        "missed_after", str(d.missed_after),
        "cont_window_ms", str(_ms(d.continuity_window)),
        "cont_prefer_ms", str(_ms(d.continuity_prefer)),
        # retention windows in seconds (0: keep), see router/security/audit/sealer.py
        "retention_s", str(cfg.retention.contacts_seconds(d.retention)),
        "ret_events_s", str(window_seconds(cfg.retention.events)),
        "ret_access_s", str(window_seconds(cfg.retention.access)),
        "ret_audit_s", str(window_seconds(cfg.retention.audit)),
        # an archived finished contact's time left in Redis (router/archive/contacts.py)
        "grace_s", str(window_seconds(cfg.retention.grace)),
    ]  # fmt: skip
    for name, ch in cfg.channels.items():
        max_wait = _ms(ch.max_wait) if ch.max_wait else 0
        out += [
            "ch:" + name,
            f"{ch.weight}|{_ms(ch.offer_timeout)}|{int(ch.auto_accept)}|{_ms(ch.wrap_up)}|{max_wait}",
        ]
    for name, pool in cfg.pools.items():
        out += [
            "pool:" + name,
            f"{pool.strategy}|{','.join(pool.channels)}|{pool.max_queue or 0}"
            f"|{_ms(pool.handle_time)}|{_ms(pool.service_level.seconds)}",
        ]
    out += sla_fields(cfg.sla_policies)
    return out
