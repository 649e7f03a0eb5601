"""Prometheus instruments of the audit trail: records sealed, exported and
archived, errors, and the sealing lag of the sources this replica seals."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class AuditMetrics(Collector):
    """Records sealed, exported and archived (per replica: only one seals each record, so
    sums over replicas are exact), and the sealing lag of the sources this
    replica seals. Labelled by workspace only (`router:access` for the access
    stream)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sealed = Counter("router_audit_records_sealed", "Audit records sealed by this replica",
                              ["workspace"], registry=registry)  # fmt: skip
        self.exported = Counter("router_audit_records_exported",
                                "Sealed records written to segment files by this replica",
                                ["workspace"], registry=registry)  # fmt: skip
        self.archived = Counter("router_audit_records_archived",
                                "Sealed records written to the history archive by this replica",
                                ["workspace"], registry=registry)  # fmt: skip
        self.errors = Counter("router_audit_errors",
                              "Sealing, export or archive attempts that failed",
                              ["workspace"], registry=registry)  # fmt: skip
        self.lag: dict[str, float] = {}
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "router_audit_seal_lag_seconds",
            "Age of the oldest entry not sealed yet (0: caught up); on the sealing replica only",
            labels=["workspace"],
        )
        for label, seconds in sorted(self.lag.items()):
            lag.add_metric([label], seconds)
        yield lag

    def describe(self) -> Iterator[Metric]:
        return iter(())  # the sources vary: collected, not described
