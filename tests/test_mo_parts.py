"""Concatenated MO messages joined from their parts (smppd.mo_parts)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from smppd.dispatch import Dispatcher
from smppd.metrics import Metrics
from smppd.mo_parts import MoParts
from smppd.protocol.constants import Status
from smppd.protocol.pdu import DeliverSm, DeliverSmResp
from smppd.protocol.split import split_message


def parts_of(body: bytes, strategy: str, reference: int = 7,
             source: str = "93700123456") -> list[DeliverSm]:
    return [DeliverSm(source_addr=source, destination_addr="1234", esm_class=p.esm_class,
                      short_message=p.short_message, tlvs=dict(p.tlvs))
            for p in split_message(body, 0, strategy, reference)]  # type: ignore[arg-type]


BODY = b"abcdefghij" * 40  # 400 GSM septets unpacked: three parts


@pytest.mark.parametrize("strategy", ["udh", "sar"])
def test_the_body_comes_once_every_part_is_in_whatever_the_order(strategy: str) -> None:
    mo = MoParts()
    first, second, third = parts_of(BODY, strategy)
    key, body = mo.add("op", third)
    assert key is not None and body is None
    assert mo.add("op", first) == (key, None)
    assert mo.add("op", second) == (key, BODY)


def test_a_message_in_one_piece_has_no_key() -> None:
    pdu = DeliverSm(source_addr="93700123456", destination_addr="1234", short_message=b"hi")
    assert MoParts().add("op", pdu) == (None, b"hi")
    payload = DeliverSm(source_addr="93700123456", destination_addr="1234",
                        tlvs={0x0424: b"long text"})
    assert MoParts().add("op", payload) == (None, b"long text")


def test_parts_stay_until_forgotten_so_a_resent_last_part_completes_again() -> None:
    mo = MoParts()
    first, second, third = parts_of(BODY, "udh")
    mo.add("op", first)
    mo.add("op", second)
    key, body = mo.add("op", third)
    assert body == BODY
    # The event write failed: the SMSC sends the last part again.
    assert mo.add("op", third) == (key, BODY)
    assert key is not None
    mo.forget(key)
    assert len(mo) == 0
    assert mo.add("op", third) == (key, None)  # after forget: a new message begins


def test_same_reference_from_two_senders_or_operators_stays_apart() -> None:
    mo = MoParts()
    a1, a2, a3 = parts_of(BODY, "udh", source="93700000001")
    b1, _, _ = parts_of(b"z" * 400, "udh", source="93700000002")
    for pdu in (a1, b1, a2):
        mo.add("op", pdu)
    mo.add("other", a1)
    assert mo.add("op", a3)[1] == BODY
    assert len(mo) == 3


def test_incomplete_messages_beyond_the_bound_are_dropped_oldest_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mo = MoParts(max_partial=2)
    oldest, middle, newest = (parts_of(BODY, "udh", reference=r) for r in (1, 2, 3))
    with caplog.at_level(logging.WARNING, logger="smppd.mo_parts"):
        for parts in (oldest, middle, newest):
            mo.add("op", parts[0])
    assert len(mo) == 2
    assert [r.__dict__.get("event") for r in caplog.records] == ["mo_parts_dropped"]
    assert "93700123456" not in caplog.text  # no MSISDN in a log line
    assert mo.add("op", oldest[1])[1] is None and mo.add("op", oldest[2])[1] is None
    assert mo.add("op", newest[1])[1] is None
    assert mo.add("op", newest[2])[1] == BODY


class FlakySink:
    """An event sink whose next write fails once when told to."""

    def __init__(self) -> None:
        self.fail_next = False
        self.published: list[dict[str, object]] = []

    async def publish(self, kind: str, event: dict[str, object]) -> None:
        await self.publish_many(kind, [event])

    async def publish_many(self, kind: str, events: list[dict[str, object]]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("the store is gone for a moment")
        self.published += events


class Answers:
    """A connection that keeps the deliver_sm_resp it is asked to send."""

    def __init__(self) -> None:
        self.statuses: list[int] = []

    def respond(self, request: DeliverSm, response: DeliverSmResp) -> None:
        self.statuses.append(response.command_status)


async def test_a_failed_mo_write_is_answered_for_redelivery_and_keeps_the_parts() -> None:
    sink = FlakySink()
    dispatcher = Dispatcher(None, None, sink, Metrics())
    conn, op = Answers(), SimpleNamespace(id="op")
    first, second, third = parts_of(BODY, "sar")
    sink.fail_next = True
    for pdu in (first, second, third):  # one burst: one batch
        dispatcher.deliver_received(op, conn, pdu)  # type: ignore[arg-type]
    await dispatcher.settle()
    # The SMSC sees a transient error for the batch and sends the parts again.
    assert conn.statuses == [Status.ESME_RX_T_APPN] * 3 and sink.published == []
    dispatcher.deliver_received(op, conn, third)  # type: ignore[arg-type]
    await dispatcher.settle()
    assert conn.statuses[3:] == [Status.ESME_ROK]
    assert [e["text"] for e in sink.published] == [BODY.decode()]
    assert len(dispatcher.inbound.mo_parts) == 0
