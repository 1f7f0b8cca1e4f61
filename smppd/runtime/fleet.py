"""The operators this replica runs: made from the config, started, stopped, and
their counters brought to the metrics.

One ``operators`` dict, shared with the dispatcher (routing sees an operator a
reload adds or removes at once). In active/standby mode (``[redis] standby``) an
operator's binds follow its leader lease (``standbys``), and with NATS each
operator's commands reach its leader only (its own consumer, see
``smppd.cluster.nats_bus``). ``smppd.runtime.reload`` applies a new config through this object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from correlation.store import CorrelationStore
from smppd.cluster.leader import LeaderLease, Standby
from smppd.cluster.nats_bus import NatsBus
from smppd.config import Config, OperatorConfig
from smppd.intake.dispatch import Dispatcher
from smppd.link.credentials import VaultCredentials
from smppd.link.operator import Operator
from smppd.metrics import Metrics
from smppd.runtime.watchdog import RateMeter, status_line

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from throttling.redis_bucket import RedisTokenBucket

log = logging.getLogger("smppd.daemon")  # its records keep the name they had


@dataclass
class Running:
    """The config in force: a reload swaps it here, and what follows reloads reads it
    at each use (the fleet, the API, the webhooks)."""

    config: Config


class Fleet:
    """The operators, with what they are made from."""

    def __init__(self, running: Running, dispatcher: Dispatcher, store: CorrelationStore,
                 metrics: Metrics, *, operators: dict[str, Operator],
                 redis: Redis | None = None, vault: VaultCredentials | None = None,
                 bus: NatsBus | None = None) -> None:
        self.running = running
        self.dispatcher = dispatcher
        self.store = store
        self.metrics = metrics
        self.operators = operators
        self.redis = redis
        self.vault = vault
        self.bus = bus
        self.standbys: dict[str, Standby] = {}
        self.rate = RateMeter()  # submit_sm per second, for STATUS=
        self._exported: dict[tuple[str, str], int] = {}  # (metric, bind) -> count exported
        for op_cfg in running.config.operators:
            op = self.make_operator(op_cfg)
            self.operators[op.id] = op

    @property
    def config(self) -> Config:
        return self.running.config

    @config.setter
    def config(self, config: Config) -> None:
        self.running.config = config

    # -- making and running operators --

    def password_source(self, cfg: OperatorConfig) -> Callable[[], str | None]:
        if self.vault is not None and self.vault.uses_vault(cfg.id):
            return self.vault.password_source(cfg.id)
        return cfg.password_value

    def make_operator(self, cfg: OperatorConfig) -> Operator:
        op = Operator(cfg, self.dispatcher, password=self.password_source(cfg),
                      limiter=self._shared_bucket(cfg))
        if self.config.redis is not None and self.config.redis.standby:
            self.standbys[op.id] = self._standby(op)
        return op

    def start_operator(self, op: Operator) -> None:
        """Bring an operator's binds up: at once, or (active/standby) once its lease
        is ours. At start and for an operator a reload adds."""
        if op.config.tls and not op.config.tls_verify:
            log.warning("TLS certificate verification is off for this operator: anyone on "
                        "the path can pose as its SMSC", extra={
                            "event": "tls_verify_off", "operator": op.id})
        self.show_limit(op)
        standby = self.standbys.get(op.id)
        if standby is not None:
            standby.start()
        else:
            op.start()

    async def add(self, cfg: OperatorConfig) -> Operator:
        """An operator a reload added: made, routed to, started."""
        await self.follow_intake(cfg.id)  # standby mode: its own NATS consumer
        op = self.make_operator(cfg)
        self.operators[op.id] = op
        self.start_operator(op)  # standby mode: once its lease is ours
        return op

    def runs_binds(self, op_id: str) -> bool:
        """Whether the operator's binds run here now: always, unless it is in
        active/standby mode and this replica does not hold its lease."""
        standby = self.standbys.get(op_id)
        return standby is None or bool(standby.leader)

    async def stop_binds(self) -> None:
        """Unbind every operator (active/standby: leave its lease too), in reverse."""
        drain = self.config.daemon.drain_timeout
        await asyncio.gather(*(standby.close() for standby in reversed(self.standbys.values())))
        await asyncio.gather(*(op.stop(drain) for op in reversed(self.operators.values())))

    async def retire(self, op_id: str) -> None:
        """An operator a reload removed, once its binds are down: stop following its
        lease and release it if it is ours (peers need not wait for it to expire), and
        drop its TPS limit series."""
        standby = self.standbys.pop(op_id, None)
        if standby is not None:
            await standby.close()
            if self.bus is not None:
                await self._retire_intake(op_id, standby.lease)
        with contextlib.suppress(KeyError):
            self.metrics.tps_limit.remove(op_id)

    def _shared_bucket(self, op_cfg: OperatorConfig) -> RedisTokenBucket | None:
        """The operator's cluster-wide bucket in Redis; None keeps it in-process."""
        if self.redis is None or self.config.redis is None:
            return None
        from throttling.redis_bucket import RedisTokenBucket

        key = f"{self.config.redis.key_prefix}:bucket:{op_cfg.id}"
        return RedisTokenBucket(self.redis, key, op_cfg.tps, replicas=self.config.redis.replicas,
                                headroom=op_cfg.tps_margin)

    def _standby(self, op: Operator) -> Standby:
        """Active/standby: the operator's binds follow its leader lease in Redis, and
        the leader sends every ACCEPTED message of the operator, whoever accepted it."""
        from smppd.cluster.leader import BacklogSweep, OperatorLead

        redis = self.config.redis
        assert redis is not None
        lease = LeaderLease(self.redis, f"{redis.key_prefix}:leader:{op.id}", redis.lease_time)
        op.track_queued()  # the sweep skips what this replica queued itself
        sweep = BacklogSweep(op, self.store, self.dispatcher.queue_stored,
                             interval=redis.sweep_interval, grace=redis.sweep_grace)
        intake = None
        if self.bus is not None:  # the operator's commands reach its leader only
            from smppd.cluster.nats_bus import OperatorIntake

            intake = OperatorIntake(self.bus, op.id, self.dispatcher)
        lead = OperatorLead(op, sweep, intake=intake)
        standby = Standby(lease, op.id, lead.start, lead.stop, idle=lead.idle)
        op.bind_guard = standby.may_bind  # fencing check right before each bind PDU
        return standby

    # -- the operators' NATS consumers (active/standby) --

    @property
    def intake_per_operator(self) -> bool:
        """Active/standby over NATS: each operator's commands go to its leader only."""
        return self.bus is not None and self.config.redis is not None and \
            self.config.redis.standby

    async def prepare_intake(self) -> None:
        """Active/standby: every operator's own consumer exists before the shared one
        starts leaving commands to it. Active/active: one an active/standby run left
        is drained into the usual flow and deleted (replicas switch mode together)."""
        assert self.bus is not None
        for op_id in self.operators:
            if self.intake_per_operator:
                await self.bus.cover(op_id)
            else:
                await self.bus.retire_operator(op_id, self.dispatcher)

    async def follow_intake(self, op_id: str) -> None:
        """An operator a reload added: its own consumer exists before its lease is
        looked at. If NATS fails here the shared consumer keeps taking its commands
        (stored ACCEPTED, the leader's sweep sends them) until its leader makes it."""
        if self.bus is None or not self.intake_per_operator:
            return
        try:
            await self.bus.cover(op_id)
        except Exception:
            log.exception("operator consumer not made", extra={
                "event": "nats_consumer_failed", "operator": op_id})

    async def _retire_intake(self, op_id: str, lease: LeaderLease) -> None:
        """A removed operator's own consumer: the shared one takes (refuses) its
        commands from now on; whoever can take its lease drains and deletes it. A
        peer holding the lease still runs the operator: its own reload does it."""
        assert self.bus is not None
        self.bus.covered.pop(op_id, None)
        try:
            if not await lease.acquire():
                return
        except Exception:  # Redis away: the consumer stays for the next removal
            return
        try:
            await self.bus.retire_operator(op_id, self.dispatcher)
        except Exception:
            log.exception("operator consumer not deleted", extra={
                "event": "nats_consumer_failed", "operator": op_id})
        finally:
            with contextlib.suppress(Exception):
                await lease.release()

    # -- metrics and status --

    def show_limit(self, op: Operator) -> None:
        """smppd_tps_limit: the operator's limit now (at start, after a change)."""
        self.metrics.tps_limit.labels(op.id).set(op.limiter.limit)

    def sample(self) -> None:
        """Once a second: gauges of the queues and buckets, counters, the submit rate."""
        self.export_counters()
        for op in self.operators.values():
            self.metrics.bucket_rate.labels(op.id).set(op.limiter.rate)
            self.metrics.queued.labels(op.id).set(len(op.queue))
            for bind in op.binds:
                self.metrics.window_in_use.labels(op.id, bind.name).set(bind.window_in_use)
        self.rate.update(time.monotonic(), self._submits_total())

    def summary(self) -> str:
        """systemd's STATUS=: operators bound, submits per second."""
        up = sum(1 for op in self.operators.values() if op.healthy)
        return status_line(up, len(self.operators), self.rate.rate)

    def _submits_total(self) -> float:
        return sum(s.value for m in self.metrics.submits.collect() for s in m.samples
                   if s.name.endswith("_total"))

    def export_counters(self) -> None:
        """Bring the submit and bind-attempt metrics up to the binds' plain counts
        (kept as ints on the send path, where a labelled metric costs too much)."""
        for op in self.operators.values():
            for bind in op.binds:
                for name, metric, count in (
                    ("submits", self.metrics.submits.labels(op.id), bind.sent),
                    ("attempts", self.metrics.bind_attempts.labels(op.id, bind.name),
                     bind.attempts),
                    ("stalls", self.metrics.bind_stalls.labels(op.id, bind.name),
                     bind.stalls),
                ):
                    key = (name, bind.name)
                    delta = count - self._exported.get(key, 0)
                    if delta > 0:
                        metric.inc(delta)
                        self._exported[key] = count
