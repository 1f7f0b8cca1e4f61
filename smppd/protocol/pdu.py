"""SMPP v3.4 PDUs and their sans-IO codec.

``decode(data, offset)`` returns ``(pdu, consumed)``, or ``(None, 0)`` until
``command_length`` bytes are there; ``encode(pdu)`` returns bytes. Each PDU class
declares its mandatory body as a layout of (field, kind, size limit) and the one
codec walks it, so adding a PDU is one small class. Optional parameters (TLVs) are
kept generically as ``{tag: value}`` in wire order; ``tlv_int``/``tlv_cstr`` read
the common ones.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

from .constants import HEADER_LEN, MAX_PDU_LEN, RESPONSE_BIT, CommandId, Status
from .errors import (
    InvalidCommandLengthError,
    MalformedPduError,
    PduEncodeError,
    UnknownCommandError,
)

# Field kinds of a mandatory-body layout.
CSTR = 0  # C-Octet string, NUL terminated; limit counts the NUL as the spec does
U8 = 1  # one-octet integer
SM = 2  # sm_length octet followed by that many octets of short_message

Layout: TypeAlias = tuple[tuple[str, int, int], ...]
Buffer: TypeAlias = bytes | bytearray

_HEADER = struct.Struct(">IIII")
_U32 = struct.Struct(">I")
_TLV_HEAD = struct.Struct(">HH")
_U8_BYTES = tuple(bytes((i,)) for i in range(256))


@dataclass(slots=True, kw_only=True)
class Pdu:
    """Header fields and TLVs shared by every PDU."""

    command_id: ClassVar[int]
    layout: ClassVar[Layout] = ()
    response_class: ClassVar[type[Pdu] | None] = None

    sequence_number: int = 0
    command_status: int = 0
    tlvs: dict[int, bytes] = field(default_factory=dict)

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE_BIT)

    @property
    def name(self) -> str:
        return CommandId(self.command_id).name.lower()

    def response(self, command_status: int = Status.ESME_ROK, **fields: Any) -> Pdu:
        """The response PDU to this request, with the same sequence number."""
        cls = self.response_class
        if cls is None:
            raise TypeError(f"{self.name} has no response PDU")
        return cls(sequence_number=self.sequence_number, command_status=command_status, **fields)


# --- PDUs without a body ---------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class GenericNack(Pdu):
    command_id: ClassVar[int] = CommandId.GENERIC_NACK


@dataclass(slots=True, kw_only=True)
class UnbindResp(Pdu):
    command_id: ClassVar[int] = CommandId.UNBIND_RESP


@dataclass(slots=True, kw_only=True)
class Unbind(Pdu):
    command_id: ClassVar[int] = CommandId.UNBIND
    response_class: ClassVar[type[Pdu] | None] = UnbindResp


@dataclass(slots=True, kw_only=True)
class EnquireLinkResp(Pdu):
    command_id: ClassVar[int] = CommandId.ENQUIRE_LINK_RESP


@dataclass(slots=True, kw_only=True)
class EnquireLink(Pdu):
    command_id: ClassVar[int] = CommandId.ENQUIRE_LINK
    response_class: ClassVar[type[Pdu] | None] = EnquireLinkResp


# --- binds -----------------------------------------------------------------------

_BIND_LAYOUT: Layout = (
    ("system_id", CSTR, 16),
    ("password", CSTR, 9),
    ("system_type", CSTR, 13),
    ("interface_version", U8, 0),
    ("addr_ton", U8, 0),
    ("addr_npi", U8, 0),
    ("address_range", CSTR, 41),
)


@dataclass(slots=True, kw_only=True)
class BindResp(Pdu):
    layout: ClassVar[Layout] = (("system_id", CSTR, 16),)
    system_id: str = ""


@dataclass(slots=True, kw_only=True)
class BindTransmitterResp(BindResp):
    command_id: ClassVar[int] = CommandId.BIND_TRANSMITTER_RESP


@dataclass(slots=True, kw_only=True)
class BindReceiverResp(BindResp):
    command_id: ClassVar[int] = CommandId.BIND_RECEIVER_RESP


@dataclass(slots=True, kw_only=True)
class BindTransceiverResp(BindResp):
    command_id: ClassVar[int] = CommandId.BIND_TRANSCEIVER_RESP


@dataclass(slots=True, kw_only=True)
class Bind(Pdu):
    layout: ClassVar[Layout] = _BIND_LAYOUT
    system_id: str = ""
    password: str = field(default="", repr=False)  # never in a repr, so never in a log
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


@dataclass(slots=True, kw_only=True)
class BindTransmitter(Bind):
    command_id: ClassVar[int] = CommandId.BIND_TRANSMITTER
    response_class: ClassVar[type[Pdu] | None] = BindTransmitterResp


@dataclass(slots=True, kw_only=True)
class BindReceiver(Bind):
    command_id: ClassVar[int] = CommandId.BIND_RECEIVER
    response_class: ClassVar[type[Pdu] | None] = BindReceiverResp


@dataclass(slots=True, kw_only=True)
class BindTransceiver(Bind):
    command_id: ClassVar[int] = CommandId.BIND_TRANSCEIVER
    response_class: ClassVar[type[Pdu] | None] = BindTransceiverResp


@dataclass(slots=True, kw_only=True)
class Outbind(Pdu):
    command_id: ClassVar[int] = CommandId.OUTBIND
    layout: ClassVar[Layout] = (("system_id", CSTR, 16), ("password", CSTR, 9))
    system_id: str = ""
    password: str = field(default="", repr=False)


# --- messages --------------------------------------------------------------------

_SM_LAYOUT: Layout = (
    ("service_type", CSTR, 6),
    ("source_addr_ton", U8, 0),
    ("source_addr_npi", U8, 0),
    ("source_addr", CSTR, 21),
    ("dest_addr_ton", U8, 0),
    ("dest_addr_npi", U8, 0),
    ("destination_addr", CSTR, 21),
    ("esm_class", U8, 0),
    ("protocol_id", U8, 0),
    ("priority_flag", U8, 0),
    ("schedule_delivery_time", CSTR, 17),
    ("validity_period", CSTR, 17),
    ("registered_delivery", U8, 0),
    ("replace_if_present_flag", U8, 0),
    ("data_coding", U8, 0),
    ("sm_default_msg_id", U8, 0),
    ("short_message", SM, 254),
)

_MESSAGE_ID_LAYOUT: Layout = (("message_id", CSTR, 65),)


@dataclass(slots=True, kw_only=True)
class MessageIdResp(Pdu):
    layout: ClassVar[Layout] = _MESSAGE_ID_LAYOUT
    message_id: str = ""


@dataclass(slots=True, kw_only=True)
class SubmitSmResp(MessageIdResp):
    command_id: ClassVar[int] = CommandId.SUBMIT_SM_RESP


@dataclass(slots=True, kw_only=True)
class DeliverSmResp(MessageIdResp):
    command_id: ClassVar[int] = CommandId.DELIVER_SM_RESP


@dataclass(slots=True, kw_only=True)
class DataSmResp(MessageIdResp):
    command_id: ClassVar[int] = CommandId.DATA_SM_RESP


@dataclass(slots=True, kw_only=True)
class ShortMessage(Pdu):
    """The shared body of submit_sm and deliver_sm."""

    layout: ClassVar[Layout] = _SM_LAYOUT
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""


@dataclass(slots=True, kw_only=True)
class SubmitSm(ShortMessage):
    command_id: ClassVar[int] = CommandId.SUBMIT_SM
    response_class: ClassVar[type[Pdu] | None] = SubmitSmResp


@dataclass(slots=True, kw_only=True)
class DeliverSm(ShortMessage):
    command_id: ClassVar[int] = CommandId.DELIVER_SM
    response_class: ClassVar[type[Pdu] | None] = DeliverSmResp


@dataclass(slots=True, kw_only=True)
class DataSm(Pdu):
    command_id: ClassVar[int] = CommandId.DATA_SM
    response_class: ClassVar[type[Pdu] | None] = DataSmResp
    layout: ClassVar[Layout] = (
        ("service_type", CSTR, 6),
        ("source_addr_ton", U8, 0),
        ("source_addr_npi", U8, 0),
        ("source_addr", CSTR, 65),
        ("dest_addr_ton", U8, 0),
        ("dest_addr_npi", U8, 0),
        ("destination_addr", CSTR, 65),
        ("esm_class", U8, 0),
        ("registered_delivery", U8, 0),
        ("data_coding", U8, 0),
    )
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0


@dataclass(slots=True, kw_only=True)
class QuerySmResp(Pdu):
    command_id: ClassVar[int] = CommandId.QUERY_SM_RESP
    layout: ClassVar[Layout] = (
        ("message_id", CSTR, 65),
        ("final_date", CSTR, 17),
        ("message_state", U8, 0),
        ("error_code", U8, 0),
    )
    message_id: str = ""
    final_date: str = ""
    message_state: int = 0
    error_code: int = 0


@dataclass(slots=True, kw_only=True)
class QuerySm(Pdu):
    command_id: ClassVar[int] = CommandId.QUERY_SM
    response_class: ClassVar[type[Pdu] | None] = QuerySmResp
    layout: ClassVar[Layout] = (
        ("message_id", CSTR, 65),
        ("source_addr_ton", U8, 0),
        ("source_addr_npi", U8, 0),
        ("source_addr", CSTR, 21),
    )
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""


PDU_CLASSES: dict[int, type[Pdu]] = {
    cls.command_id: cls
    for cls in (
        GenericNack,
        BindTransmitter,
        BindTransmitterResp,
        BindReceiver,
        BindReceiverResp,
        BindTransceiver,
        BindTransceiverResp,
        Outbind,
        Unbind,
        UnbindResp,
        EnquireLink,
        EnquireLinkResp,
        SubmitSm,
        SubmitSmResp,
        DeliverSm,
        DeliverSmResp,
        DataSm,
        DataSmResp,
        QuerySm,
        QuerySmResp,
    )
}

# --- decoding --------------------------------------------------------------------


def peek_header(data: Buffer, offset: int = 0) -> tuple[int, int, int, int] | None:
    """(command_length, command_id, command_status, sequence_number) if 16 bytes are there."""
    if len(data) - offset < HEADER_LEN:
        return None
    result: tuple[int, int, int, int] = _HEADER.unpack_from(data, offset)
    return result


def decode(data: Buffer, offset: int = 0, max_length: int = MAX_PDU_LEN) -> tuple[Pdu | None, int]:
    """Decode the PDU at ``offset``: ``(pdu, consumed)`` or ``(None, 0)`` if incomplete.

    Raises ``InvalidCommandLengthError`` (fatal), ``UnknownCommandError`` or
    ``MalformedPduError`` (both carry ``consumed`` so the caller can skip the PDU).
    Never reads past ``offset + command_length``.
    """
    available = len(data) - offset
    if available < 4:
        return None, 0
    (length,) = _U32.unpack_from(data, offset)
    if length < HEADER_LEN or length > max_length:
        raise InvalidCommandLengthError(length, max_length)
    if available < length:
        return None, 0
    _, command_id, status, sequence = _HEADER.unpack_from(data, offset)
    cls = PDU_CLASSES.get(command_id)
    if cls is None:
        raise UnknownCommandError(command_id, sequence, length)
    end = offset + length
    try:
        values = _decode_body(cls, data, offset + HEADER_LEN, end)
    except MalformedPduError as exc:
        exc.consumed = length
        exc.command_id = command_id
        exc.sequence_number = sequence
        raise
    return cls(sequence_number=sequence, command_status=status, **values), length


def _malformed(message: str, status: int, field_name: str) -> MalformedPduError:
    return MalformedPduError(message, command_status=status, consumed=0, field=field_name)


def _decode_body(cls: type[Pdu], buf: Buffer, pos: int, end: int) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if pos == end and cls.command_id & RESPONSE_BIT:
        return values  # error responses often carry no body at all
    for name, kind, limit in cls.layout:
        if kind == CSTR:
            nul = buf.find(b"\0", pos, end)
            if nul < 0:
                raise _malformed(f"{name}: no NUL terminator before the end of the PDU",
                                 Status.ESME_RINVCMDLEN, name)
            if nul - pos >= limit:
                raise _malformed(f"{name}: {nul - pos} octets, at most {limit - 1} allowed",
                                 Status.ESME_RINVPARLEN, name)
            values[name] = buf[pos:nul].decode("latin-1")
            pos = nul + 1
        elif kind == U8:
            if pos >= end:
                raise _malformed(f"{name}: PDU ends before this field",
                                 Status.ESME_RINVCMDLEN, name)
            values[name] = buf[pos]
            pos += 1
        else:  # SM
            if pos >= end:
                raise _malformed("sm_length: PDU ends before this field", Status.ESME_RINVCMDLEN,
                                 "sm_length")
            sm_length = buf[pos]
            pos += 1
            if sm_length > limit or pos + sm_length > end:
                raise _malformed(f"sm_length {sm_length} runs past the end of the PDU",
                                 Status.ESME_RINVMSGLEN, "short_message")
            values[name] = bytes(buf[pos:pos + sm_length])
            pos += sm_length
    if pos < end:
        values["tlvs"] = decode_tlvs(buf, pos, end)
    return values


def decode_tlvs(buf: Buffer, pos: int, end: int) -> dict[int, bytes]:
    """Optional parameters from ``pos`` to ``end``, all of them, generically."""
    tlvs: dict[int, bytes] = {}
    while pos < end:
        if end - pos < 4:
            raise _malformed(f"TLV header truncated at offset {pos}", Status.ESME_RINVOPTPARSTREAM,
                             "tlvs")
        tag, length = _TLV_HEAD.unpack_from(buf, pos)
        pos += 4
        if pos + length > end:
            raise _malformed(f"TLV 0x{tag:04X} length {length} runs past the end of the PDU",
                             Status.ESME_RINVOPTPARSTREAM, "tlvs")
        tlvs[tag] = bytes(buf[pos:pos + length])
        pos += length
    return tlvs


# --- encoding --------------------------------------------------------------------


def encode(pdu: Pdu) -> bytes:
    """The wire bytes of ``pdu``; ``PduEncodeError`` names a field that cannot be sent."""
    parts: list[bytes] = []
    append = parts.append
    for name, kind, limit in pdu.layout:
        value = getattr(pdu, name)
        if kind == CSTR:
            try:
                raw = value.encode("latin-1")
            except UnicodeEncodeError:
                raise PduEncodeError(name, "only Latin-1 characters can be sent") from None
            if len(raw) >= limit:
                raise PduEncodeError(name, f"{len(raw)} octets, at most {limit - 1} allowed")
            append(raw)
            append(b"\0")
        elif kind == U8:
            if not 0 <= value <= 255:
                raise PduEncodeError(name, f"{value} does not fit in one octet")
            append(_U8_BYTES[value])
        else:
            if len(value) > limit:
                raise PduEncodeError(name, f"{len(value)} octets, at most {limit} allowed "
                                           "(use message_payload for longer)")
            append(_U8_BYTES[len(value)])
            append(value)
    for tag, tlv_value in pdu.tlvs.items():
        if len(tlv_value) > 0xFFFF:
            raise PduEncodeError(f"tlv 0x{tag:04X}", "value longer than 65535 octets")
        append(_TLV_HEAD.pack(tag, len(tlv_value)))
        append(tlv_value)
    body = b"".join(parts)
    try:
        header = _HEADER.pack(HEADER_LEN + len(body), pdu.command_id, pdu.command_status,
                              pdu.sequence_number)
    except struct.error:
        raise PduEncodeError("header", "command_status and sequence_number must fit in "
                                       "32 bits") from None
    return header + body


def generic_nack(sequence_number: int, command_status: int) -> bytes:
    """A generic_nack on the wire, for answering PDUs that could not be decoded."""
    return _HEADER.pack(HEADER_LEN, CommandId.GENERIC_NACK, command_status, sequence_number)


# --- TLV helpers -----------------------------------------------------------------


def tlv_int(tlvs: Mapping[int, bytes], tag: int) -> int | None:
    """An integer TLV (1, 2 or 4 octets, big-endian), or None if absent or empty."""
    value = tlvs.get(tag)
    if not value:
        return None
    return int.from_bytes(value, "big")


def tlv_cstr(tlvs: Mapping[int, bytes], tag: int) -> str | None:
    """A C-Octet string TLV without its NUL, or None if absent."""
    value = tlvs.get(tag)
    if value is None:
        return None
    return value.split(b"\0", 1)[0].decode("latin-1")


def int_tlv(value: int, size: int) -> bytes:
    return value.to_bytes(size, "big")


def cstr_tlv(value: str) -> bytes:
    return value.encode("latin-1") + b"\0"
