"""Prometheus metrics: what each replica did, and the shared state in Redis.

Two kinds, so that summing over replicas in PromQL never double counts:

- **Per replica** (this process's own work): HTTP durations by route template,
  routing decision latency, Redis errors, timers fired and their lag, webhook
  deliveries. Sum them over replicas as usual.
- **Shared state read from Redis** (queues, agents, service level, event
  counts kept by the scripts): exported by ONE replica at a time, the holder
  of a Redis lease (`router:metrics:exporter:<group>`, renewed on every scrape and by a
  background loop; another replica takes over within `LEASE_MS` when it dies;
  `router/wfm/exporter.py`).
  The others omit these series, so `sum by (pool) (router_queue_depth)` is right
  whatever the number of replicas. `router_metrics_exporter` is 1 on the holder.

Labels are workspace, pool, channel, tier, policy, clock, state, window and
route template only: never a contact or agent id.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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
