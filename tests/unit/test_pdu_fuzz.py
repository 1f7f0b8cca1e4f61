"""Hypothesis: codec round trips, decoder fuzzing, and chunking-independent sessions."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smppd.protocol import pdu as p
from smppd.protocol.constants import MAX_SEQUENCE, Status, Tag
from smppd.protocol.errors import PduDecodeError
from smppd.protocol.session import ProtocolError, Role, Session

LATIN1_NO_NUL = st.characters(min_codepoint=1, max_codepoint=255)
U32 = st.integers(0, 0xFFFFFFFF)
TLVS = st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=300), max_size=4)


def field_strategy(kind: int, limit: int) -> st.SearchStrategy[Any]:
    if kind == p.CSTR:
        return st.text(LATIN1_NO_NUL, max_size=limit - 1)  # one octet per Latin-1 char
    if kind == p.U8:
        return st.integers(0, 255)
    return st.binary(max_size=limit)


def pdu_strategy(cls: type[p.Pdu]) -> st.SearchStrategy[p.Pdu]:
    fields = {name: field_strategy(kind, limit) for name, kind, limit in cls.layout}
    return st.builds(cls, sequence_number=U32, command_status=U32, tlvs=TLVS, **fields)


ANY_PDU = st.one_of([pdu_strategy(cls) for cls in p.PDU_CLASSES.values()])


@given(ANY_PDU)
def test_round_trip(pdu: p.Pdu) -> None:
    wire = p.encode(pdu)
    assert int.from_bytes(wire[:4], "big") == len(wire)
    decoded, consumed = p.decode(wire)
    assert decoded == pdu
    assert consumed == len(wire)
    assert p.encode(decoded) == wire


@given(ANY_PDU, st.binary(max_size=40), st.binary(max_size=40))
def test_round_trip_inside_a_larger_buffer(pdu: p.Pdu, before: bytes, after: bytes) -> None:
    wire = p.encode(pdu)
    decoded, consumed = p.decode(bytearray(before + wire + after), len(before))
    assert decoded == pdu and consumed == len(wire)


def decode_outcome(data: bytes, offset: int = 0) -> object:
    """The result of decode, or the codec error it raised; anything else fails the test."""
    try:
        return p.decode(data, offset)
    except PduDecodeError as exc:
        assert exc.consumed == 0 if exc.fatal else exc.consumed >= 16
        return (type(exc), exc.command_status, exc.field, exc.consumed)


@settings(max_examples=500)
@given(st.binary(max_size=600))
def test_decode_arbitrary_bytes(data: bytes) -> None:
    decode_outcome(data)


def framed(body: bytes, command_id: int) -> bytes:
    return (16 + len(body)).to_bytes(4, "big") + command_id.to_bytes(4, "big") + bytes(8) + body


@settings(max_examples=500)
@given(st.sampled_from(sorted(p.PDU_CLASSES)), st.binary(max_size=400))
def test_decode_well_framed_random_bodies(command_id: int, body: bytes) -> None:
    """Random bodies behind a correct header reach the body parser, not just the framing."""
    data = framed(body, command_id)
    outcome = decode_outcome(data)
    assert outcome == decode_outcome(data + b"\0\x05" * 64)  # nothing read past the end


@st.composite
def mutated_pdu(draw: st.DrawFn) -> bytes:
    wire = bytearray(p.encode(draw(ANY_PDU)))
    # keep the framing (or not) and flip, drop or insert bytes in the body
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "set", "delete", "insert"]))
        pos = draw(st.integers(0, len(wire) - 1))
        if action == "flip":
            wire[pos] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            wire[pos] = draw(st.sampled_from([0, 1, 0xFF, 0x10]))
        elif action == "delete" and len(wire) > 16:
            del wire[pos]
        elif action == "insert":
            wire.insert(pos, draw(st.integers(0, 255)))
    if draw(st.booleans()):
        wire[:4] = len(wire).to_bytes(4, "big")  # re-frame so the body parser sees it
    return bytes(wire)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_pdu(), st.binary(max_size=30))
def test_decode_mutated_pdus(data: bytes, garbage: bytes) -> None:
    assert decode_outcome(data + garbage) == decode_outcome(data) or len(data) < int.from_bytes(
        data[:4].rjust(4, b"\0"), "big"
    )


# --- the session sees the same events however the bytes are split ---------------------


def _bound_esme() -> Session:
    session = Session(Role.ESME, window_size=50, enquire_link_interval=30.0)
    session.bind(p.BindTransceiver(system_id="esme", password="pw"), 0.0)
    session.receive_data(p.encode(p.BindTransceiverResp(sequence_number=1, system_id="SMSC")), 0.0)
    for _ in range(3):
        session.send_request(p.SubmitSm(destination_addr="93700000001", short_message=b"x"), 0.0)
    session.data_to_send()
    return session


def _smsc_stream() -> bytes:
    parts = [
        p.encode(p.SubmitSmResp(sequence_number=2, message_id="a1")),
        p.encode(p.DeliverSm(sequence_number=1, source_addr="93700000001", short_message=b"hi",
                             tlvs={Tag.MESSAGE_STATE: b"\x02"})),
        p.encode(p.EnquireLink(sequence_number=2)),
        framed(b"\x00\x01", 0x99),  # unknown command id
        framed(b"abc", 0x05),  # malformed deliver_sm
        p.encode(p.SubmitSmResp(sequence_number=3, command_status=Status.ESME_RTHROTTLED)),
        p.encode(p.SubmitSmResp(sequence_number=777, message_id="late")),
        p.encode(p.SubmitSmResp(sequence_number=4, message_id="a3")),
        p.encode(p.Unbind(sequence_number=3)),
    ]
    return b"".join(parts)


STREAM = _smsc_stream()


def _comparable(event: Any) -> Any:
    if isinstance(event, ProtocolError):  # exceptions compare by identity
        exc = event.error
        return (type(exc), str(exc), exc.command_status, exc.consumed, exc.sequence_number)
    return event


def _run(chunks: list[bytes]) -> tuple[list[Any], bytes]:
    session = _bound_esme()
    events: list[Any] = []
    for chunk in chunks:
        events += [_comparable(e) for e in session.receive_data(chunk, 1.0)]
    return events, session.data_to_send()


WHOLE = _run([STREAM])


def test_stream_reference_outcome() -> None:
    events, out = WHOLE
    names = [type(e).__name__ for e in events]
    assert names == ["ResponseReceived", "RequestReceived", "tuple", "tuple",
                     "ResponseReceived", "UnexpectedResponse", "ResponseReceived", "Closed"]
    assert out == b"".join([
        p.encode(p.EnquireLinkResp(sequence_number=2)),
        p.generic_nack(0, Status.ESME_RINVCMDID),
        p.generic_nack(0, Status.ESME_RINVCMDLEN),
        p.encode(p.UnbindResp(sequence_number=3)),
    ])


@given(st.lists(st.integers(0, len(STREAM)), max_size=30))
def test_session_events_independent_of_chunking(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    assert _run(chunks) == WHOLE


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
def test_session_survives_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    session = _bound_esme()
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    for a, b in itertools.pairwise(bounds):
        session.receive_data(data[a:b], 1.0)
    session.data_to_send()
    assert session.next_sequence() <= MAX_SEQUENCE
