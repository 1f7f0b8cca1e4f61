"""ValidateLease: may this tenant send from this sender id? Fail-closed.

Lookup: cache (Redis, logical DB 7 by default; an in-process dict in embedded mode),
then the database (PostgreSQL ``numbering.sender_ids``, or SQLite). Absent senders are
cached too (negative caching, shorter TTL). A cache that does not answer is a miss;
when the database does not answer either the answer is ``UNAVAILABLE`` and
``allowed = false``. Invalidation: ``invalidate()`` (the webhook, admin changes) and
the NATS subject ``num.cache.invalidate.v1``.

Nothing here logs a sender id (it may be an MSISDN).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol

log = logging.getLogger("control.leases")

INVALIDATE_SUBJECT = "num.cache.invalidate.v1"
SENDER_KINDS = ("MSISDN", "SHORT_CODE", "ALPHANUMERIC")
STATES = ("ACTIVE", "SUSPENDED", "QUARANTINED", "RELEASED")
_NEGATIVE = b"-"  # cached "not registered"


class Reason(StrEnum):
    OK = "OK"
    NOT_REGISTERED = "NOT_REGISTERED"
    WRONG_TENANT = "WRONG_TENANT"
    LEASE_SUSPENDED = "LEASE_SUSPENDED"
    QUARANTINE_ACTIVE = "QUARANTINE_ACTIVE"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class Lease:
    sender: str
    tenant_id: str
    kind: str = "ALPHANUMERIC"
    state: str = "ACTIVE"
    quarantine_until: float | None = None  # epoch seconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LeaseResult:
    allowed: bool
    reason_code: Reason
    lease: Lease | None
    source: str  # "cache", "database" or "none"

    def to_dict(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "reason_code": str(self.reason_code),
                "lease": self.lease.to_dict() if self.lease is not None else None}


def normalize_sender(sender: str) -> str:
    """MSISDN senders are keyed without their '+'; other forms as given."""
    sender = sender.strip()
    return sender[1:] if sender.startswith("+") and sender[1:].isdigit() else sender


def decide(lease: Lease | None, tenant_id: str, now: float) -> Reason:
    """The reason code for a (possibly absent) lease. Pure.

    A quarantine binds every tenant, the one that released the sender included; a
    released sender, or one whose quarantine has ended, is leased to nobody.
    """
    if lease is None or lease.state == "RELEASED":
        return Reason.NOT_REGISTERED
    if lease.state == "QUARANTINED":
        if lease.quarantine_until is None or now < lease.quarantine_until:
            return Reason.QUARANTINE_ACTIVE
        return Reason.NOT_REGISTERED
    if lease.tenant_id != tenant_id:
        return Reason.WRONG_TENANT
    if lease.state == "SUSPENDED":
        return Reason.LEASE_SUSPENDED
    return Reason.OK


# --------------------------------------------------------------------------- caches


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...

    async def delete(self, keys: list[str]) -> None: ...

    async def delete_prefix(self, prefix: str) -> None: ...

    async def close(self) -> None: ...


class MemoryCache:
    """The embedded cache: a dict with expiry times (clock injected)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = 200_000) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self._items: dict[str, tuple[float, bytes]] = {}

    async def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self.clock():
            del self._items[key]
            return None
        return item[1]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        if len(self._items) >= self.max_entries:
            self._items.clear()  # crude but bounded; the database still answers
        self._items[key] = (self.clock() + ttl, value)

    async def delete(self, keys: list[str]) -> None:
        for key in keys:
            self._items.pop(key, None)

    async def delete_prefix(self, prefix: str) -> None:
        for key in [k for k in self._items if k.startswith(prefix)]:
            del self._items[key]

    async def close(self) -> None:
        self._items.clear()


