"""The cluster's sections: [redis] (shared TPS, leader leases), [nats] (dispatch,
receipts, MO) and [leases] (sender leases, ValidateLease)."""

from __future__ import annotations

from pydantic import Field

from smppd.config.fields import NatsUrls, RedisUrl
from smppd.config.sections import Section


class RedisSection(Section):
    url: RedisUrl  # may carry a password
    key_prefix: str = "smppd"  # every key this deployment writes starts with it
    # Replicas sharing each operator's TPS budget: with Redis unreachable each one
    # falls back to limit / replicas, so the budget holds through the outage.
    replicas: int = Field(default=2, ge=1)
    # Active/standby binds: a replica holds an operator's binds only while it owns the
    # lease {key_prefix}:leader:{operator_id} (see smppd.cluster.leader).
    standby: bool = False
    lease_time: float = Field(default=5.0, ge=0.5)  # seconds; renewed every lease_time / 3
    # The lease holder sends the operator's ACCEPTED messages that other replicas
    # accepted or a dead leader held: it looks every sweep_interval seconds, for rows
    # older than sweep_grace (younger ones may be mid-accept here).
    sweep_interval: float = Field(default=3.0, gt=0)
    sweep_grace: float = Field(default=2.0, ge=0)


class NatsSection(Section):
    url: NatsUrls  # may carry user:password; comma-separated for a cluster
    dispatch_stream: str = "SMPP_DISPATCH"  # holds smpp.operator.{operatorId}
    dlr_stream: str = "SMS_DLR"  # holds sms.dlr.inbound
    mo_stream: str = "SMS_MO"  # holds sms.mo.inbound
    # Subjects of the platform contract; override only to run beside another deployment.
    dispatch_subject: str = "smpp.operator"  # commands on {dispatch_subject}.{operatorId}
    invalid_subject: str = "smpp.dispatch.invalid"
    dlr_subject: str = "sms.dlr.inbound"
    mo_subject: str = "sms.mo.inbound"
    consumer: str = "smppd"  # durable pull consumer shared by every replica
    ack_wait: float = Field(default=30.0, gt=0)  # seconds before an unacked command is redelivered
    # Parts queued in memory (all operators) at which intake pauses: the rest of the
    # backlog waits in JetStream, so memory stays bounded however deep the stream is.
    max_queued: int = Field(default=50_000, ge=1)


class LeasesSection(Section):
    """ValidateLease. Without a [leases] section the dispatch path checks no leases."""

    redis_url: RedisUrl | None = None  # None: [redis].url if set, else an in-process cache
    redis_db: int = Field(default=7, ge=0, le=15)
    cache_ttl: float = Field(default=300.0, gt=0)
    negative_ttl: float = Field(default=30.0, gt=0)
    key_prefix: str = "smppd:lease:"
    enforce: bool = True  # false: check and count, but let denied messages through
    nats_invalidation: bool = True  # subscribe to num.cache.invalidate.v1 when [nats] is set
