"""Exponential back-off with jitter above a minimum, for reconnects.

Delay n (from 0) is uniform in [base, min(cap, base * factor**(n + 1))): never
shorter than ``base`` (a configured ``reconnect_min`` is a minimum for every retry),
and jittered from the first retry on, which spreads many clients reconnecting to the
same SMSC instead of having them retry in step.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        *,
        factor: float = 2.0,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not (0.0 < base <= cap and factor >= 1.0):
            raise ValueError("need 0 < base <= cap and factor >= 1")
        self._base = base
        self._cap = cap
        self._factor = factor
        self._random = random
        self._ceiling = self._first_ceiling()

    def _first_ceiling(self) -> float:
        return min(self._cap, self._base * self._factor)

    @property
    def ceiling(self) -> float:
        """Upper bound of the next delay."""
        return self._ceiling

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; each call raises the ceiling."""
        delay = self._base + self._random() * (self._ceiling - self._base)
        self._ceiling = min(self._cap, self._ceiling * self._factor)
        return delay

    def reset(self) -> None:
        """After a success: start again from `base`."""
        self._ceiling = self._first_ceiling()
