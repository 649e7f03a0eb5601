"""Prometheus metrics: what each replica did, and the shared state in Redis.

Two kinds, so that summing over replicas in PromQL never double counts:

- **Per replica** (this process's own work): HTTP durations by route template,
  routing decision latency, Redis errors, timers fired and their lag, webhook
  deliveries. Sum them over replicas as usual.
- **Shared state read from Redis** (queues, agents, service level, event
  counts kept by the scripts): exported by ONE replica at a time, the holder
  of a Redis lease (`router:metrics:exporter:<group>`, renewed on every scrape and by a
  background loop; another replica takes over within `LEASE_MS` when it dies).
  The others omit these series, so `sum by (pool) (router_queue_depth)` is right
  whatever the number of replicas. `router_metrics_exporter` is 1 on the holder.

Labels are workspace, pool, channel, tier, policy, clock, state, window and
route template only: never a contact or agent id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any, cast

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from router.aio import cancel_requested
from router.config import RoutingConfig
from router.configstore import ConfigStore
from router.errors import NotFound
from router.keys import WORKSPACES, WsKeys
from router.leases import LEASE_LUA, RELEASE_LUA
from router.pools import PoolStats, pool_stats
from router.stats import WindowStats, pool_windows

log = logging.getLogger(__name__)

LEASE_PREFIX = "router:metrics:exporter:"
LEASE_MS = 30_000
RENEW_EVERY = 10.0
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Per-replica instruments and the Redis state collector, in one registry."""

    def __init__(self) -> None:
        # `_created` series double the output and no dashboard here reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http = Histogram(
            "router_http_request_duration_seconds", "HTTP request duration by route template",
            ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.decision = Histogram(
            "router_decision_duration_seconds",
            "Routing decision latency (one script call: create, accept, complete ...)",
            ["operation"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.redis_errors = Counter(
            "router_redis_errors", "Redis calls that failed (connection, timeout)", ["where"],
            registry=r,
        )  # fmt: skip
        self.timer_lag = Histogram(
            "router_timer_lag_seconds", "Timer fire time minus due time", buckets=LAG_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.redis_up = Gauge(
            "router_redis_up", "1 when this replica's last look at Redis (a scrape) worked",
            registry=r,
        )  # fmt: skip
        self.timers_late = Counter(
            "router_timers_late", "Timers fired more than 250 ms after their due time",
            registry=r,
        )  # fmt: skip
        self.state = RedisState()
        r.register(self.state)

    def observe_timer(self, lag_ms: int) -> None:
        self.timer_lag.observe(max(0, lag_ms) / 1000)
        if lag_ms > 250:
            self.timers_late.inc()


class RedisState(Collector):
    """Yields the last snapshot of the shared state, when this replica exports it."""

    def __init__(self) -> None:
        self.snapshot: list[Metric] = []
        self.exporter = False
        self.webhooks: Any = None  # the dispatcher, whose counters are per replica

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "router_metrics_exporter",
            "1 on the replica that exports the state shared in Redis",
            value=1 if self.exporter else 0,
        )
        if self.webhooks is not None:
            c = CounterMetricFamily(
                "router_webhook_deliveries", "Webhook delivery attempts by result",
                labels=["result"],
            )  # fmt: skip
            for result in ("delivered", "failed", "retried", "dead", "dropped"):
                c.add_metric([result], getattr(self.webhooks, result, 0))
            yield c
        if self.exporter:
            yield from self.snapshot

    def describe(self) -> Iterator[Metric]:
        return iter(())  # the families vary with the config: collected, not described


class StateExporter:
    """Holds the exporter lease and builds the Redis-state snapshot on scrape."""

    def __init__(
        self, client: Redis, configs: ConfigStore, state: RedisState, group: str = "default"
    ) -> None:
        self._key = LEASE_PREFIX + group
        self._client = client
        self._configs = configs
        self._state = state
        self._lease = client.register_script(LEASE_LUA)
        self._release = client.register_script(RELEASE_LUA)
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def hold(self) -> bool:
        held = bool(await self._lease(keys=[self._key], args=[self.owner, LEASE_MS]))
        self._state.exporter = held
        return held

    async def run(self) -> None:
        """Keeps the lease warm between scrapes so the exporter does not flap."""
        while not cancel_requested():
            with contextlib.suppress(Exception):
                await self.hold()
            await asyncio.sleep(RENEW_EVERY)

    async def release(self) -> None:
        """On shutdown: let another replica take over at its next scrape."""
        with contextlib.suppress(Exception):
            await self._release(keys=[self._key], args=[self.owner])

    async def refresh(self) -> None:
        if not await self.hold():
            return
        families: dict[str, Metric] = {}
        names = sorted(cast(set[str], await self._client.smembers(WORKSPACES)))
        for ws in names:
            try:
                cfg = (await self._configs.get(ws)).config
            except NotFound:
                continue
            await self._workspace(ws, cfg, families)
        self._state.snapshot = list(families.values())

    async def _workspace(self, ws: str, cfg: RoutingConfig, fam: dict[str, Metric]) -> None:
        keys = WsKeys(ws)
        secs, micros = await self._client.time()
        now_ms = int(secs) * 1000 + int(micros) // 1000
        pools = list(cfg.pools)
        stats = [await pool_stats(self._client, ws, p, cfg.pools[p]) for p in pools]
        windows = await pool_windows(self._client, ws, pools, now_ms)
        counts = cast(dict[str, str], await self._client.hgetall(keys.event_counts))
        pending = int(await self._client.zcard(keys.timers))
        _gauge(fam, "router_timers_pending", "Timers waiting to come due", ["workspace"],
               [ws], pending)  # fmt: skip
        for p, s in zip(pools, stats, strict=True):
            _pool_gauges(fam, ws, s, cfg.pools[p].service_level.percent / 100)
            for w in windows[p].values():
                _window_gauges(fam, ws, p, w)
        _event_counters(fam, ws, counts)


def _family(fam: dict[str, Metric], kind: str, name: str, doc: str, labels: list[str]) -> Any:
    f = fam.get(name)
    if f is None:
        cls = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
        f = fam[name] = cls(name, doc, labels=labels)
    return f


def _gauge(fam: dict[str, Metric], name: str, doc: str, labels: list[str],
           values: list[str], value: float | None) -> None:  # fmt: skip
    if value is not None:
        _family(fam, "gauge", name, doc, labels).add_metric(values, value)


def _pool_gauges(fam: dict[str, Metric], ws: str, s: PoolStats, target: float) -> None:
    wp = ["workspace", "pool"]
    for ch, depth in s.depth_by_channel.items():
        _gauge(fam, "router_queue_depth", "Contacts waiting, by pool and channel",
               [*wp, "channel"], [ws, s.id, ch], depth)  # fmt: skip
    _gauge(fam, "router_queue_longest_wait_seconds", "Wait of the oldest waiting contact",
           wp, [ws, s.id], s.longest_wait)  # fmt: skip
    for state in ("available", "busy", "break", "missed", "offline"):
        _gauge(fam, "router_agents", "Member agents by state (busy: available with load)",
               [*wp, "state"], [ws, s.id, state], s.agents_by_state.get(state, 0))  # fmt: skip
    _gauge(fam, "router_pool_occupancy_ratio", "Load over capacity of staffed agents", wp,
           [ws, s.id], s.occupancy)  # fmt: skip
    _gauge(fam, "router_service_level_target_ratio", "The pool's service-level target", wp,
           [ws, s.id], target)  # fmt: skip
    _gauge(fam, "router_estimated_wait_seconds", "Expected wait of a new contact", wp,
           [ws, s.id], s.estimated_wait)  # fmt: skip


def _window_gauges(fam: dict[str, Metric], ws: str, pool: str, w: WindowStats) -> None:
    labels, values = ["workspace", "pool", "window"], [ws, pool, w.window]
    _gauge(fam, "router_service_level_ratio",
           "Answered within target over answered, in a sliding window", labels, values,
           w.service_level)  # fmt: skip
    _gauge(fam, "router_service_level_with_abandons_ratio",
           "Answered within target over answered plus abandoned", labels, values,
           w.service_level_with_abandons)  # fmt: skip
    _gauge(fam, "router_average_speed_of_answer_seconds", "Mean wait of answered contacts",
           labels, values, w.average_speed_of_answer)  # fmt: skip
    _gauge(fam, "router_average_handle_time_seconds", "Mean answer-to-completion time",
           labels, values, w.average_handle_time)  # fmt: skip
    _gauge(fam, "router_abandon_rate_ratio", "Abandoned over answered plus abandoned",
           labels, values, w.abandon_rate)  # fmt: skip
    _gauge(fam, "router_arrival_rate_per_second", "Contacts arriving per second", labels,
           values, w.arrival_rate)  # fmt: skip


def _event_counters(fam: dict[str, Metric], ws: str, counts: dict[str, str]) -> None:
    for field, n in sorted(counts.items()):
        parts = field.split("|")
        if parts[0].startswith("contact.") and len(parts) == 4:
            f = _family(fam, "counter", "router_contact_events",
                        "Contact events (created, offered, assigned, abandoned, ...)",
                        ["workspace", "event", "pool", "channel", "tier"])  # fmt: skip
            f.add_metric([ws, parts[0].removeprefix("contact."), *parts[1:]], int(n))
        elif parts[0].startswith("sla.") and len(parts) == 3:
            f = _family(fam, "counter", "router_sla_events",
                        "SLA events (warning, breached, escalated, met, missed, ...)",
                        ["workspace", "event", "policy", "clock"])  # fmt: skip
            f.add_metric([ws, parts[0].removeprefix("sla."), *parts[1:]], int(n))