class RedisCache:
    """Redis (redis.asyncio) with short timeouts, so a dead Redis is a quick miss."""

    def __init__(self, url: str, db: int = 7, timeout: float = 0.25) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(
            url, db=db, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry_on_timeout=False)

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(key)
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._redis.set(key, value, px=max(1, int(ttl * 1000)))

    async def delete(self, keys: list[str]) -> None:
        if keys:
            await self._redis.delete(*keys)

    async def delete_prefix(self, prefix: str) -> None:
        batch: list[bytes] = []
        async for key in self._redis.scan_iter(match=prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await self._redis.delete(*batch)
                batch = []
        if batch:
            await self._redis.delete(*batch)

    async def close(self) -> None:
        await self._redis.aclose()


# --------------------------------------------------------------------------- service


class LeaseSource(Protocol):
    async def lease(self, sender: str) -> Lease | None: ...


def _encode(lease: Lease | None) -> bytes:
    return _NEGATIVE if lease is None else json.dumps(asdict(lease)).encode()


def _decode(raw: bytes) -> Lease | None:
    return None if raw == _NEGATIVE else Lease(**json.loads(raw))


class LeaseService:
    """ValidateLease with a cache in front of a database; never raises on IO errors."""

    def __init__(self, source: LeaseSource, cache: Cache, *, ttl: float = 300.0,
                 negative_ttl: float = 30.0, key_prefix: str = "smppd:lease:",
                 clock: Callable[[], float] = time.time,
                 observe: Callable[[str, str], None] | None = None) -> None:
        self.source = source
        self.cache = cache
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.key_prefix = key_prefix
        self.clock = clock
        self.observe = observe  # (reason_code, "hit" | "miss") -> metrics
        self.hits = 0
        self.misses = 0

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def key(self, sender: str) -> str:
        return self.key_prefix + sender

    async def validate(self, sender: str, tenant_id: str) -> LeaseResult:
        sender = normalize_sender(sender)
        found, lease = await self._cached(sender)
        source = "cache"
        if not found:
            try:
                lease = await self.source.lease(sender)
            except Exception as exc:  # fail-closed: any database failure denies
                log.warning("lease database unavailable",
                            extra={"event": "lease_unavailable", "error": type(exc).__name__})
                return self._result(LeaseResult(False, Reason.UNAVAILABLE, None, "none"), False)
            source = "database"
            await self._store(sender, lease)
        reason = decide(lease, tenant_id, self.clock())
        return self._result(LeaseResult(reason is Reason.OK, reason, lease, source), found)

    def _result(self, result: LeaseResult, hit: bool) -> LeaseResult:
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        if self.observe is not None:
            self.observe(str(result.reason_code), "hit" if hit else "miss")
        return result

    async def _cached(self, sender: str) -> tuple[bool, Lease | None]:
        try:
            raw = await self.cache.get(self.key(sender))
        except Exception as exc:  # a cache that does not answer is a miss
            log.debug("lease cache get failed", extra={"event": "lease_cache_error",
                                                       "error": type(exc).__name__})
            return False, None
        if raw is None:
            return False, None
        try:
            return True, _decode(raw)
        except (ValueError, TypeError):
            return False, None

    async def _store(self, sender: str, lease: Lease | None) -> None:
        ttl = self.ttl if lease is not None else self.negative_ttl
        try:
            await self.cache.set(self.key(sender), _encode(lease), ttl)
        except Exception as exc:
            log.debug("lease cache set failed", extra={"event": "lease_cache_error",
                                                       "error": type(exc).__name__})

    async def invalidate(self, senders: Iterable[str] = (), everything: bool = False) -> int:
        """Drop cached answers; returns how many keys were named (all: -1)."""
        try:
            if everything:
                await self.cache.delete_prefix(self.key_prefix)
                return -1
            keys = [self.key(normalize_sender(s)) for s in senders]
            await self.cache.delete(keys)
            return len(keys)
        except Exception as exc:
            log.warning("lease cache invalidation failed",
                        extra={"event": "lease_cache_error", "error": type(exc).__name__})
            raise


# --------------------------------------------------------------------------- NATS


def parse_invalidation(data: bytes) -> tuple[list[str], bool, bool]:
    """A num.cache.invalidate.v1 payload -> (senders, all leases, routing).

    Accepted: {"sender": "..."}, {"senders": [...]}, {"all": true}, {"routing": true},
    or a bare sender id as text.
    """
    try:
        body = json.loads(data)
    except ValueError:
        text = data.decode("utf-8", "replace").strip()
        return ([text] if text else []), False, False
    if isinstance(body, str):
        return [body], False, False
    if not isinstance(body, dict):
        return [], False, False
    senders = body.get("senders") or []
    if isinstance(body.get("sender"), str):
        senders = [*senders, body["sender"]]
    senders = [s for s in senders if isinstance(s, str)]
    return senders, body.get("all") is True, body.get("routing") is True


InvalidationHandler = Callable[[list[str], bool, bool], Awaitable[None]]


class NatsInvalidation:
    """Subscribes to ``num.cache.invalidate.v1`` and hands each message to a handler."""

    def __init__(self, url: str, handler: InvalidationHandler,
                 subject: str = INVALIDATE_SUBJECT) -> None:
        self.url = url
        self.handler = handler
        self.subject = subject
        self._nc: Any = None
        self.received = 0

    async def start(self) -> None:
        import nats

        self._nc = await nats.connect(self.url, connect_timeout=2, max_reconnect_attempts=-1,
                                      allow_reconnect=True, name="smppd-lease-invalidation")
        await self._nc.subscribe(self.subject, cb=self._on_message)
        await self._nc.flush()

    async def _on_message(self, msg: Any) -> None:
        senders, everything, routing = parse_invalidation(msg.data)
        try:
            await self.handler(senders, everything, routing)
            self.received += 1
        except Exception:
            log.exception("cache invalidation failed", extra={"event": "invalidation_failed"})

    async def stop(self) -> None:
        if self._nc is not None:
            with_suppress = self._nc
            self._nc = None
            try:
                await asyncio.wait_for(with_suppress.drain(), 2.0)
            except Exception:
                await with_suppress.close()
