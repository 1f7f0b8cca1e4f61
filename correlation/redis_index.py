"""The Redis hot correlation index: (operator, normalised SMSC id) -> (message, part, total).

A cache in front of ``smpp.message_correlations``: PostgreSQL is the truth. Entries
live at least as long as a message's validity period (default 7 days), so a receipt
for any message still in flight is found here, shared by every replica.

Redis trouble never fails a caller: a failed call marks the index down for
``retry_after`` seconds, and meanwhile reads answer None (look in PostgreSQL) and
writes do nothing, so a dead Redis costs one failed call per interval. Callers share
a pool of ``max_connections`` connections and wait (up to ``pool_timeout``) for a free
one, so a burst of concurrent lookups queues instead of failing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import redis.asyncio as redis
from redis.exceptions import RedisError

from correlation.store import PartRef

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 7 * 24 * 3600
DEFAULT_PREFIX = "smppd:corr:"
DEFAULT_MAX_CONNECTIONS = 32
# SET with a TTL for each key: one command for the batch. A pipeline of SETs costs
# redis-py ~15 µs of Python per key, this ~2 µs.
_PUT_MANY = """
local ttl = ARGV[1]
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ttl) end
return #KEYS
"""


class RedisIndex:
    """One scripted multi-SET with a TTL per batch of submits and one MGET per batch
    of lookups (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        timeout: float = 0.5,
        retry_after: float = 5.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        self._client = redis.Redis.from_pool(pool)  # the client owns the pool: closes it
        self._put = self._client.register_script(_PUT_MANY)
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._retry_after = retry_after
        self._clock = clock
        self._down_until = 0.0

    @property
    def available(self) -> bool:
        """False while a recent failure keeps the index switched off."""
        return self._clock() >= self._down_until

    def key(self, operator_id: str, smsc_key: str) -> str:
        return f"{self._prefix}{operator_id}:{smsc_key}"

    async def close(self) -> None:
        await self._client.aclose()

    async def put_many(self, entries: Sequence[tuple[str, str, PartRef]]) -> bool:
        """Store (operator_id, smsc_key, part) entries in one round trip; False if skipped
        or failed."""
        if not entries or not self.available:
            return False
        keys = [self.key(operator_id, smsc_key) for operator_id, smsc_key, _ in entries]
        values = [_encode(ref) for _, _, ref in entries]
        try:
            await self._put(keys=keys, args=[self._ttl, *values])
        except (RedisError, OSError) as exc:
            self._fail(exc)
            return False
        return True

    async def get(self, operator_id: str, keys: Sequence[str]) -> PartRef | None:
        """The part stored under the first of ``keys`` present, or None (absent or down)."""
        return (await self.get_many(operator_id, [keys]))[0]

    async def get_many(
        self, operator_id: str, key_sets: Sequence[Sequence[str]]
    ) -> list[PartRef | None]:
        """``get`` for each key set, in one MGET; all None while Redis is down."""
        answers: list[PartRef | None] = [None] * len(key_sets)
        names = [self.key(operator_id, k) for keys in key_sets for k in keys]
        if not names or not self.available:
            return answers
        try:
            values = await self._client.mget(names)
        except (RedisError, OSError) as exc:
            self._fail(exc)
            return answers
        start = 0
        for i, keys in enumerate(key_sets):
            value = next((v for v in values[start : start + len(keys)] if v is not None), None)
            answers[i] = None if value is None else _decode(value)
            start += len(keys)
        return answers

    def _fail(self, exc: BaseException) -> None:
        if self.available:  # log once per outage interval, not once per call
            log.warning("redis index unavailable, using PostgreSQL: %s", exc)
        self._down_until = self._clock() + self._retry_after


def _encode(ref: PartRef) -> str:
    # The message id goes last: it may hold any character, part and total never do.
    return f"{ref.part}:{ref.total}:{ref.message_id}"


def _decode(value: bytes | str) -> PartRef:
    text = value.decode() if isinstance(value, bytes) else value
    part, total, message_id = text.split(":", 2)
    return PartRef(message_id, int(part), int(total))
