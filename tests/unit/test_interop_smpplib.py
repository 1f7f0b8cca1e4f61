"""Our codec and session against smpplib, an independent SMPP implementation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import smpplib.client
import smpplib.command
import smpplib.smpp

from smppd.link.connection import BaseHandler, SmppConnection
from smppd.protocol import pdu as p
from smppd.protocol.constants import ESM_DELIVERY_RECEIPT, Status, Tag
from smppd.protocol.session import Role, Session
from smppd.protocol.window import Pending


def smpplib_parse(data: bytes) -> Any:
    # a sequence kwarg keeps smpplib from asking its (absent) client for one
    return smpplib.smpp.parse_pdu(data, sequence=0, allow_unknown_opt_params=True)


def smpplib_make(command: str, sequence: int, **fields: Any) -> bytes:
    pdu = smpplib.smpp.make_pdu(command, sequence=0, **fields)
    pdu.sequence = sequence  # make_pdu ignores the sequence kwarg
    data: bytes = pdu.generate()
    return data


def ours(data: bytes) -> p.Pdu:
    pdu, consumed = p.decode(data)
    assert pdu is not None and consumed == len(data)
    return pdu


# --- our bytes, smpplib's parser -------------------------------------------------------


def test_smpplib_parses_our_bind() -> None:
    wire = p.encode(p.BindTransceiver(sequence_number=1, system_id="esme", password="pw",
                                      system_type="VMS", addr_ton=1, addr_npi=1))
    parsed = smpplib_parse(wire)
    assert parsed.command == "bind_transceiver" and parsed.sequence == 1
    assert (parsed.system_id, parsed.password, parsed.system_type) == (b"esme", b"pw", b"VMS")
    assert (parsed.interface_version, parsed.addr_ton, parsed.addr_npi) == (0x34, 1, 1)


def test_smpplib_parses_our_bind_resp_with_tlv() -> None:
    wire = p.encode(p.BindTransceiverResp(sequence_number=1, system_id="SMSC",
                                          tlvs={Tag.SC_INTERFACE_VERSION: b"\x34"}))
    parsed = smpplib_parse(wire)
    assert parsed.command == "bind_transceiver_resp"
    assert parsed.system_id == b"SMSC" and parsed.sc_interface_version == 0x34


def test_smpplib_parses_our_submit_sm_with_tlvs() -> None:
    wire = p.encode(p.SubmitSm(
        sequence_number=77, source_addr_ton=5, source_addr="Roshan", dest_addr_ton=1,
        dest_addr_npi=1, destination_addr="93700123456", esm_class=0x40, registered_delivery=1,
        data_coding=8, short_message="سلام".encode("utf-16-be"),
        tlvs={Tag.USER_MESSAGE_REFERENCE: p.int_tlv(42, 2), Tag.SAR_MSG_REF_NUM: p.int_tlv(7, 2),
              Tag.SAR_TOTAL_SEGMENTS: b"\x02", Tag.SAR_SEGMENT_SEQNUM: b"\x01"}))
    parsed = smpplib_parse(wire)
    assert parsed.command == "submit_sm" and parsed.sequence == 77 and parsed.status == 0
    assert (parsed.source_addr_ton, parsed.source_addr) == (5, b"Roshan")
    assert (parsed.dest_addr_ton, parsed.dest_addr_npi, parsed.destination_addr) == (
        1, 1, b"93700123456")
    assert (parsed.esm_class, parsed.registered_delivery, parsed.data_coding) == (0x40, 1, 8)
    assert parsed.short_message.decode("utf-16-be") == "سلام"
    assert (parsed.user_message_reference, parsed.sar_msg_ref_num) == (42, 7)
    assert (parsed.sar_total_segments, parsed.sar_segment_seqnum) == (2, 1)


def test_smpplib_parses_our_receipt() -> None:
    text = b"id:5f3a9c sub:001 dlvrd:001 submit date:2501011200 done date:2501011201 stat:DELIVRD"
    wire = p.encode(p.DeliverSm(
        sequence_number=9, source_addr="93700123456", destination_addr="Roshan",
        esm_class=ESM_DELIVERY_RECEIPT, short_message=text,
        tlvs={Tag.RECEIPTED_MESSAGE_ID: p.cstr_tlv("5f3a9c"), Tag.MESSAGE_STATE: b"\x02"}))
    parsed = smpplib_parse(wire)
    assert parsed.command == "deliver_sm" and parsed.esm_class == ESM_DELIVERY_RECEIPT
    assert parsed.short_message == text
    assert parsed.receipted_message_id == b"5f3a9c" and parsed.message_state == 2


@pytest.mark.parametrize(
    ("pdu", "command"),
    [
        (p.EnquireLink(sequence_number=3), "enquire_link"),
        (p.EnquireLinkResp(sequence_number=3), "enquire_link_resp"),
        (p.Unbind(sequence_number=4), "unbind"),
        (p.UnbindResp(sequence_number=4), "unbind_resp"),
        (p.GenericNack(sequence_number=5, command_status=Status.ESME_RINVCMDID), "generic_nack"),
        (p.SubmitSmResp(sequence_number=6, message_id="abc123"), "submit_sm_resp"),
        (p.DeliverSmResp(sequence_number=6), "deliver_sm_resp"),
        (p.QuerySm(sequence_number=7, message_id="abc123", source_addr="Roshan"), "query_sm"),
    ],
)
def test_smpplib_parses_our_small_pdus(pdu: p.Pdu, command: str) -> None:
    parsed = smpplib_parse(p.encode(pdu))
    assert (parsed.command, parsed.sequence, parsed.status) == (
        command, pdu.sequence_number, pdu.command_status)
    if isinstance(pdu, p.SubmitSmResp):
        assert parsed.message_id == b"abc123"
    if isinstance(pdu, p.QuerySm):
        assert (parsed.message_id, parsed.source_addr) == (b"abc123", b"Roshan")


# --- smpplib's bytes, our decoder ----------------------------------------------------------


def test_we_decode_smpplib_bind() -> None:
    wire = smpplib_make("bind_transmitter", 1, system_id="esme", password="secret",
                        system_type="", addr_ton=5, addr_npi=0, address_range="")
    expected = p.BindTransmitter(sequence_number=1, system_id="esme", password="secret",
                                 addr_ton=5)
    assert ours(wire) == expected
    assert p.encode(expected) == wire


def test_we_decode_smpplib_submit_sm_with_tlvs() -> None:
    wire = smpplib_make("submit_sm", 12, service_type="", source_addr_ton=5, source_addr_npi=0,
                        source_addr="Roshan", dest_addr_ton=1, dest_addr_npi=1,
                        destination_addr="93700123456", registered_delivery=1, data_coding=0,
                        short_message=b"Hello world", user_message_reference=42,
                        source_port=0x1234)
    pdu = ours(wire)
    assert pdu == p.SubmitSm(
        sequence_number=12, source_addr_ton=5, source_addr="Roshan", dest_addr_ton=1,
        dest_addr_npi=1, destination_addr="93700123456", registered_delivery=1,
        short_message=b"Hello world",
        tlvs={Tag.USER_MESSAGE_REFERENCE: b"\x00\x2a", Tag.SOURCE_PORT: b"\x12\x34"})
    assert p.encode(pdu) == wire


def test_we_decode_smpplib_deliver_sm_receipt() -> None:
    wire = smpplib_make("deliver_sm", 5, source_addr="93700123456", destination_addr="Roshan",
                        esm_class=ESM_DELIVERY_RECEIPT, short_message=b"id:abc stat:DELIVRD",
                        receipted_message_id="abc", message_state=2)
    pdu = ours(wire)
    assert isinstance(pdu, p.DeliverSm)
    assert pdu.sequence_number == 5 and pdu.esm_class == ESM_DELIVERY_RECEIPT
    assert pdu.short_message == b"id:abc stat:DELIVRD"
    assert p.tlv_cstr(pdu.tlvs, Tag.RECEIPTED_MESSAGE_ID) == "abc"
    assert p.tlv_int(pdu.tlvs, Tag.MESSAGE_STATE) == 2
    assert p.encode(pdu) == wire


@pytest.mark.parametrize(
    ("command", "fields", "expected"),
    [
        ("enquire_link", {}, p.EnquireLink(sequence_number=8)),
        ("enquire_link_resp", {}, p.EnquireLinkResp(sequence_number=8)),
        ("unbind", {}, p.Unbind(sequence_number=8)),
        ("unbind_resp", {}, p.UnbindResp(sequence_number=8)),
        ("generic_nack", {"status": Status.ESME_RINVCMDLEN},
         p.GenericNack(sequence_number=8, command_status=Status.ESME_RINVCMDLEN)),
        ("submit_sm_resp", {"message_id": "0a1b2c"},
         p.SubmitSmResp(sequence_number=8, message_id="0a1b2c")),
        ("bind_transceiver_resp", {"system_id": "SMSC", "sc_interface_version": 0x34},
         p.BindTransceiverResp(sequence_number=8, system_id="SMSC",
                               tlvs={Tag.SC_INTERFACE_VERSION: b"\x34"})),
        ("query_sm_resp", {"message_id": "m1", "final_date": "", "message_state": 2,
                           "error_code": 0},
         p.QuerySmResp(sequence_number=8, message_id="m1", message_state=2)),
    ],
)
def test_we_decode_smpplib_small_pdus(command: str, fields: dict[str, Any],
                                      expected: p.Pdu) -> None:
    wire = smpplib_make(command, 8, **fields)
    assert ours(wire) == expected
    assert p.encode(expected) == wire


# --- live: an smpplib client against an SMSC made of our Session + SmppConnection -----------


class TinySmsc(BaseHandler):
    """Binds anyone, accepts submit_sm, then sends a delivery receipt for it."""

    def __init__(self) -> None:
        self.submitted: list[p.SubmitSm] = []
        self.receipt_answers: list[p.Pdu] = []

    def request_received(self, conn: SmppConnection, pdu: p.Pdu) -> None:
        if isinstance(pdu, p.Bind):
            conn.respond(pdu, pdu.response(system_id="TINY",
                                           tlvs={Tag.SC_INTERFACE_VERSION: b"\x34"}))
        elif isinstance(pdu, p.SubmitSm):
            self.submitted.append(pdu)
            message_id = f"{len(self.submitted):08x}"
            conn.respond(pdu, pdu.response(message_id=message_id))
            conn.send(p.DeliverSm(
                source_addr=pdu.destination_addr, destination_addr=pdu.source_addr,
                esm_class=ESM_DELIVERY_RECEIPT,
                short_message=f"id:{message_id} stat:DELIVRD".encode(),
                tlvs={Tag.RECEIPTED_MESSAGE_ID: p.cstr_tlv(message_id),
                      Tag.MESSAGE_STATE: b"\x02"}))
        else:
            super().request_received(conn, pdu)

    def response_received(self, conn: SmppConnection, pending: Pending, pdu: p.Pdu) -> None:
        self.receipt_answers.append(pdu)


def run_smpplib_client(port: int) -> dict[str, Any]:
    """Blocking smpplib session, run in a worker thread."""
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    received: list[Any] = []
    client.set_message_received_handler(lambda pdu: received.append(pdu))
    client.connect()
    try:
        bind_resp = client.bind_transceiver(system_id="esme", password="pw")
        submitted = client.send_message(source_addr_ton=5, source_addr="Roshan",
                                        dest_addr_ton=1, dest_addr_npi=1,
                                        destination_addr="93700123456",
                                        short_message=b"Hello from smpplib",
                                        registered_delivery=1)
        submit_resp = client.read_pdu()
        client.read_once()  # the receipt, answered with deliver_sm_resp by smpplib
        unbind_resp = client.unbind()
    finally:
        client.disconnect()
    return {"bind": bind_resp, "submitted": submitted, "submit_resp": submit_resp,
            "received": received, "unbind": unbind_resp}


async def test_smpplib_client_against_our_session() -> None:
    loop = asyncio.get_running_loop()
    smsc = TinySmsc()
    conns: list[SmppConnection] = []

    def factory() -> SmppConnection:
        conns.append(SmppConnection(Session(Role.SMSC), smsc))
        return conns[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        result = await asyncio.wait_for(asyncio.to_thread(run_smpplib_client, port), 20)
        closed = await asyncio.wait_for(conns[0].closed, 5)
    finally:
        server.close()
        await server.wait_closed()

    assert result["bind"].command == "bind_transceiver_resp"
    assert result["bind"].system_id == b"TINY" and result["bind"].sc_interface_version == 0x34
    resp = result["submit_resp"]
    assert resp.command == "submit_sm_resp" and resp.status == 0
    assert resp.sequence == result["submitted"].sequence
    assert resp.message_id == b"00000001"
    (receipt,) = result["received"]
    assert receipt.receipted_message_id == b"00000001" and receipt.message_state == 2
    assert result["unbind"].command == "unbind_resp"

    (submitted,) = smsc.submitted
    assert submitted.short_message == b"Hello from smpplib"
    assert (submitted.source_addr, submitted.destination_addr) == ("Roshan", "93700123456")
    assert [type(r) for r in smsc.receipt_answers] == [p.DeliverSmResp]
    assert closed.reason == "peer_unbound"
