"""The composition root: ``build(config)`` makes every part of the daemon and hands
each its collaborators through its constructor.

The order follows what needs what: the store and the matcher; the event sink (NATS,
the store, or nothing in shadow mode), fed through the webhook outbox; the control
plane's seams (routing, leases, circuits) and the dispatcher that uses them; then
the operators, which report to the dispatcher, in a dict the dispatcher reads.
Nothing here does I/O: opening, connecting and binding happen in ``smppd.runtime.lifecycle``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from control.plane import ControlPlane
from control.routing import Circuits
from correlation.matcher import ReceiptMatcher
from correlation.sqlite_store import SqliteStore
from correlation.store import CorrelationStore
from smppd.cluster.nats_bus import NatsBus
from smppd.config import Config
from smppd.intake.dispatch import Dispatcher
from smppd.intake.events import EventSink, ShadowSink, StoredEvents
from smppd.intake.submissions import Submissions
from smppd.link.credentials import VaultCredentials
from smppd.link.operator import Operator
from smppd.metrics import Metrics
from smppd.runtime import control_wiring
from smppd.runtime.api_server import ApiServer
from smppd.runtime.fleet import Fleet, Running
from smppd.runtime.notify import Notifier
from smppd.runtime.reload import Reloader
from smppd.runtime.statusboard import StatusBoard
from smppd.webhooks.delivery import CallbackGuard, Tenants, WebhookSink
from smppd.webhooks.worker import Deliverer

if TYPE_CHECKING:
    from redis.asyncio import Redis


@dataclass(frozen=True)
class Components:
    """Every part of one daemon, built and wired, none started."""

    metrics: Metrics
    store: CorrelationStore
    matcher: ReceiptMatcher
    bus: NatsBus | None  # the NATS connection: an event sink and the command intake
    sink: EventSink
    webhooks: Deliverer | None  # the outbox worker (None in shadow mode)
    redis: Redis | None
    vault: VaultCredentials | None
    circuits: Circuits
    control: ControlPlane
    dispatcher: Dispatcher
    submissions: Submissions
    fleet: Fleet
    reloader: Reloader
    notifier: Notifier
    board: StatusBoard
    server: ApiServer


def build(config: Config, *, store: CorrelationStore | None = None,
          sink: EventSink | None = None, notifier: Notifier | None = None) -> Components:
    """The daemon's parts for ``config``; ``store``, ``sink`` and ``notifier`` replace
    the ones the config names (tests)."""
    metrics = Metrics()
    running = Running(config)
    server = ApiServer(config)
    if store is None:
        store = make_store(config)
    matcher = ReceiptMatcher(store, clock=time.time,
                             hold_seconds=config.store.receipt_hold_seconds)
    bus: NatsBus | None = None
    if sink is None and config.nats is not None:
        bus = NatsBus(config.nats, shadow=config.daemon.shadow)
        sink = bus
    if sink is None:
        sink = ShadowSink() if config.daemon.shadow else StoredEvents(store)
    webhooks: Deliverer | None = None
    callback_check = None
    if not isinstance(sink, ShadowSink):  # shadow mode publishes nothing: no webhooks either
        webhooks = Deliverer(store, lambda: running.config, metrics)
        sink = WebhookSink(sink, store, Tenants(lambda: running.config),
                           combined=isinstance(sink, StoredEvents), on_queued=webhooks.take,
                           lease=webhooks.lease)
        callback_check = CallbackGuard(lambda: running.config, lambda: server.port)
    redis = make_redis(config)
    vault: VaultCredentials | None = None
    if config.vault is not None and any(op.credentials for op in config.operators):
        vault = VaultCredentials(config.vault, config.operators,
                                 poll_interval=config.vault.poll_interval)
    operators: dict[str, Operator] = {}  # filled by the fleet, read by the dispatcher
    routing = config.routing
    circuits = Circuits(routing.circuit_failures, routing.circuit_cooldown)
    control = control_wiring.build(config, metrics.registry, lambda: operators, circuits)
    dispatcher = Dispatcher(
        store, matcher, sink, metrics, operators=operators,
        selector=control_wiring.selector(control), circuit=circuits.record,
        lease_check=control_wiring.lease_check(control) if config.leases is not None else None,
        callback_check=callback_check, max_unrecorded=config.store.max_unrecorded)
    fleet = Fleet(running, dispatcher, store, metrics, operators=operators, redis=redis,
                  vault=vault, bus=bus)
    notifier = Notifier() if notifier is None else notifier
    board = StatusBoard(lambda: operators, unmatched=lambda op_id: unmatched(metrics, op_id),
                        held=lambda: matcher.held_count)
    return Components(
        metrics=metrics, store=store, matcher=matcher, bus=bus, sink=sink,
        webhooks=webhooks, redis=redis,
        vault=vault, circuits=circuits, control=control, dispatcher=dispatcher,
        submissions=Submissions(dispatcher, store), fleet=fleet,
        reloader=Reloader(fleet, store, notifier), notifier=notifier, board=board,
        server=server)


def make_store(config: Config) -> CorrelationStore:
    """SQLite in embedded mode; PostgreSQL (+ the Redis hot index) when distributed."""
    if config.store.kind == "postgres":
        from correlation.pg_store import PgStore

        assert config.store.dsn is not None  # the config's own rule
        redis_url = config.redis.url.get_secret_value() if config.redis else None
        prefix = f"{config.redis.key_prefix}:corr:" if config.redis else "smppd:corr:"
        return PgStore(config.store.dsn.get_secret_value(), redis_url=redis_url,
                       redis_prefix=prefix)
    path = Path(config.sqlite_path)
    # The state directory for the daemon's user only (systemd's StateDirectory= is
    # 0700 too); the store's files are made 0600 by SqliteStore.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return SqliteStore(str(path))


def make_redis(config: Config) -> Redis | None:
    """The client of [redis] (buckets, leader leases); it connects on first use."""
    if config.redis is None:
        return None
    import redis.asyncio as aioredis

    client: Redis = aioredis.from_url(config.redis.url.get_secret_value(),
                                      socket_timeout=1.0, socket_connect_timeout=1.0)
    return client


def unmatched(metrics: Metrics, operator_id: str) -> float:
    """Receipts of the operator that matched no submit, so far (the status page)."""
    return sum(s.value for m in metrics.unmatched.collect() for s in m.samples
               if s.name.endswith("_total") and s.labels.get("operator") == operator_id)
