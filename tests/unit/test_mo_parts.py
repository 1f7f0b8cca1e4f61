"""Concatenated MO messages joined from their parts (smppd.intake.mo_parts)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from e2e_helpers import open_sqlite

from correlation.sqlite_store import SqliteStore
from smppd.intake.dispatch import Dispatcher
from smppd.intake.mo_parts import Key, MoParts
from smppd.metrics import Metrics
from smppd.protocol.constants import Status
from smppd.protocol.pdu import DeliverSm, DeliverSmResp
from smppd.protocol.split import split_message


def parts_of(body: bytes, strategy: str, reference: int = 7,
             source: str = "93700123456") -> list[DeliverSm]:
    return [DeliverSm(source_addr=source, destination_addr="1234", esm_class=p.esm_class,
                      short_message=p.short_message, tlvs=dict(p.tlvs))
            for p in split_message(body, 0, strategy, reference)]  # type: ignore[arg-type]


BODY = b"abcdefghij" * 40  # 400 GSM septets unpacked: three parts


def add(mo: MoParts, operator_id: str, pdu: DeliverSm) -> tuple[Key | None, bytes | None]:
    added = mo.add(operator_id, pdu, 1.0)
    return added.key, added.body


@pytest.mark.parametrize("strategy", ["udh", "sar"])
def test_the_body_comes_once_every_part_is_in_whatever_the_order(strategy: str) -> None:
    mo = MoParts()
    first, second, third = parts_of(BODY, strategy)
    key, body = add(mo, "op", third)
    assert key is not None and body is None
    assert add(mo, "op", first) == (key, None)
    assert add(mo, "op", second) == (key, BODY)


def test_a_message_in_one_piece_has_no_key() -> None:
    pdu = DeliverSm(source_addr="93700123456", destination_addr="1234", short_message=b"hi")
    assert add(MoParts(), "op", pdu) == (None, b"hi")
    payload = DeliverSm(source_addr="93700123456", destination_addr="1234",
                        tlvs={0x0424: b"long text"})
    assert add(MoParts(), "op", payload) == (None, b"long text")


def test_parts_stay_until_forgotten_so_a_resent_last_part_completes_again() -> None:
    mo = MoParts()
    first, second, third = parts_of(BODY, "udh")
    add(mo, "op", first)
    add(mo, "op", second)
    key, body = add(mo, "op", third)
    assert body == BODY
    # The event write failed: the SMSC sends the last part again.
    assert add(mo, "op", third) == (key, BODY)
    assert key is not None
    mo.forget(key)
    assert len(mo) == 0
    assert add(mo, "op", third) == (key, None)  # after forget: a new message begins


def test_same_reference_from_two_senders_or_operators_stays_apart() -> None:
    mo = MoParts()
    a1, a2, a3 = parts_of(BODY, "udh", source="93700000001")
    b1, _, _ = parts_of(b"z" * 400, "udh", source="93700000002")
    for pdu in (a1, b1, a2):
        add(mo, "op", pdu)
    add(mo, "other", a1)
    assert add(mo, "op", a3)[1] == BODY
    assert len(mo) == 3


def test_incomplete_messages_beyond_the_bound_are_dropped_oldest_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mo = MoParts(max_partial=2)
    oldest, middle, newest = (parts_of(BODY, "udh", reference=r) for r in (1, 2, 3))
    with caplog.at_level(logging.WARNING, logger="smppd.mo_parts"):
        for parts in (oldest, middle, newest):
            add(mo, "op", parts[0])
    assert len(mo) == 2
    assert [r.__dict__.get("event") for r in caplog.records] == ["mo_parts_dropped"]
    assert "93700123456" not in caplog.text  # no MSISDN in a log line
    assert add(mo, "op", oldest[1])[1] is None and add(mo, "op", oldest[2])[1] is None
    assert add(mo, "op", newest[1])[1] is None
    assert add(mo, "op", newest[2])[1] == BODY


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


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with open_sqlite(tmp_path / "smppd.sqlite") as opened:
        yield opened


async def test_a_failed_mo_write_is_answered_for_redelivery_and_keeps_the_parts(
        store: SqliteStore) -> None:
    sink = FlakySink()
    dispatcher = Dispatcher(store, None, sink, Metrics())
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


async def test_parts_are_durable_before_they_are_answered_and_joined_after_a_restart(
        tmp_path: Path) -> None:
    first, second, third = parts_of(BODY, "udh")
    path = str(tmp_path / "smppd.sqlite")
    store = SqliteStore(path)
    await store.open()
    sink, conn, op = FlakySink(), Answers(), SimpleNamespace(id="op")
    dispatcher = Dispatcher(store, None, sink, Metrics())
    for pdu in (first, second):
        dispatcher.deliver_received(op, conn, pdu)  # type: ignore[arg-type]
    await dispatcher.settle()
    assert conn.statuses == [Status.ESME_ROK] * 2  # answered: the SMSC will not resend them
    await store.close()  # the daemon is gone; what it answered is in the file

    async with open_sqlite(path) as store:
        restarted = Dispatcher(store, None, sink, Metrics())
        assert await restarted.inbound.restore_mo_parts() == 2
        restarted.deliver_received(op, conn, third)  # type: ignore[arg-type]
        await restarted.settle()
        assert [e["text"] for e in sink.published] == [BODY.decode()]
        assert await store.load_mo_parts() == []  # forgotten once the event is out


async def test_a_message_left_whole_by_a_crash_is_published_at_start(
        store: SqliteStore) -> None:
    # The last part was stored but the daemon died before the event was out.
    parts = [MoParts().add("op", pdu, 5.0).part for pdu in parts_of(BODY, "sar")]
    await store.put_mo_parts([p for p in parts if p is not None])
    sink = FlakySink()
    dispatcher = Dispatcher(store, None, sink, Metrics())
    assert await dispatcher.inbound.restore_mo_parts() == 3
    assert [(e["text"], e["source"], e["destination"], e["at"]) for e in sink.published] == [
        (BODY.decode(), "93700123456", "1234", 5.0)]
    assert await store.load_mo_parts() == []
