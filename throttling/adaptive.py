"""Adaptive back-off on SMSC throttling errors (ESME_RTHROTTLED, ESME_RMSGQFUL).

AIMD, as TCP does it: a throttling error halves the allowed rate and pauses sending
for a moment; each second of successful responses then adds back a small share of
the configured limit, never going above it. The hard TPS ceiling stays with the
wrapped limiter; this only ever asks it for less.
"""

from __future__ import annotations

import asyncio
import time

from throttling.bucket import Clock, RateLimiter, Sleep


class AdaptiveRate:
    """A RateLimiter that wraps another and backs off when the SMSC pushes back.

    The daemon calls `throttled()` on ESME_RTHROTTLED / ESME_RMSGQFUL and
    `not_throttled()` on successful responses, and paces sends through `acquire()`
    (or checks `allow_request()` / `throttle_delay()` itself).

    - decrease: factor applied to the rate on a throttling error (0.5 halves it).
    - min_rate, min_fraction: the rate never drops below max(min_rate,
      min_fraction * limit), nor above the limit.
    - recovery: share of the limit added back per second of successes.
    - pause: seconds to stop sending after a throttling error.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        *,
        decrease: float = 0.5,
        min_rate: float = 1.0,
        min_fraction: float = 0.05,
        recovery: float = 0.05,
        pause: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not 0.0 < decrease < 1.0:
            raise ValueError(f"decrease must be in (0, 1), got {decrease!r}")
        if recovery <= 0.0 or pause < 0.0:
            raise ValueError("recovery must be > 0 and pause >= 0")
        self._limiter = limiter
        self._decrease = decrease
        self._min_rate = min_rate
        self._min_fraction = min_fraction
        self._recovery = recovery
        self._pause = pause
        self._clock = clock
        self._sleep = sleep
        now = clock()
        self._paused_until = now
        self._last_success = now

    # -- the throttle handler (naz's names) ---------------------------------------

    def allow_request(self) -> bool:
        """False while paused after a throttling error."""
        return self._clock() >= self._paused_until

    def throttle_delay(self) -> float:
        """Seconds left in the current pause (0.0 when not paused)."""
        return max(0.0, self._paused_until - self._clock())

    def throttled(self) -> None:
        """The SMSC said slow down: cut the rate and pause."""
        now = self._clock()
        if now < self._paused_until:
            return  # more errors from submits already in flight: one cut is enough
        self._limiter.set_rate(max(self.floor, self._limiter.rate * self._decrease))
        self._paused_until = now + self._pause
        self._last_success = self._paused_until

    def not_throttled(self) -> None:
        """A successful response: win back rate for the time since the last one."""
        now = self._clock()
        if now < self._paused_until:
            return
        # Capped at one second, so an idle spell does not count as a run of successes.
        elapsed = min(now - self._last_success, 1.0)
        self._last_success = now
        rate, limit = self._limiter.rate, self._limiter.limit
        if rate < limit:
            self._limiter.set_rate(min(limit, rate + self._recovery * limit * elapsed))

    @property
    def floor(self) -> float:
        """The lowest rate a cut can reach."""
        limit = self._limiter.limit
        return min(limit, max(self._min_rate, self._min_fraction * limit))

    # -- RateLimiter ------------------------------------------------------------------

    async def acquire(self) -> None:
        while (pause := self.throttle_delay()) > 0.0:
            await self._sleep(pause)
        await self._limiter.acquire()

    def try_acquire(self) -> float:
        pause = self.throttle_delay()
        return pause if pause > 0.0 else self._limiter.try_acquire()

    @property
    def rate(self) -> float:
        return self._limiter.rate

    @property
    def limit(self) -> float:
        return self._limiter.limit

    def set_limit(self, tps: float) -> None:
        self._limiter.set_limit(tps)

    def set_rate(self, tps: float) -> None:
        self._limiter.set_rate(tps)
