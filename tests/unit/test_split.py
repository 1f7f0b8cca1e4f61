"""Long-message splitting and UDH parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smppd.protocol.constants import ESM_UDHI, DataCoding, Tag
from smppd.protocol.encoding import GSM_CHARS, count_segments, encode_text
from smppd.protocol.split import (
    Concat,
    Part,
    SplitError,
    Strategy,
    TooManyPartsError,
    parse_sar,
    parse_udh,
    split_message,
)

GSM = DataCoding.SMSC_DEFAULT
UCS2 = DataCoding.UCS2
LATIN1 = DataCoding.LATIN1

# --- golden -----------------------------------------------------------------------


def test_single_segment_has_no_udh_for_every_strategy() -> None:
    for strategy in ("udh", "sar", "payload"):
        assert split_message(b"a" * 160, GSM, strategy, 7) == [Part(b"a" * 160, 0, (), 1, 1)]


def test_161_gsm_chars_udh_8bit() -> None:
    parts = split_message(b"a" * 161, GSM, "udh", 0x2A)
    assert parts == [
        Part(bytes.fromhex("0500032a0201") + b"a" * 153, ESM_UDHI, (), 1, 2),
        Part(bytes.fromhex("0500032a0202") + b"a" * 8, ESM_UDHI, (), 2, 2),
    ]


def test_161_gsm_chars_udh_16bit() -> None:
    parts = split_message(b"a" * 161, GSM, "udh", 0x1234, reference_16bit=True)
    assert [p.short_message for p in parts] == [
        bytes.fromhex("06080412340201") + b"a" * 152,
        bytes.fromhex("06080412340202") + b"a" * 9,
    ]


def test_sar_tlvs() -> None:
    parts = split_message(b"a" * 161, GSM, "sar", 0x0102)
    assert parts[1] == Part(
        b"a" * 8,
        0,
        (
            (Tag.SAR_MSG_REF_NUM, b"\x01\x02"),
            (Tag.SAR_TOTAL_SEGMENTS, b"\x02"),
            (Tag.SAR_SEGMENT_SEQNUM, b"\x02"),
        ),
        2,
        2,
    )
    assert parts[0].short_message == b"a" * 153


def test_message_payload() -> None:
    assert split_message(b"a" * 500, GSM, "payload", 1) == [
        Part(b"", 0, ((Tag.MESSAGE_PAYLOAD, b"a" * 500),), 1, 1)
    ]


def test_escape_at_boundary_stays_whole() -> None:
    payload = encode_text("a" * 152 + "€" + "b" * 10, GSM)
    parts = split_message(payload, GSM, "udh", 1)
    assert parts[0].short_message[6:] == b"a" * 152
    assert parts[1].short_message[6:] == b"\x1be" + b"b" * 10


def test_emoji_at_boundary_stays_whole() -> None:
    payload = encode_text("ж" * 66 + "😀" + "ж" * 5, UCS2)
    parts = split_message(payload, UCS2, "udh", 1)
    assert parts[0].short_message[6:] == encode_text("ж" * 66, UCS2)
    assert parts[1].short_message[6:] == encode_text("😀" + "ж" * 5, UCS2)


def test_8bit_limits() -> None:
    assert len(split_message(b"x" * 140, LATIN1, "udh", 1)) == 1
    parts = split_message(b"x" * 141, LATIN1, "udh", 1)
    assert [len(p.short_message) for p in parts] == [140, 13]


def test_255_parts_max() -> None:
    assert len(split_message(b"a" * (153 * 255), GSM, "udh", 1)) == 255
    with pytest.raises(TooManyPartsError) as info:
        split_message(b"a" * (153 * 255 + 1), GSM, "sar", 1)
    assert info.value.parts == 256


@pytest.mark.parametrize(
    ("strategy", "reference", "ref16"),
    [("udh", 256, False), ("udh", -1, False), ("udh", 0x10000, True), ("sar", 0x10000, False)],
)
def test_reference_out_of_range(strategy: Strategy, reference: int, ref16: bool) -> None:
    with pytest.raises(SplitError):
        split_message(b"a" * 200, GSM, strategy, reference, reference_16bit=ref16)


def test_unknown_strategy() -> None:
    with pytest.raises(SplitError):
        split_message(b"a", GSM, "bogus", 1)  # type: ignore[arg-type]


# --- parse_sar --------------------------------------------------------------------


def test_parse_sar_reads_the_three_tlvs() -> None:
    tlvs = {Tag.SAR_MSG_REF_NUM: b"\x12\x34", Tag.SAR_TOTAL_SEGMENTS: b"\x03",
            Tag.SAR_SEGMENT_SEQNUM: b"\x02"}
    assert parse_sar(tlvs, b"yo") == Concat(0x1234, 3, 2, b"yo")


@pytest.mark.parametrize("tlvs", [
    {},  # not a part
    {Tag.SAR_MSG_REF_NUM: b"\x00\x01", Tag.SAR_TOTAL_SEGMENTS: b"\x02"},  # no seqnum
    {Tag.SAR_MSG_REF_NUM: b"\x01", Tag.SAR_TOTAL_SEGMENTS: b"\x02",
     Tag.SAR_SEGMENT_SEQNUM: b"\x01"},  # a 1-byte reference
    {Tag.SAR_MSG_REF_NUM: b"\x00\x01", Tag.SAR_TOTAL_SEGMENTS: b"\x02",
     Tag.SAR_SEGMENT_SEQNUM: b"\x00"},  # seqnum 0
    {Tag.SAR_MSG_REF_NUM: b"\x00\x01", Tag.SAR_TOTAL_SEGMENTS: b"\x02",
     Tag.SAR_SEGMENT_SEQNUM: b"\x03"},  # beyond the total
])
def test_parse_sar_without_usable_tlvs_is_none(tlvs: dict[int, bytes]) -> None:
    assert parse_sar(tlvs, b"x") is None


def test_parse_sar_reads_what_split_message_writes() -> None:
    parts = split_message(encode_text("x" * 400, 0), 0, "sar", 0x0102)
    assert [parse_sar(dict(p.tlvs), p.short_message) for p in parts] == [
        Concat(0x0102, len(parts), i, p.short_message) for i, p in enumerate(parts, 1)]


# --- parse_udh --------------------------------------------------------------------


def test_parse_udh_8bit_and_16bit() -> None:
    assert parse_udh(bytes.fromhex("0500032a0201") + b"hi") == Concat(0x2A, 2, 1, b"hi")
    assert parse_udh(bytes.fromhex("06080412340302") + b"yo") == Concat(0x1234, 3, 2, b"yo")


def test_parse_udh_skips_other_ies() -> None:
    # Application port IE (0x05, 4 bytes) before the concatenation IE.
    sm = bytes.fromhex("0b 0504 0b84 23f0 0003 07 02 01".replace(" ", "")) + b"body"
    assert parse_udh(sm) == Concat(7, 2, 1, b"body")


@pytest.mark.parametrize(
    "sm",
    [
        b"",
        bytes.fromhex("05000307"),  # UDHL past the end
        bytes.fromhex("0504040b8423f0") + b"x",  # no concatenation IE
        bytes.fromhex("0500032a0203"),  # seq above total
        bytes.fromhex("0500032a0200"),  # seq 0
        bytes.fromhex("03000507") + b"xx",  # IE longer than the header
    ],
)
def test_parse_udh_rejects(sm: bytes) -> None:
    assert parse_udh(sm) is None


# --- properties -------------------------------------------------------------------

texts = st.one_of(
    st.tuples(st.text(alphabet=sorted(GSM_CHARS), max_size=1200), st.just(GSM)),
    st.tuples(
        st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=500),
        st.just(UCS2),
    ),
    st.tuples(st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=600), st.just(LATIN1)),
)


def air_octets(udh: bytes, body: bytes, coding: int) -> int:
    """Octets the part takes in the TP-UD on the air (GSM: 7-bit packed, UDH septet-aligned)."""
    if coding == GSM:
        septets = (len(udh) * 8 + 6) // 7 + len(body)
        return (septets * 7 + 7) // 8
    return len(udh) + len(body)


@given(texts, st.sampled_from(["udh", "sar"]), st.booleans(), st.integers(0, 255))
def test_split_properties(
    text_coding: tuple[str, int], strategy: Strategy, ref16: bool, reference: int
) -> None:
    text, coding = text_coding
    payload = encode_text(text, coding)
    parts = split_message(payload, coding, strategy, reference, reference_16bit=ref16)
    assert [p.number for p in parts] == list(range(1, len(parts) + 1))
    assert all(p.total == len(parts) for p in parts)
    assert len(parts) == count_segments(text, coding, reference_16bit=ref16).segments

    bodies = []
    for part in parts:
        if part.esm_class & ESM_UDHI:
            concat = parse_udh(part.short_message)
            assert concat is not None
            assert (concat.total, concat.seq) == (part.total, part.number)
            assert concat.reference == reference
            udh, body = part.short_message[: -len(concat.body) or None], concat.body
        else:
            udh, body = b"", part.short_message
        assert air_octets(udh, body, coding) <= 140
        bodies.append(body)
        if part.number < part.total:
            # No cut inside an escape or surrogate pair: each body decodes on its own.
            if coding == UCS2:
                assert not 0xD8 <= body[-2] <= 0xDB
            if coding == GSM:
                trailing = len(body) - len(body.rstrip(b"\x1b"))
                assert trailing % 2 == 0
    assert b"".join(bodies) == payload
