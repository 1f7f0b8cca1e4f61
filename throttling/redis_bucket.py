"""One TPS budget per operator across every replica: GCRA in Redis.

A Lua script keeps the operator's theoretical arrival time (TAT) in one key and
reads the time from Redis itself, so every replica is paced on one clock and no
two grants are closer than 1/rate apart: the same one-second-window guarantee as
the in-process ``TokenBucket`` (see bucket.py), across replicas.

At high rates one round trip per message would cap throughput, so ``acquire``
reserves a few consecutive slots at once and hands them out locally at their
times; the spacing between slots is still decided in Redis. Locally, two grants
are never closer than one interval, and a slot is dropped once it is more than one
interval past (or headroom / 2 seconds, 10 ms at 0.02, if that is longer): after a
stall of the event loop the slots that fell due meanwhile would otherwise go out
back to back, a burst the SMSC counts in one second.

If Redis cannot be reached, the replica falls back to a local bucket at a
conservative share (``limit / replicas``), and every switch between Redis and the
local bucket first waits one second, so no one-second window ever mixes grants of
both modes and the budget holds through the outage.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from typing import Any

from throttling.bucket import Clock, PacedLimit, Sleep, TokenBucket

log = logging.getLogger("throttling.redis")

# KEYS[1]: the TAT key. ARGV: interval (µs), slots wanted, key TTL (ms).
# Returns {first slot (µs, Redis clock), slots granted, Redis now (µs)}.
GCRA_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local wanted = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
redis.call('SET', KEYS[1], tat + wanted * interval, 'PX', ARGV[3])
return {tat, wanted, now}
"""

SWITCH_PAUSE = 1.0  # seconds: no window may hold grants of both modes
MAX_SLOTS = 50  # reserved at once at most
AHEAD = 0.05  # seconds of slots reserved per round trip at high rates
PROBE_INTERVAL = 5.0  # seconds between looks for Redis while degraded


class RedisTokenBucket(PacedLimit):
    """A RateLimiter whose pace is shared through Redis by every replica."""

    def __init__(
        self,
        redis: Any,
        key: str,
        rate: float,
        *,
        replicas: int = 2,
        headroom: float = 0.02,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(rate, headroom)
        if replicas < 1:
            raise ValueError("replicas must be at least 1")
        self._redis = redis
        self._key = key
        self._replicas = replicas
        self._clock = clock
        self._sleep = sleep
        self._script = redis.register_script(GCRA_RESERVE)
        self._slots: collections.deque[float] = collections.deque()  # local monotonic times
        self._last_grant = -math.inf  # local time of the last grant from a slot
        self.stale_slots = 0  # slots dropped because they were past by an interval
        self._lock = asyncio.Lock()
        self._local: TokenBucket | None = None  # set while Redis is unreachable
        self._paused_until = 0.0
        self._next_probe = 0.0
        self.redis_errors = 0

    # -- RateLimiter --

    @property
    def degraded(self) -> bool:
        """True while pacing on the local share because Redis is unreachable."""
        return self._local is not None

    def _pace(self) -> None:
        self._slots.clear()  # slots were reserved at the old pace
        if self._local is not None:
            self._local.set_limit(self._local_share())

    def try_acquire(self) -> float:
        now = self._clock()
        if now < self._paused_until:
            return self._paused_until - now
        if self._local is not None:
            return self._local.try_acquire()
        slots = self._slots
        spacing = self._spacing()
        if slots:
            # A slot used late may meet another replica's next slots; up to half the
            # headroom late (10 ms at 0.02), the budget still holds in every second.
            stale = max(spacing, self._headroom / 2)
            while slots and now - slots[0] > stale:
                slots.popleft()
                self.stale_slots += 1
        if slots:
            wait = max(slots[0], self._last_grant + spacing) - now
            if wait <= 0:
                slots.popleft()
                self._last_grant = now
                return 0.0
            return wait
        return self._interval()  # nothing reserved: acquire() fetches more

    async def acquire(self) -> None:
        async with self._lock:
            if self._local is not None and self._clock() >= self._next_probe:
                await self.probe()
            while True:
                wait = self.try_acquire()
                if wait <= 0:
                    return
                if self._local is None and not self._slots and self._clock() >= self._paused_until:
                    await self._reserve()
                    continue
                await self._sleep(wait)

    # -- internals --

    def _interval(self) -> float:
        return 1.0 / self._paced_rate()

    def _spacing(self) -> float:
        """The interval as Redis spaces slots (whole µs, rounded up, plus one)."""
        return (math.ceil(1_000_000 * self._interval()) + 1) / 1_000_000

    def _paced_rate(self) -> float:
        target = self._rate * (1.0 - self._headroom)
        return math.floor(target) if target >= 1.0 else target

    def _local_share(self) -> float:
        return max(self._paced_rate() / self._replicas, 0.01)

    async def _reserve(self) -> None:
        interval_us = math.ceil(1_000_000 * self._interval()) + 1
        wanted = max(1, min(MAX_SLOTS, int(AHEAD * self._paced_rate())))
        ttl_ms = max(2000, 2 * wanted * interval_us // 1000)
        try:
            first, granted, redis_now = await self._script(
                keys=[self._key], args=[interval_us, wanted, ttl_ms])
        except Exception as exc:  # ConnectionError, TimeoutError, ... from redis-py
            self._fall_back(exc)
            return
        now = self._clock()
        offset = (int(first) - int(redis_now)) / 1_000_000
        self._slots.extend(now + offset + i * interval_us / 1_000_000 for i in range(int(granted)))

    def _fall_back(self, exc: Exception) -> None:
        self.redis_errors += 1
        log.warning("redis unreachable: pacing on the local share",
                    extra={"event": "bucket_fallback", "key": self._key, "error": str(exc)})
        self._local = TokenBucket(self._local_share(), clock=self._clock, sleep=self._sleep)
        self._paused_until = self._clock() + SWITCH_PAUSE
        self._next_probe = self._clock() + PROBE_INTERVAL
        self._slots.clear()

    async def probe(self) -> bool:
        """While degraded: back on Redis once it answers (after the switch pause)."""
        if self._local is None:
            return True
        try:
            await self._redis.ping()
        except Exception:
            self._next_probe = self._clock() + PROBE_INTERVAL
            return False
        self._local = None
        self._paused_until = self._clock() + SWITCH_PAUSE
        log.info("redis back: pacing on the shared budget",
                 extra={"event": "bucket_restored", "key": self._key})
        return True
