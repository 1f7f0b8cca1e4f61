"""SMS text encodings, segment limits and boundary-safe chunking.

Pure functions over str and bytes. The GSM 03.38 tables come from aiosmpplib; the
lookup tables built from them below are made once at import, because encoding runs
on every message.

SMPP data_coding 0 carries GSM 03.38 *unpacked*: one septet per byte, an extension
character as two bytes (0x1B, code). ``pack_gsm``/``unpack_gsm`` give the 7-bit
packed form for SMSCs that want it.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Final

from aiosmpplib.codec import (
    GSM_BASIC_DECODE_MAP,
    GSM_BASIC_ENCODE_MAP,
    GSM_EXTENDED_DECODE_MAP,
    GSM_EXTENDED_ENCODE_MAP,
)

from .constants import DataCoding

GSM_ESCAPE: Final = 0x1B
REPLACEMENT: Final = "\ufffd"

_BASIC_ENCODE: Final[dict[str, int]] = dict(GSM_BASIC_ENCODE_MAP)
_EXTENDED_ENCODE: Final[dict[str, int]] = dict(GSM_EXTENDED_ENCODE_MAP)
_BASIC_DECODE: Final[dict[int, str]] = dict(GSM_BASIC_DECODE_MAP)
_EXTENDED_DECODE: Final[dict[int, str]] = dict(GSM_EXTENDED_DECODE_MAP)

GSM_CHARS: Final[frozenset[str]] = frozenset(_BASIC_ENCODE) | frozenset(_EXTENDED_ENCODE)
GSM_EXTENDED_CHARS: Final[frozenset[str]] = frozenset(_EXTENDED_ENCODE)


def _build_gsm_encode_table() -> dict[int, str]:
    # Maps to str so that text.translate(...).encode("ascii") does the whole job in C:
    # every GSM code is < 0x80, so any char left unmapped (not GSM) makes the ASCII
    # encode fail. ASCII chars outside GSM (` and most controls) map to a non-ASCII
    # sentinel for the same reason.
    table: dict[int, str] = {ord(ch): chr(code) for ch, code in _BASIC_ENCODE.items()}
    table.update({ord(ch): chr(GSM_ESCAPE) + chr(code) for ch, code in _EXTENDED_ENCODE.items()})
    for i in range(0x80):
        table.setdefault(i, "\uffff")
    return table


def _build_gsm_decode_table() -> str:
    # 256 entries for codecs.charmap_decode. 0x1B stays as itself so escapes can be
    # resolved afterwards; bytes >= 0x80 are not GSM and become U+FFFD.
    chars = [_BASIC_DECODE.get(i, REPLACEMENT) for i in range(256)]
    chars[GSM_ESCAPE] = chr(GSM_ESCAPE)
    return "".join(chars)


def _build_gsm_escape_table() -> dict[str, str]:
    # Keyed by the *basic* decoding of the code that follows 0x1B. 3GPP TS 23.038: an
    # unknown extension code shows the basic-table character; 0x1B 0x1B (reserved for
    # another extension table) shows a space.
    table = {_BASIC_DECODE.get(code, REPLACEMENT): ch for code, ch in _EXTENDED_DECODE.items()}
    table[chr(GSM_ESCAPE)] = " "
    return table


_GSM_ENCODE_TABLE: Final = _build_gsm_encode_table()
_GSM_DECODE_TABLE: Final = _build_gsm_decode_table()
_GSM_ESCAPES: Final = _build_gsm_escape_table()
_GSM_ESCAPE_RE: Final = re.compile("\x1b(.?)", re.DOTALL)


class EncodingError(ValueError):
    """Text that the chosen data_coding cannot carry (or an unsupported data_coding)."""

    def __init__(
        self,
        message: str,
        *,
        data_coding: int,
        char: str | None = None,
        position: int | None = None,
    ) -> None:
        super().__init__(message)
        self.data_coding = data_coding
        self.char = char
        self.position = position


# --- data_coding -> alphabet -------------------------------------------------------

GSM: Final = int(DataCoding.SMSC_DEFAULT)
IA5: Final = int(DataCoding.IA5)
LATIN1: Final = int(DataCoding.LATIN1)
OCTET: Final = int(DataCoding.OCTET)
UCS2: Final = int(DataCoding.UCS2)


def alphabet(data_coding: int) -> int:
    """The base alphabet of a data_coding: GSM, IA5, LATIN1, OCTET or UCS2.

    Besides the SMPP values, this reads the GSM 03.38 DCS groups that SMSCs put in
    deliver_sm (0x10-0x1F with a message class, 0xF0-0xFF data coding/class); codings
    we cannot decode as text (JIS, Cyrillic, Hebrew, ...) fall back to OCTET.
    """
    if data_coding in (GSM, IA5, LATIN1, UCS2):
        return data_coding
    if 0x10 <= data_coding <= 0x1F:  # general group with message class, uncompressed
        return (GSM, OCTET, UCS2, OCTET)[(data_coding >> 2) & 0x03]
    if 0xF0 <= data_coding <= 0xFF:  # data coding / message class group
        return OCTET if data_coding & 0x04 else GSM
    return OCTET


# --- GSM 03.38 ---------------------------------------------------------------------


def _gsm_error(text: str) -> EncodingError:
    # Slow path, only taken when the text is known to hold a non-GSM char.
    for position, ch in enumerate(text):
        if ch not in GSM_CHARS:
            return EncodingError(
                f"character {ch!r} (U+{ord(ch):04X}) at position {position} "
                "is not in the GSM 03.38 alphabet",
                data_coding=GSM,
                char=ch,
                position=position,
            )
    raise AssertionError("unreachable: no offending character")  # pragma: no cover


def encode_gsm(text: str) -> bytes:
    """GSM 03.38 unpacked: one septet per byte, extension chars as 0x1B + code."""
    try:
        return text.translate(_GSM_ENCODE_TABLE).encode("ascii")
    except UnicodeEncodeError:
        raise _gsm_error(text) from None


def decode_gsm(data: bytes) -> str:
    """Decode unpacked GSM 03.38; never raises (non-GSM bytes become U+FFFD)."""
    text = codecs.charmap_decode(data, "strict", _GSM_DECODE_TABLE)[0]
    if "\x1b" not in text:
        return text
    # An escape with nothing after it (truncated message) becomes U+FFFD.
    return _GSM_ESCAPE_RE.sub(lambda m: _GSM_ESCAPES.get(m[1], m[1]) if m[1] else REPLACEMENT, text)


def pack_gsm(septets: bytes) -> bytes:
    """Pack unpacked GSM septets (bytes < 0x80) into 7-bit octets, LSB first."""
    acc = 0
    for i, septet in enumerate(septets):
        acc |= (septet & 0x7F) << (7 * i)
    return acc.to_bytes((len(septets) * 7 + 7) // 8, "little")


def unpack_gsm(octets: bytes, septets: int | None = None) -> bytes:
    """Unpack 7-bit packed octets. Without ``septets`` the count is len*8//7: a
    trailing all-zero padding septet then reads as '@' (23.038 pads with CR instead)."""
    count = len(octets) * 8 // 7 if septets is None else min(septets, len(octets) * 8 // 7)
    acc = int.from_bytes(octets, "little")
    return bytes((acc >> (7 * i)) & 0x7F for i in range(count))


# --- all codings -------------------------------------------------------------------


def choose_coding(text: str) -> int:
    """GSM (0) when every char is in the GSM basic or extension table, else UCS2 (8)."""
    return GSM if GSM_CHARS.issuperset(text) else UCS2


def _codec_error(text: str, data_coding: int, exc: UnicodeEncodeError, name: str) -> EncodingError:
    ch = text[exc.start]
    return EncodingError(
        f"character {ch!r} (U+{ord(ch):04X}) at position {exc.start} cannot be encoded "
        f"as {name} (data_coding {data_coding})",
        data_coding=data_coding,
        char=ch,
        position=exc.start,
    )


def encode_text(text: str | bytes, data_coding: int) -> bytes:
    """Encode ``text`` for ``data_coding``; raises EncodingError naming the bad char.

    Octet codings (2, 4) pass bytes through; a str for them is taken as Latin-1.
    """
    base = alphabet(data_coding)
    if isinstance(text, bytes):
        if base == OCTET:
            return text
        raise EncodingError(
            f"bytes are only accepted for octet data codings, not {data_coding}",
            data_coding=data_coding,
        )
    if base == GSM:
        return encode_gsm(text)
    name = {IA5: "ascii", LATIN1: "latin-1", OCTET: "latin-1", UCS2: "utf-16-be"}[base]
    try:
        # utf-16-be writes emoji as surrogate pairs and refuses lone surrogates.
        return text.encode(name)
    except UnicodeEncodeError as exc:
        raise _codec_error(text, data_coding, exc, name) from None


def decode_text(data: bytes, data_coding: int) -> str:
    """Decode ``data`` sent with ``data_coding``; never raises (bad input -> U+FFFD).

    Unknown codings decode as Latin-1, which maps every byte to a char.
    """
    base = alphabet(data_coding)
    if base == GSM:
        return decode_gsm(data)
    if base == UCS2:
        return data.decode("utf-16-be", "replace")
    if base == IA5:
        return data.decode("ascii", "replace")
    return data.decode("latin-1")


# --- segments ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """Payload bytes per segment: ``single`` alone, ``part`` when concatenated."""

    single: int
    part: int
    unit: int  # bytes per counting unit: 2 for UCS2, else 1


_LIMITS: Final[dict[tuple[int, bool], Limits]] = {
    # GSM unpacked: one byte per septet; a UDH of 6 (7) octets takes 7 (8) septets.
    (GSM, False): Limits(160, 153, 1),
    (GSM, True): Limits(160, 152, 1),
    (UCS2, False): Limits(140, 134, 2),
    (UCS2, True): Limits(140, 132, 2),
    (OCTET, False): Limits(140, 134, 1),
    (OCTET, True): Limits(140, 133, 1),
}


def limits_for(data_coding: int, *, reference_16bit: bool = False) -> Limits:
    """Segment limits in bytes of encoded payload (IA5 and Latin-1 count as 8-bit)."""
    base = alphabet(data_coding)
    key = base if base in (GSM, UCS2) else OCTET
    return _LIMITS[key, reference_16bit]


def chunk(payload: bytes, data_coding: int, size: int) -> list[bytes]:
    """Cut ``payload`` into pieces of at most ``size`` bytes, never inside a GSM escape
    pair (0x1B + code) nor a UTF-16 surrogate pair; such a piece is one unit shorter."""
    base = alphabet(data_coding)
    if base == UCS2:
        size -= size % 2
    if size < 2:
        raise ValueError(f"chunk size {size} too small")
    pieces: list[bytes] = []
    start, end_all = 0, len(payload)
    while start < end_all:
        end = min(start + size, end_all)
        if end < end_all:
            if base == GSM and payload[end - 1] == GSM_ESCAPE:
                # The last byte is a lead escape iff the run of 0x1B ending here is odd
                # (the piece starts on a char boundary, so the run pairs up from its start).
                run = 1
                while end - 1 - run >= start and payload[end - 1 - run] == GSM_ESCAPE:
                    run += 1
                if run % 2:
                    end -= 1
            elif base == UCS2 and 0xD8 <= payload[end - 2] <= 0xDB:
                end -= 2  # high surrogate: keep it with its low surrogate
        pieces.append(payload[start:end])
        start = end
    return pieces


@dataclass(frozen=True, slots=True)
class SegmentCount:
    data_coding: int
    units: int  # septets (GSM, escapes count 2), UTF-16 code units (UCS2), else bytes
    segments: int
    per_segment: int  # units allowed per segment at this segment count


def count_segments(
    text: str, data_coding: int | None = None, *, reference_16bit: bool = False
) -> SegmentCount:
    """How many SMS segments ``text`` needs; matches ``split_message``'s part count."""
    coding = choose_coding(text) if data_coding is None else data_coding
    payload = encode_text(text, coding)
    limits = limits_for(coding, reference_16bit=reference_16bit)
    units = len(payload) // limits.unit
    if len(payload) <= limits.single:
        return SegmentCount(coding, units, 1, limits.single // limits.unit)
    segments = len(chunk(payload, coding, limits.part))
    return SegmentCount(coding, units, segments, limits.part // limits.unit)
