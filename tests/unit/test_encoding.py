"""Text encodings, segment counting and boundary-safe chunking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smppd.protocol.constants import DataCoding
from smppd.protocol.encoding import (
    GSM_CHARS,
    EncodingError,
    SegmentCount,
    alphabet,
    choose_coding,
    chunk,
    count_segments,
    decode_text,
    encode_gsm,
    encode_text,
    pack_gsm,
    unpack_gsm,
)

GSM = DataCoding.SMSC_DEFAULT
UCS2 = DataCoding.UCS2

gsm_text = st.text(alphabet=sorted(GSM_CHARS), max_size=600)
# Any text Python can encode as UTF-16 (lone surrogates are not text).
any_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=400)


# --- golden vectors ---------------------------------------------------------------


def test_gsm_hello_euro() -> None:
    assert encode_text("Hello €", GSM) == b"Hello \x1be"
    assert decode_text(b"Hello \x1be", GSM) == "Hello €"


def test_gsm_basic_table_specials() -> None:
    assert encode_gsm("@£$¥èé\nÄÖÑÜ§¿äöñüà_Δ") == bytes.fromhex(
        "000102030405 0a 5b5c5d5e5f60 7b7c7d7e7f 1110".replace(" ", "")
    )


def test_gsm_extension_table() -> None:
    assert encode_gsm("^{}\\[~]|€\f") == bytes.fromhex("1b141b281b291b2f1b3c1b3d1b3e1b401b651b0a")


def test_ucs2_hello_euro_and_emoji() -> None:
    assert encode_text("Hello €", UCS2) == bytes.fromhex("00480065006c006c006f002020ac")
    assert encode_text("😀", UCS2) == bytes.fromhex("d83dde00")
    assert decode_text(bytes.fromhex("d83dde00"), UCS2) == "😀"


def test_latin1_ia5_octet() -> None:
    assert encode_text("café", DataCoding.LATIN1) == b"caf\xe9"
    assert decode_text(b"caf\xe9", DataCoding.LATIN1) == "café"
    assert encode_text("a`b", DataCoding.IA5) == b"a`b"
    assert encode_text(b"\x00\xff", DataCoding.OCTET) == b"\x00\xff"
    assert encode_text(b"\x01", DataCoding.OCTET_UNSPECIFIED) == b"\x01"
    assert decode_text(b"\x00\xff", DataCoding.OCTET) == "\x00\xff"


def test_packed_gsm_golden() -> None:
    # "hellohello", the classic 23.038 example.
    packed = pack_gsm(encode_gsm("hellohello"))
    assert packed == bytes.fromhex("e8329bfd4697d9ec37")
    assert unpack_gsm(packed, 10) == encode_gsm("hellohello")


# --- errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "coding", "char", "position"),
    [
        ("ab`c", GSM, "`", 2),
        ("€ok😀", GSM, "😀", 3),
        ("Привет", GSM, "П", 0),
        ("x€", DataCoding.LATIN1, "€", 1),
        ("é", DataCoding.IA5, "é", 0),
        ("a\ud800", UCS2, "\ud800", 1),
    ],
)
def test_encode_error_names_char_and_position(
    text: str, coding: int, char: str, position: int
) -> None:
    with pytest.raises(EncodingError) as info:
        encode_text(text, coding)
    assert (info.value.char, info.value.position, info.value.data_coding) == (
        char,
        position,
        coding,
    )
    assert f"position {position}" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bytes_only_for_octet_codings() -> None:
    with pytest.raises(EncodingError):
        encode_text(b"abc", GSM)


# --- decoding garbage never raises --------------------------------------------------


def test_gsm_decode_garbage() -> None:
    assert decode_text(b"a\x80", GSM) == "a\ufffd"
    assert decode_text(b"a\x1b", GSM) == "a\ufffd"  # truncated escape
    assert decode_text(b"\x1b\x1bA", GSM) == " A"  # reserved double escape
    assert decode_text(b"\x1bA", GSM) == "A"  # unknown extension: basic char


def test_ucs2_decode_garbage() -> None:
    assert decode_text(b"\x00a\x00", UCS2) == "a\ufffd"
    assert decode_text(bytes.fromhex("d83d0041"), UCS2) == "\ufffdA"


@given(st.binary(max_size=300), st.integers(0, 255))
def test_decode_never_raises(data: bytes, coding: int) -> None:
    assert isinstance(decode_text(data, coding), str)


def test_dcs_groups() -> None:
    assert alphabet(0xF0) == GSM
    assert alphabet(0xF4) == DataCoding.OCTET
    assert alphabet(0x18) == UCS2
    assert alphabet(0x11) == GSM
    assert alphabet(DataCoding.JIS) == DataCoding.OCTET


# --- round trips --------------------------------------------------------------------


@given(gsm_text)
def test_gsm_round_trip(text: str) -> None:
    assert decode_text(encode_text(text, GSM), GSM) == text


@given(gsm_text)
def test_gsm_packed_round_trip(text: str) -> None:
    septets = encode_gsm(text)
    packed = pack_gsm(septets)
    assert len(packed) == (len(septets) * 7 + 7) // 8
    assert unpack_gsm(packed, len(septets)) == septets


@given(any_text)
def test_ucs2_round_trip(text: str) -> None:
    assert decode_text(encode_text(text, UCS2), UCS2) == text


@given(st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=300))
def test_latin1_round_trip(text: str) -> None:
    assert decode_text(encode_text(text, DataCoding.LATIN1), DataCoding.LATIN1) == text


# --- choosing and counting ---------------------------------------------------------


def test_choose_coding() -> None:
    assert choose_coding("Hello € [ok]") == GSM
    assert choose_coding("") == GSM
    assert choose_coding("café") == GSM  # é is in the basic table
    assert choose_coding("Hello 😀") == UCS2
    assert choose_coding("naïve") == UCS2


@given(any_text)
def test_choose_coding_can_encode(text: str) -> None:
    coding = choose_coding(text)
    assert coding in (GSM, UCS2)
    encode_text(text, coding)  # never raises


@pytest.mark.parametrize(
    ("text", "coding", "expected"),
    [
        ("", None, SegmentCount(GSM, 0, 1, 160)),
        ("a" * 160, None, SegmentCount(GSM, 160, 1, 160)),
        ("a" * 161, None, SegmentCount(GSM, 161, 2, 153)),
        ("€" * 80, None, SegmentCount(GSM, 160, 1, 160)),
        ("€" * 81, None, SegmentCount(GSM, 162, 2, 153)),
        ("a" * 306, None, SegmentCount(GSM, 306, 2, 153)),
        ("a" * 307, None, SegmentCount(GSM, 307, 3, 153)),
        ("ж" * 70, None, SegmentCount(UCS2, 70, 1, 70)),
        ("ж" * 71, None, SegmentCount(UCS2, 71, 2, 67)),
        ("😀" * 35, None, SegmentCount(UCS2, 70, 1, 70)),
        ("😀" * 36, None, SegmentCount(UCS2, 72, 2, 67)),
        ("a" * 140, DataCoding.LATIN1, SegmentCount(DataCoding.LATIN1, 140, 1, 140)),
        ("a" * 141, DataCoding.LATIN1, SegmentCount(DataCoding.LATIN1, 141, 2, 134)),
    ],
)
def test_count_segments(text: str, coding: int | None, expected: SegmentCount) -> None:
    assert count_segments(text, coding) == expected


def test_count_segments_16bit_reference() -> None:
    assert count_segments("a" * 305, reference_16bit=True).segments == 3
    assert count_segments("a" * 305).segments == 2


def test_count_segments_escape_pushes_extra_part() -> None:
    # 152 plain + € would straddle the 153 boundary; the escape pair moves whole.
    text = "a" * 152 + "€" + "a" * 152
    assert count_segments(text) == SegmentCount(GSM, 306, 3, 153)


# --- chunking ---------------------------------------------------------------------


def test_chunk_keeps_escape_pair() -> None:
    payload = encode_gsm("a" * 152 + "€")
    assert chunk(payload, GSM, 153) == [b"a" * 152, b"\x1be"]


def test_chunk_escape_run_parity() -> None:
    # 0x1B 0x1B is one char (escape + reserved code): a cut after it is fine.
    payload = b"a" * 151 + b"\x1b\x1b" + b"b"
    assert chunk(payload, GSM, 153) == [b"a" * 151 + b"\x1b\x1b", b"b"]
    payload = b"a" * 150 + b"\x1b\x1b\x1be"
    assert chunk(payload, GSM, 153) == [b"a" * 150 + b"\x1b\x1b", b"\x1be"]


def test_chunk_keeps_surrogate_pair() -> None:
    payload = encode_text("ж" * 66 + "😀", UCS2)
    assert chunk(payload, UCS2, 134) == [payload[:132], payload[132:]]
