"""What the status page shows (GET /v1/status): operators and binds, submit and
receipt rates against the TPS limit, queue and spill depth, unmatched receipts and
the last errors.

Rates come from the plain counters the binds and the dispatcher keep already
(``bind.sent``, ``op.counters["receipts"]``), sampled once a second by the daemon's
housekeeping and at each request, so the page costs the send path nothing. Operators
and binds are as ``GET /v1/operators`` shows them (a bind's ``last_error_since`` is
its own, epoch seconds); the last errors are the daemon's WARNING-or-worse log
records (a failing bind logs one per reason).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from smppd.runtime.logs import mask_msisdns

if TYPE_CHECKING:
    from smppd.link.operator import Operator

RATE_WINDOW = 5.0  # seconds the rates are averaged over
KEEP_ERRORS = 20


def rfc3339(wall: float) -> str:
    """2026-12-03T09:15:02.123Z"""
    stamp = datetime.fromtimestamp(wall, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


class RecentLog(logging.Handler):
    """The last WARNING-or-worse log records, for the page's "last errors"."""

    def __init__(self, keep: int = KEEP_ERRORS) -> None:
        super().__init__(logging.WARNING)
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = mask_msisdns(record.getMessage())
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)
        detail = getattr(record, "error", None)
        if detail:
            message = f"{message}: {mask_msisdns(str(detail))}"
        self.records.append({
            "at": rfc3339(record.created), "wall": record.created,
            "level": record.levelname, "event": getattr(record, "event", None),
            "operator": getattr(record, "operator", None), "bind": getattr(record, "bind", None),
            "message": message,
        })


class StatusBoard:
    def __init__(self, operators: Callable[[], Mapping[str, Operator]], *,
                 unmatched: Callable[[str], float], held: Callable[[], int],
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.operators = operators
        self.unmatched = unmatched
        self.held = held
        self.clock = clock
        self.wall = wall
        self.started_at = wall()
        # (monotonic time, {operator: (submits, receipts)}), oldest first
        self._samples: collections.deque[tuple[float, dict[str, tuple[int, int]]]] = (
            collections.deque())
        self.log = RecentLog()

    def attach(self, *loggers: str) -> None:
        for name in loggers:
            logging.getLogger(name).addHandler(self.log)

    def detach(self, *loggers: str) -> None:
        for name in loggers:
            logging.getLogger(name).removeHandler(self.log)

    def sample(self) -> None:
        now = self.clock()
        counts = {op.id: (sum(b.sent for b in op.binds), op.counters["receipts"])
                  for op in self.operators().values()}
        self._samples.append((now, counts))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW:
            self._samples.popleft()

    def _rates(self) -> dict[str, tuple[float, float]]:
        if len(self._samples) < 2:
            return {}
        (t0, first), (t1, last) = self._samples[0], self._samples[-1]
        span = t1 - t0
        if span <= 0:
            return {}
        rates = {}
        for op_id, (sent, receipts) in last.items():
            sent0, receipts0 = first.get(op_id, (sent, receipts))
            rates[op_id] = (round((sent - sent0) / span, 1),
                            round((receipts - receipts0) / span, 1))
        return rates

    def snapshot(self, statuses: list[dict[str, Any]]) -> dict[str, Any]:
        """The page's data; ``statuses`` are the operators as /v1/operators shows them."""
        if not self._samples or self.clock() - self._samples[-1][0] >= 0.5:
            self.sample()
        rates = self._rates()
        operators = []
        totals = {"submit_rate": 0.0, "receipt_rate": 0.0, "tps_limit": 0.0, "queued": 0,
                  "spilled": 0, "in_flight": 0, "unmatched": 0}
        for status in statuses:
            submit_rate, receipt_rate = rates.get(status["id"], (0.0, 0.0))
            unmatched = int(self.unmatched(status["id"]))
            operators.append({**status, "submit_rate": submit_rate,
                              "receipt_rate": receipt_rate, "receipts_unmatched": unmatched})
            totals["submit_rate"] += submit_rate
            totals["receipt_rate"] += receipt_rate
            totals["tps_limit"] += status.get("tps_limit", 0.0)
            totals["unmatched"] += unmatched
            for key in ("queued", "spilled", "in_flight"):
                totals[key] += status.get(key, 0)
        totals["submit_rate"] = round(totals["submit_rate"], 1)
        totals["receipt_rate"] = round(totals["receipt_rate"], 1)
        errors = sorted(self.log.records, key=lambda e: e["wall"], reverse=True)
        now = self.wall()
        return {
            "time": rfc3339(now),
            "started_at": rfc3339(self.started_at),
            "uptime_seconds": round(now - self.started_at, 1),
            "rate_window_seconds": RATE_WINDOW,
            "totals": {**totals, "receipts_held": self.held()},
            "operators": operators,
            "errors": [{k: v for k, v in e.items() if k != "wall"} for e in errors],
        }
