"""The status board's arithmetic with injected clocks: rates over the last seconds,
totals, warnings from the logs (MSISDNs masked)."""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from typing import Any

from smppd.runtime.statusboard import StatusBoard, rfc3339


@dataclass
class FakeBind:
    name: str
    sent: int = 0
    last_error: str | None = None


@dataclass
class FakeOp:
    id: str
    binds: list[FakeBind]
    counters: collections.Counter[str] = field(default_factory=collections.Counter)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def board_of(ops: dict[str, FakeOp], clock: Clock) -> StatusBoard:
    return StatusBoard(lambda: ops, unmatched=lambda op_id: 3.0 if op_id == "a" else 0.0,  # type: ignore[arg-type,return-value]
                       held=lambda: 2, clock=clock, wall=lambda: 1_796_288_400.0 + clock.now)


def statuses(ops: dict[str, FakeOp]) -> list[dict[str, Any]]:
    return [{"id": op.id, "tps_limit": 10.0, "queued": 1, "spilled": 4, "in_flight": 2,
             "binds": [{"bind": b.name, "last_error": b.last_error} for b in op.binds]}
            for op in ops.values()]


def test_rates_are_per_second_over_the_samples() -> None:
    clock = Clock()
    ops = {"a": FakeOp("a", [FakeBind("a#0"), FakeBind("a#1")])}
    board = board_of(ops, clock)
    first = board.snapshot(statuses(ops))
    assert first["operators"][0]["submit_rate"] == 0.0  # one sample: no rate yet
    for _ in range(3):
        clock.now += 1.0
        ops["a"].binds[0].sent += 6
        ops["a"].binds[1].sent += 4
        ops["a"].counters["receipts"] += 5
        board.sample()
    snap = board.snapshot(statuses(ops))
    op = snap["operators"][0]
    assert (op["submit_rate"], op["receipt_rate"], op["receipts_unmatched"]) == (10.0, 5.0, 3)
    assert snap["totals"] == {"submit_rate": 10.0, "receipt_rate": 5.0, "tps_limit": 10.0,
                              "queued": 1, "spilled": 4, "in_flight": 2, "unmatched": 3,
                              "receipts_held": 2}
    for _ in range(10):  # traffic stops: the rate falls to 0 once the window has passed
        clock.now += 1.0
        board.sample()
    assert board.snapshot(statuses(ops))["operators"][0]["submit_rate"] == 0.0


def test_warnings_from_the_logs_are_listed_masked() -> None:
    clock = Clock()
    board = board_of({}, clock)
    board.attach("smppd.test_board")
    try:
        logger = logging.getLogger("smppd.test_board")
        logger.info("not listed")
        logger.warning("receipt for 93700123456 unmatched",
                       extra={"event": "unmatched", "operator": "a"})
    finally:
        board.detach("smppd.test_board")
    errors = board.snapshot([])["errors"]
    assert [(e["level"], e["event"], e["operator"], e["message"]) for e in errors] == [
        ("WARNING", "unmatched", "a", "receipt for 937******56 unmatched")]


def test_the_error_detail_of_a_record_joins_its_message() -> None:
    board = board_of({}, Clock())
    board.attach("smppd.test_board")
    try:
        logging.getLogger("smppd.test_board").warning(
            "bind failing", extra={"event": "bind_failing", "operator": "a", "bind": "a#0",
                                   "error": "bind refused: ESME_RINVPASWD"})
    finally:
        board.detach("smppd.test_board")
    (error,) = board.snapshot([])["errors"]
    assert error["message"] == "bind failing: bind refused: ESME_RINVPASWD"
    assert error["bind"] == "a#0"


def test_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(0.5) == "1970-01-01T00:00:00.500Z"
