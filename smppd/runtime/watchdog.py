"""systemd liveness: pet the watchdog only while the event loop is responsive.

A task sleeps one period (a third of WatchdogSec) at a time and measures how late
it woke up. A loop that runs its callbacks on time pets the watchdog (WATCHDOG=1,
with the STATUS line); a loop that woke up late by more than ``max_lag`` does not,
and a blocked loop never wakes up at all, so systemd's WatchdogSec runs out and it
kills the process (Restart=on-failure brings it back).

Also here: the per-second message rate and the one-line STATUS summary.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger("smppd.watchdog")

DEFAULT_PERIOD = 2.0  # seconds between STATUS updates when systemd set no watchdog


def watchdog_period(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """A third of WatchdogSec from WATCHDOG_USEC, or None when no watchdog is set for us."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner.isdigit() and int(owner) != (os.getpid() if pid is None else pid):
        return None  # the variable was meant for another process (our parent)
    return int(usec) / 1e6 / 3


class LoopWatchdog:
    """Calls ``pet(status)`` every ``period`` seconds while the loop keeps time.

    ``on_lag(lag)`` is called instead when the loop woke up ``max_lag`` seconds or
    more late. ``sleep`` and ``clock`` are injectable so tests need no real waits.
    """

    def __init__(
        self,
        period: float,
        pet: Callable[[], None],
        *,
        max_lag: float | None = None,
        on_lag: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.period = period
        self.max_lag = period / 2 if max_lag is None else max_lag
        self.pet = pet
        self.on_lag = on_lag
        self.clock = clock
        self.sleep = sleep
        self.last_lag = 0.0
        self.pets = 0
        self.misses = 0

    def check(self, lag: float) -> bool:
        """Pet or hold back after one period that took ``period + lag`` seconds."""
        self.last_lag = lag
        if lag < self.max_lag:
            self.pets += 1
            self.pet()
            return True
        self.misses += 1
        log.warning("event loop lagging: watchdog not petted",
                    extra={"event": "loop_lag", "lag": round(lag, 3)})
        if self.on_lag is not None:
            self.on_lag(lag)
        return False

    async def run(self) -> None:
        while True:
            started = self.clock()
            await self.sleep(self.period)
            self.check(max(0.0, self.clock() - started - self.period))


class RateMeter:
    """Events per second over the last interval, from a monotonically growing total."""

    def __init__(self) -> None:
        self.rate = 0.0
        self._last: tuple[float, float] | None = None

    def update(self, now: float, total: float) -> float:
        if self._last is not None and now > self._last[0]:
            last_now, last_total = self._last
            self.rate = max(0.0, total - last_total) / (now - last_now)
        self._last = (now, total)
        return self.rate


def status_line(bound: int, operators: int, rate: float) -> str:
    """'5/5 operators bound, 1,240 msg/s' for systemctl status."""
    return f"{bound}/{operators} operators bound, {rate:,.0f} msg/s"
