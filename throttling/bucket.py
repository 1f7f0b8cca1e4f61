"""In-process TPS limiter: one GCRA token bucket per operator, shared by all its binds.

The guarantee: the grants never exceed the rate in ANY one-second window, sliding
or aligned, i.e. every half-open window [t, t+1) holds at most max(1, floor(rate))
grants, measured on the injected clock.

How: GCRA (virtual scheduling). A "theoretical arrival time" (TAT) moves on by the
emission interval T with each grant; a send is allowed once now >= TAT - tolerance,
with tolerance = (burst - 1) * T. If grants t_1 < ... < t_n happen, then
t_n - t_1 >= (n - 1) * T - tolerance. With K = floor(rate) and the sustained pace
S = K - burst + 1 grants per second (T = 1/S), n = K + 1 grants would need
t_n - t_1 >= S * T = 1 s, so no window [t, t+1) ever holds K + 1 grants. With the
default burst of 1 the pace is K per second with no bursts at all; a larger burst
buys back-to-back sends by lowering the sustained pace by the same amount.
Fractional rates are rounded down (2.5 TPS is paced at 2, since 3 sends in one second
would exceed 2.5); a rate below 1 paces one send every 1/rate seconds.

Time is kept in whole nanoseconds, converted exactly from the clock's float, and T is
rounded up plus 1 ns, so float rounding can never squeeze two grants into a window.
The guarantee holds on our clock; network jitter can still bunch sends at the SMSC,
which is what `headroom` is for (0.02 paces at 98 % of the limit).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

Clock = Callable[[], float]
"""Monotonic seconds; `time.monotonic` in production, a fake in tests."""

Sleep = Callable[[float], Awaitable[None]]
"""`asyncio.sleep`-like: wait this many seconds."""

_NS = 1_000_000_000


class RateLimiter(Protocol):
    """The seam the daemon paces submits through (in-process now, Redis GCRA later)."""

    async def acquire(self) -> None:
        """Wait until one send is allowed, and take it."""
        ...

    def try_acquire(self) -> float:
        """Take one send now and return 0.0, or return the seconds to wait (> 0)."""
        ...

    @property
    def rate(self) -> float:
        """Current allowed TPS: the limit, or less after `set_rate` (adaptive back-off)."""
        ...

    @property
    def limit(self) -> float:
        """Configured TPS."""
        ...

    def set_limit(self, tps: float) -> None:
        """Change the configured TPS at runtime; also resets `rate` to it."""
        ...

    def set_rate(self, tps: float) -> None:
        """Lower (or restore) the allowed TPS, clamped to `limit`."""
        ...


def _to_ns(seconds: float) -> int:
    # Exact floor(seconds * 1e9): no float rounding at window boundaries.
    num, den = seconds.as_integer_ratio()
    return num * _NS // den


def _check_tps(tps: float) -> None:
    if not (tps > 0 and math.isfinite(tps)):
        raise ValueError(f"TPS must be a positive finite number, got {tps!r}")


def _check_headroom(headroom: float) -> None:
    if not 0.0 <= headroom < 1.0:
        raise ValueError(f"headroom must be in [0, 1), got {headroom!r}")


class PacedLimit:
    """What every bucket keeps: the configured limit, the rate it paces at now (at
    most the limit) and the headroom. Each change is checked, then ``_pace`` applies it."""

    def __init__(self, rate: float, headroom: float) -> None:
        _check_tps(rate)
        _check_headroom(headroom)
        self._limit = rate
        self._rate = rate
        self._headroom = headroom

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def limit(self) -> float:
        return self._limit

    def set_limit(self, tps: float) -> None:
        _check_tps(tps)
        self._limit = tps
        self.set_rate(tps)

    def set_rate(self, tps: float) -> None:
        _check_tps(tps)
        self._rate = min(tps, self._limit)
        self._pace()

    def set_headroom(self, headroom: float) -> None:
        _check_headroom(headroom)
        self._headroom = headroom
        self._pace()

    def _pace(self) -> None:
        raise NotImplementedError


class TokenBucket(PacedLimit):
    """GCRA limiter; see the module docstring for the one-second-window proof.

    `burst`: sends allowed back to back after an idle spell (default 1, no bursts).
    It lowers the sustained pace to floor(rate) - burst + 1 so the window guarantee
    still holds, and is capped at floor(rate). `headroom`: the fraction of the rate
    kept unused as a safety margin against jitter (0.02 paces at 98 %).
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        headroom: float = 0.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(rate, headroom)
        if burst is not None and not (burst >= 1 and burst == int(burst)):
            raise ValueError(f"burst must be a whole number >= 1, got {burst!r}")
        self._burst = int(burst or 1)
        self._clock = clock
        self._sleep = sleep
        self._waiters = asyncio.Lock()  # acquire() callers queue here, first come first served
        self._interval = 0
        self._tolerance = 0
        self._pace()
        # As if the last grant was one interval ago: the first send goes at once.
        self._tat = _to_ns(clock()) - self._interval

    @property
    def interval(self) -> float:
        """Seconds between grants at the sustained pace."""
        return self._interval / _NS

    @property
    def burst(self) -> int:
        """Back-to-back sends allowed now (the configured burst, capped at the rate)."""
        return self._tolerance // self._interval + 1

    def try_acquire(self) -> float:
        now = _to_ns(self._clock())
        allowed_at = self._tat - self._tolerance
        if now < allowed_at:
            # +1 ns so that sleeping exactly this long lands on or after allowed_at.
            return (allowed_at - now + 1) / _NS
        self._tat = max(self._tat, now) + self._interval
        return 0.0

    async def acquire(self) -> None:
        # Only the head of the queue polls, so one grant wakes one waiter.
        async with self._waiters:
            while (wait := self.try_acquire()) > 0.0:
                await self._sleep(wait)

    def _pace(self) -> None:
        target = self._rate * (1.0 - self._headroom)
        if target >= 1.0:
            per_second = math.floor(target)
            burst = min(self._burst, per_second)
            sustained: float = per_second - burst + 1
        else:
            burst, sustained = 1, target
        interval = math.ceil(_NS / sustained) + 1
        # Keep the last grant's slot start (TAT - old interval) and re-pace from it:
        # a lower rate pushes the next send later, a higher one brings it forward.
        if self._interval:
            self._tat += interval - self._interval
        self._interval = interval
        self._tolerance = (burst - 1) * interval
