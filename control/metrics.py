"""Control-plane metrics, registered on the registry the daemon's view exposes.

Labels stay bounded (a reason code, a result): never a sender id or a tenant.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge


class ControlMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lease_checks = Counter("smppd_lease_checks", "ValidateLease results by reason code",
                                    ["result"], registry=registry)
        self.lease_cache = Counter("smppd_lease_cache_lookups", "Lease cache lookups",
                                   ["outcome"], registry=registry)
        self.hit_ratio = Gauge("smppd_lease_cache_hit_ratio",
                               "Lease cache hits / lookups since start", registry=registry)
        self.selections = Counter("smppd_routing_selections", "SelectOperator outcomes",
                                  ["result"], registry=registry)

    def observe_lease(self, result: str, outcome: str) -> None:
        self.lease_checks.labels(result).inc()
        self.lease_cache.labels(outcome).inc()

    def track_hit_ratio(self, ratio: Callable[[], float]) -> None:
        self.hit_ratio.set_function(ratio)
