"""Inbound: what the daemon does with deliver_sm it cannot use."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import FakeClock
from prometheus_client import CollectorRegistry

from smppd.intake.inbound import UNPARSEABLE_LOG_PERIOD, Inbound
from smppd.metric_children import MetricChildren
from smppd.metrics import Metrics
from smppd.protocol.constants import ESM_DELIVERY_RECEIPT, Status
from smppd.protocol.pdu import DeliverSm


class Conn:
    def __init__(self) -> None:
        self.answers: list[int] = []

    def respond(self, pdu: DeliverSm, resp: Any) -> None:
        self.answers.append(resp.command_status)


def garbage(n: int) -> DeliverSm:
    return DeliverSm(sequence_number=n, esm_class=ESM_DELIVERY_RECEIPT,
                     short_message=b"\x00\xff not a receipt")


async def test_garbage_receipts_are_answered_and_logged_once_per_period(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def spawn(coro: Any) -> asyncio.Task[Any]:
        return asyncio.ensure_future(coro)

    metrics = Metrics(CollectorRegistry())
    inbound = Inbound(None, None, None, metrics,  # type: ignore[arg-type]
                       MetricChildren(), clock,  # type: ignore[arg-type]
                      operators=dict, spawn=spawn, workers=1)
    op: Any = SimpleNamespace(id="hostile")
    conn = Conn()
    caplog.set_level(logging.WARNING, logger="smppd.dispatch")
    await inbound._deliver_batch(op, [(conn, garbage(i)) for i in range(500)])
    clock.advance(UNPARSEABLE_LOG_PERIOD)
    await inbound._deliver_batch(op, [(conn, garbage(i)) for i in range(3)])
    assert conn.answers == [Status.ESME_ROK] * 503  # each answered, none sent again
    logged = [r for r in caplog.records if getattr(r, "event", "") == "receipt_unparseable"]
    assert [(r.levelno, r.suppressed) for r in logged] == [  # type: ignore[attr-defined]
        (logging.WARNING, 0), (logging.WARNING, 499)]
    assert metrics.unmatched.labels("hostile")._value.get() == 503
