"""The PDU codec against hex written by hand from the SMPP v3.4 specification.

Each vector's hex is laid out header first (command_length, command_id,
command_status, sequence_number), then one group per mandatory field, then TLVs
as tag, length, value.
"""

from __future__ import annotations

import pytest

from smppd.protocol import pdu as p
from smppd.protocol.constants import CommandId, Status, Tag
from smppd.protocol.errors import (
    InvalidCommandLengthError,
    MalformedPduError,
    PduDecodeError,
    PduEncodeError,
    UnknownCommandError,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


GOLDEN: list[tuple[p.Pdu, str]] = [
    (
        p.GenericNack(sequence_number=1, command_status=Status.ESME_RINVCMDID),
        "00000010 80000000 00000003 00000001",
    ),
    (
        p.BindTransmitter(sequence_number=1, system_id="smppclient1", password="password"),
        "0000002a 00000002 00000000 00000001"
        " 736d7070636c69656e743100"  # system_id "smppclient1"
        " 70617373776f726400"  # password "password"
        " 00"  # system_type ""
        " 34 00 00"  # interface_version 3.4, addr_ton, addr_npi
        " 00",  # address_range ""
    ),
    (
        p.BindTransmitterResp(sequence_number=1, system_id="SMSC",
                              tlvs={Tag.SC_INTERFACE_VERSION: b"\x34"}),
        "0000001a 80000002 00000000 00000001"
        " 534d534300"  # system_id "SMSC"
        " 0210 0001 34",  # sc_interface_version 0x34
    ),
    (
        p.BindReceiver(sequence_number=2, system_id="rx", password="pw", system_type="VMS",
                       addr_ton=1, addr_npi=1, address_range="^93"),
        "00000021 00000001 00000000 00000002"
        " 727800 707700 564d5300"  # "rx", "pw", "VMS"
        " 34 01 01"
        " 5e393300",  # "^93"
    ),
    (
        p.BindReceiverResp(sequence_number=2, system_id="SMSC"),
        "00000015 80000001 00000000 00000002 534d534300",
    ),
    (
        p.BindTransceiver(sequence_number=3, system_id="esme", password="secret", addr_ton=5),
        "00000021 00000009 00000000 00000003"
        " 65736d6500 73656372657400 00"  # "esme", "secret", ""
        " 34 05 00"
        " 00",
    ),
    (
        p.BindTransceiverResp(sequence_number=3, command_status=Status.ESME_RINVPASWD),
        "00000011 80000009 0000000e 00000003 00",
    ),
    (
        p.Outbind(sequence_number=4, system_id="SMSC", password="pw"),
        "00000018 0000000b 00000000 00000004 534d534300 707700",
    ),
    (p.Unbind(sequence_number=5), "00000010 00000006 00000000 00000005"),
    (p.UnbindResp(sequence_number=5), "00000010 80000006 00000000 00000005"),
    (p.EnquireLink(sequence_number=6), "00000010 00000015 00000000 00000006"),
    (p.EnquireLinkResp(sequence_number=6), "00000010 80000015 00000000 00000006"),
    (
        p.SubmitSm(sequence_number=7, source_addr_ton=5, source_addr="Roshan",
                   dest_addr_ton=1, dest_addr_npi=1, destination_addr="93700123456",
                   registered_delivery=1, short_message=b"Hello",
                   tlvs={Tag.USER_MESSAGE_REFERENCE: b"\x00\x2a"}),
        "0000003d 00000004 00000000 00000007"
        " 00"  # service_type ""
        " 05 00 526f7368616e00"  # source 5/0 "Roshan"
        " 01 01 393337303031323334353600"  # destination 1/1 "93700123456"
        " 00 00 00"  # esm_class, protocol_id, priority_flag
        " 00 00"  # schedule_delivery_time, validity_period
        " 01 00 00 00"  # registered_delivery, replace_if_present, data_coding, default_msg_id
        " 05 48656c6c6f"  # sm_length, "Hello"
        " 0204 0002 002a",  # user_message_reference 42
    ),
    (
        p.SubmitSmResp(sequence_number=7, message_id="5f3a9c"),
        "00000017 80000004 00000000 00000007 35663361396300",
    ),
    (
        p.DeliverSm(sequence_number=8, source_addr_ton=1, source_addr_npi=1,
                    source_addr="93700123456", dest_addr_ton=5, destination_addr="Roshan",
                    esm_class=0x04, short_message=b"id:5f3a9c stat:DELIVRD",
                    tlvs={Tag.RECEIPTED_MESSAGE_ID: b"5f3a9c\0", Tag.MESSAGE_STATE: b"\x02"}),
        "00000058 00000005 00000000 00000008"
        " 00"
        " 01 01 393337303031323334353600"
        " 05 00 526f7368616e00"
        " 04 00 00"  # esm_class: delivery receipt
        " 00 00"
        " 00 00 00 00"
        " 16 69643a3566336139632073746174 3a44454c49565244"  # 22 octets
        " 001e 0007 35663361396300"  # receipted_message_id "5f3a9c"
        " 0427 0001 02",  # message_state DELIVERED
    ),
    (
        p.DeliverSmResp(sequence_number=8),
        "00000011 80000005 00000000 00000008 00",
    ),
    (
        p.DataSm(sequence_number=9, source_addr_ton=5, source_addr="Roshan", dest_addr_ton=1,
                 dest_addr_npi=1, destination_addr="93700123456", registered_delivery=1,
                 data_coding=8, tlvs={Tag.MESSAGE_PAYLOAD: "Hi".encode("utf-16-be")}),
        "00000033 00000103 00000000 00000009"
        " 00"
        " 05 00 526f7368616e00"
        " 01 01 393337303031323334353600"
        " 00 01 08"  # esm_class, registered_delivery, data_coding UCS2
        " 0424 0004 00480069",  # message_payload "Hi"
    ),
    (
        p.DataSmResp(sequence_number=9, message_id="abc"),
        "00000014 80000103 00000000 00000009 61626300",
    ),
    (
        p.QuerySm(sequence_number=10, message_id="5f3a9c", source_addr_ton=5,
                  source_addr="Roshan"),
        "00000020 00000003 00000000 0000000a 35663361396300 05 00 526f7368616e00",
    ),
    (
        p.QuerySmResp(sequence_number=10, message_id="5f3a9c", final_date="250101120000000+",
                      message_state=2, error_code=0),
        "0000002a 80000003 00000000 0000000a"
        " 35663361396300"
        " 3235303130313132303030303030302b00"  # final_date + NUL
        " 02 00",
    ),
]


def test_every_pdu_class_has_a_golden_vector() -> None:
    assert {type(pdu) for pdu, _ in GOLDEN} == set(p.PDU_CLASSES.values())
    assert len(p.PDU_CLASSES) == 20


@pytest.mark.parametrize(("pdu", "wire"), GOLDEN, ids=lambda v: getattr(v, "name", ""))
def test_golden_vector(pdu: p.Pdu, wire: str) -> None:
    expected = h(wire)
    assert p.encode(pdu) == expected
    decoded, consumed = p.decode(expected)
    assert decoded == pdu
    assert type(decoded) is type(pdu)
    assert consumed == len(expected)


def test_golden_vectors_back_to_back_decode_one_by_one() -> None:
    stream = b"".join(h(wire) for _, wire in GOLDEN)
    offset = 0
    decoded = []
    while offset < len(stream):
        pdu, consumed = p.decode(stream, offset)
        assert pdu is not None
        decoded.append(pdu)
        offset += consumed
    assert offset == len(stream)
    assert decoded == [pdu for pdu, _ in GOLDEN]


# --- partial input (nothing consumed until command_length bytes are there) ----------

SUBMIT = h(GOLDEN[12][1])


@pytest.mark.parametrize("size", [0, 1, 3, 4, 15, 16, len(SUBMIT) - 1])
def test_partial_input_returns_nothing(size: int) -> None:
    assert p.decode(SUBMIT[:size]) == (None, 0)
    assert p.decode(bytearray(SUBMIT[:size])) == (None, 0)


def test_two_pdus_back_to_back() -> None:
    link = h("00000010 00000015 00000000 00000006")
    data = SUBMIT + link
    first, n1 = p.decode(data)
    second, n2 = p.decode(data, n1)
    assert isinstance(first, p.SubmitSm) and n1 == len(SUBMIT)
    assert second == p.EnquireLink(sequence_number=6) and n2 == 16
    assert p.decode(data, n1 + n2) == (None, 0)


def test_pdu_at_an_offset() -> None:
    data = b"\xff" * 7 + SUBMIT
    pdu, consumed = p.decode(data, 7)
    assert pdu == GOLDEN[12][0]
    assert consumed == len(SUBMIT)


def test_peek_header() -> None:
    assert p.peek_header(SUBMIT[:15]) is None
    assert p.peek_header(SUBMIT) == (0x3D, CommandId.SUBMIT_SM, 0, 7)


# --- bad input --------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 4, 15, 64 * 1024 + 1, 0xFFFFFFFF])
def test_invalid_command_length_is_fatal(length: int) -> None:
    data = length.to_bytes(4, "big") + h("00000015 00000000 00000001")
    with pytest.raises(InvalidCommandLengthError) as info:
        p.decode(data)
    assert info.value.fatal
    assert info.value.command_length == length
    assert info.value.command_status == Status.ESME_RINVCMDLEN


def test_invalid_command_length_seen_from_the_first_four_bytes() -> None:
    with pytest.raises(InvalidCommandLengthError):
        p.decode(h("00000008"))


def test_max_length_is_configurable() -> None:
    with pytest.raises(InvalidCommandLengthError):
        p.decode(SUBMIT, max_length=60)
    assert p.decode(SUBMIT, max_length=61)[1] == 61


def test_unknown_command_id_can_be_skipped() -> None:
    data = h("00000014 00000099 00000000 0000002a deadbeef")
    with pytest.raises(UnknownCommandError) as info:
        p.decode(data + b"more")
    exc = info.value
    assert not exc.fatal
    assert (exc.command_id, exc.sequence_number, exc.consumed) == (0x99, 42, 20)
    assert exc.command_status == Status.ESME_RINVCMDID


def _malformed(data: bytes) -> MalformedPduError:
    with pytest.raises(MalformedPduError) as info:
        p.decode(data)
    return info.value


# (name, wire, field, command_status)
BAD_BODIES = [
    ("cstr_without_nul", "00000013 80000004 00000000 00000007 616263",
     "message_id", Status.ESME_RINVCMDLEN),
    ("cstr_too_long", "00000021 80000001 00000000 00000002 3031323334353637383930313233343500",
     "system_id", Status.ESME_RINVPARLEN),
    ("u8_missing", "00000018 00000003 00000000 0000000a 35663361396300 05",
     "source_addr_npi", Status.ESME_RINVCMDLEN),
    ("body_missing", "00000010 00000004 00000000 00000007",
     "service_type", Status.ESME_RINVCMDLEN),
    # submit_sm whose sm_length says 9 octets but only 5 follow
    ("sm_length_past_end",
     "00000037 00000004 00000000 00000007 00 05 00 526f7368616e00 01 01 393337303031323334353600"
     " 00 00 00 00 00 01 00 00 00 09 48656c6c6f",
     "short_message", Status.ESME_RINVMSGLEN),
    ("sm_length_missing",
     "00000031 00000004 00000000 00000007 00 05 00 526f7368616e00 01 01 393337303031323334353600"
     " 00 00 00 00 00 01 00 00 00",
     "sm_length", Status.ESME_RINVCMDLEN),
    ("tlv_value_overruns",
     "0000001a 80000002 00000000 00000001 534d534300 0210 0002 34",
     "tlvs", Status.ESME_RINVOPTPARSTREAM),
    ("tlv_header_truncated",
     "00000018 80000002 00000000 00000001 534d534300 0210 00",
     "tlvs", Status.ESME_RINVOPTPARSTREAM),
]


@pytest.mark.parametrize(("wire", "field_name", "status"), [b[1:] for b in BAD_BODIES],
                         ids=[b[0] for b in BAD_BODIES])
def test_malformed_body(wire: str, field_name: str, status: int) -> None:
    data = h(wire)
    assert int.from_bytes(data[:4], "big") == len(data)  # the vectors are well framed
    exc = _malformed(data)
    assert exc.field == field_name
    assert exc.command_status == status
    assert exc.consumed == len(data)
    assert exc.command_id == int.from_bytes(data[4:8], "big")
    assert exc.sequence_number == int.from_bytes(data[12:16], "big")
    assert not exc.fatal


@pytest.mark.parametrize("wire", [b[1] for b in BAD_BODIES] + [w for _, w in GOLDEN],
                         ids=[b[0] for b in BAD_BODIES] + [pdu.name for pdu, _ in GOLDEN])
@pytest.mark.parametrize("garbage", [b"\0" * 300, b"\x01\x02\x03\x04" * 80, bytes(range(256))])
def test_never_reads_past_the_pdu(wire: str, garbage: bytes) -> None:
    """Bytes after command_length (NULs, lengths, TLV-like octets) change nothing."""
    data = h(wire)

    def outcome(buf: bytes) -> object:
        try:
            return p.decode(buf)
        except PduDecodeError as exc:
            return (type(exc), str(exc), exc.field, exc.command_status, exc.consumed)

    assert outcome(data + garbage) == outcome(data)


def test_error_response_without_body_decodes() -> None:
    """SMSCs leave the body out of error responses (SMPP v3.4 section 4.4.2)."""
    pdu, consumed = p.decode(h("00000010 80000004 00000058 00000007"))
    assert pdu == p.SubmitSmResp(sequence_number=7, command_status=Status.ESME_RTHROTTLED)
    assert consumed == 16


def test_unknown_tlvs_are_kept_in_wire_order() -> None:
    data = h("00000021 80000004 00000000 00000001 00 1401 0003 616263 0005 0000 0210 0001 34")
    pdu, _ = p.decode(data)
    assert pdu is not None
    assert list(pdu.tlvs.items()) == [(0x1401, b"abc"), (0x0005, b""), (0x0210, b"\x34")]
    assert p.encode(pdu) == data


# --- encoding errors and helpers ----------------------------------------------------


@pytest.mark.parametrize(
    ("pdu", "field_name"),
    [
        (p.SubmitSm(source_addr="x" * 21), "source_addr"),
        (p.SubmitSm(destination_addr="\u0628"), "destination_addr"),
        (p.SubmitSm(esm_class=256), "esm_class"),
        (p.SubmitSm(data_coding=-1), "data_coding"),
        (p.SubmitSm(short_message=b"x" * 255), "short_message"),
        (p.SubmitSm(tlvs={Tag.MESSAGE_PAYLOAD: b"x" * 0x10000}), "tlv 0x0424"),
        (p.BindTransceiver(password="123456789"), "password"),
    ],
)
def test_encode_refuses_values_that_do_not_fit(pdu: p.Pdu, field_name: str) -> None:
    with pytest.raises(PduEncodeError) as info:
        p.encode(pdu)
    assert info.value.field == field_name


def test_limits_are_inclusive() -> None:
    pdu = p.SubmitSm(source_addr="x" * 20, short_message=b"y" * 254,
                     tlvs={Tag.MESSAGE_PAYLOAD: b"z" * 0xFFFF})
    decoded, _ = p.decode(p.encode(pdu), max_length=0x20000)
    assert decoded == pdu


def test_response_helper() -> None:
    submit = p.SubmitSm(sequence_number=99)
    resp = submit.response(message_id="m1")
    assert resp == p.SubmitSmResp(sequence_number=99, message_id="m1")
    assert p.Unbind(sequence_number=3).response() == p.UnbindResp(sequence_number=3)
    with pytest.raises(TypeError):
        p.GenericNack().response()
    assert submit.name == "submit_sm" and not submit.is_response and resp.is_response


def test_password_never_in_repr() -> None:
    assert "hunter2" not in repr(p.BindTransceiver(system_id="a", password="hunter2"))
    assert "hunter2" not in repr(p.Outbind(system_id="a", password="hunter2"))


def test_generic_nack_bytes() -> None:
    assert p.generic_nack(42, Status.ESME_RINVCMDID) == h("00000010 80000000 00000003 0000002a")


def test_tlv_helpers() -> None:
    tlvs: dict[int, bytes] = {
        Tag.MESSAGE_STATE: p.int_tlv(2, 1), Tag.SAR_MSG_REF_NUM: p.int_tlv(0x1234, 2),
        Tag.RECEIPTED_MESSAGE_ID: p.cstr_tlv("abc"), Tag.SOURCE_PORT: b""}
    assert tlvs[Tag.SAR_MSG_REF_NUM] == b"\x12\x34"
    assert p.tlv_int(tlvs, Tag.MESSAGE_STATE) == 2
    assert p.tlv_int(tlvs, Tag.SAR_MSG_REF_NUM) == 0x1234
    assert p.tlv_int(tlvs, Tag.SOURCE_PORT) is None
    assert p.tlv_int(tlvs, Tag.DEST_ADDR_SUBUNIT) is None
    assert p.tlv_cstr(tlvs, Tag.RECEIPTED_MESSAGE_ID) == "abc"
    assert p.tlv_cstr({1: b"no-nul"}, 1) == "no-nul"
    assert p.tlv_cstr(tlvs, Tag.DEST_ADDR_SUBUNIT) is None
