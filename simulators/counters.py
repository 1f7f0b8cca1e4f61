"""Per-account TPS enforcement and counters, on aligned one-second windows.

The window of a submit is ``floor(clock())``: at most ``tps`` submits are accepted
in each one; the rest are throttled. Per-second counts of accepted and throttled
submits are kept for the last ``history`` seconds so a test can prove that a client
never went over its limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any


class AccountCounters:
    """TPS limiter and per-second history of one account."""

    def __init__(self, tps: int, history: int = 3600) -> None:
        self.tps = tps
        self.history = history
        self.accepted: dict[int, int] = {}
        self.throttled: dict[int, int] = {}
        self._second = -1
        self._count = 0

    def admit(self, now: float) -> bool:
        """Count one submit at ``now``: True if accepted, False if over the TPS limit."""
        second = math.floor(now)
        if second != self._second:
            self._second = second
            self._count = self.accepted.get(second, 0)
        if self._count >= self.tps:
            self.throttled[second] = self.throttled.get(second, 0) + 1
            self._prune(self.throttled)
            return False
        self._count += 1
        self.accepted[second] = self._count
        if len(self.accepted) > self.history:
            self._prune(self.accepted)
        return True

    def _prune(self, counts: dict[int, int]) -> None:
        while len(counts) > self.history:
            del counts[next(iter(counts))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tps": self.tps,
            "max_accepted_per_second": max(self.accepted.values(), default=0),
            "accepted": {str(s): n for s, n in self.accepted.items()},
            "throttled": {str(s): n for s, n in self.throttled.items()},
        }


@dataclass(slots=True)
class Totals:
    """Running totals of one MNO."""

    binds: int = 0
    bind_refusals: int = 0
    alybnd_refusals: int = 0
    submits: int = 0  # submit_sm received
    accepted: int = 0
    throttled: int = 0
    queue_full: int = 0
    receipts_sent: int = 0  # handed to a bind (a redelivery after a drop counts again)
    receipts_dropped: int = 0  # no receiving bind and the waiting queue was full
    mo_sent: int = 0
    deliver_sm_resp_errors: int = 0
    redeliveries: int = 0  # deliver_sm sent again after an ESME_RX_T_APPN
    per_account: dict[str, AccountCounters] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        totals = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "per_account"}
        return {
            "totals": totals,
            "accounts": {sid: c.to_dict() for sid, c in self.per_account.items()},
        }
