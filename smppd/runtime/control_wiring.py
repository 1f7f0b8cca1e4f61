"""Wiring of the control plane into the daemon: data source, lease cache, health,
and the two in-process seams of the dispatcher (selector, lease check).

Embedded mode: SQLite at {state_dir}/control.sqlite and an in-process cache.
Distributed: PostgreSQL (routing.dsn or store.dsn) and Redis (leases.redis_url or
[redis].url, logical DB leases.redis_db). Without a [leases] section the dispatcher
checks no leases (the /v1/leases/validate endpoint still answers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry

from control.auth import Authenticator, Token
from control.data import ControlData, make_data
from control.leases import Cache, MemoryCache, RedisCache
from control.metrics import ControlMetrics
from control.plane import ControlPlane
from control.routing import Circuits, Health, SelectRequest
from smppd.config import Config
from smppd.intake.message import Outbound
from smppd.link.operator import Operator
from smppd.seams import LeaseCheck, Selector

log = logging.getLogger("smppd.controlplane")  # the name its log lines have always had


def authenticator(config: Config) -> Authenticator:
    return Authenticator(Token(t.name, t.sha256, frozenset(t.roles),
                               None if t.tenants is None else frozenset(t.tenants))
                         for t in config.auth.tokens)


def control_data(config: Config) -> ControlData:
    """Where the routing and lease data live (SQLite or PostgreSQL), not yet opened."""
    dsn = config.routing.dsn or config.store.dsn
    return make_data(config.control_source, dsn=dsn.get_secret_value() if dsn else None,
                     sqlite_path=config.control_sqlite_path)


def build(config: Config, registry: CollectorRegistry,
          operators: Callable[[], Mapping[str, Operator]], circuits: Circuits) -> ControlPlane:
    data = control_data(config)
    leases = config.leases
    cache: Cache
    redis_url = leases.redis_url if leases is not None else None
    if redis_url is None and config.redis is not None:
        redis_url = config.redis.url
    if redis_url is not None:
        cache = RedisCache(redis_url.get_secret_value(),
                           db=leases.redis_db if leases is not None else 7)
    else:
        cache = MemoryCache()
    nats_url = None
    if config.nats is not None and (leases is None or leases.nats_invalidation):
        nats_url = config.nats.url.get_secret_value()

    def health() -> dict[str, Health]:
        return {op.id: Health(configured=True, bound=op.healthy, paused=op.pause_gate.shut,
                              circuit_open=circuits.is_open(op.id))
                for op in operators().values()}

    return ControlPlane(
        data, cache, health=health,
        ttl=leases.cache_ttl if leases is not None else 300.0,
        negative_ttl=leases.negative_ttl if leases is not None else 30.0,
        key_prefix=leases.key_prefix if leases is not None else "smppd:lease:",
        enforce=leases.enforce if leases is not None else False,
        metrics=ControlMetrics(registry), nats_url=nats_url)


async def start(plane: ControlPlane, config: Config) -> None:
    """Migrate (and seed when asked), then load; raises when the data is unreachable."""
    from control.data import migrate

    await migrate(plane.data, seed=config.routing.seed)
    await plane.start()


def selector(plane: ControlPlane) -> Selector:
    def select(msg: Outbound) -> str | None:
        decision = plane.select_now(SelectRequest(msg.destination, msg.tenant_id, msg.source))
        return decision.operator_id if decision is not None else None

    return select


def lease_check(plane: ControlPlane) -> LeaseCheck:
    async def check(sender: str, tenant_id: str) -> tuple[bool, str]:
        result = await plane.validate(sender, tenant_id)
        if not result.allowed and not plane.enforce:
            return True, str(result.reason_code)  # enforce = false: count, let through
        return result.allowed, str(result.reason_code)

    return check
