"""Long-message splitting (UDH, SAR TLVs or message_payload) and UDH parsing.

Works on already-encoded payloads (see ``encoding.encode_text``); GSM payloads are
the unpacked form SMPP data_coding 0 carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

from .constants import ESM_UDHI, Tag
from .encoding import chunk, limits_for

Strategy = Literal["udh", "sar", "payload"]

MAX_PARTS: Final = 255
IE_CONCAT_8BIT: Final = 0x00
IE_CONCAT_16BIT: Final = 0x08


class SplitError(ValueError):
    """A message that cannot be split as asked."""


class TooManyPartsError(SplitError):
    def __init__(self, parts: int, max_parts: int = MAX_PARTS) -> None:
        super().__init__(f"message needs {parts} parts, more than {max_parts}")
        self.parts = parts
        self.max_parts = max_parts


@dataclass(frozen=True, slots=True)
class Part:
    """One submit_sm worth of a message."""

    short_message: bytes
    esm_class: int  # 0 or ESM_UDHI
    tlvs: tuple[tuple[int, bytes], ...]
    number: int  # 1-based
    total: int


def _udh(reference: int, total: int, seq: int, reference_16bit: bool) -> bytes:
    if reference_16bit:
        return bytes((6, IE_CONCAT_16BIT, 4, reference >> 8, reference & 0xFF, total, seq))
    return bytes((5, IE_CONCAT_8BIT, 3, reference, total, seq))


def split_message(
    payload: bytes,
    data_coding: int,
    strategy: Strategy,
    reference: int,
    *,
    reference_16bit: bool = False,
) -> list[Part]:
    """Split an encoded payload into the parts to submit.

    ``reference`` must fit the reference field: 8 bits for a plain UDH, 16 bits for
    a UDH with ``reference_16bit`` and for SAR (whose SAR_MSG_REF_NUM is 2 bytes).
    """
    if strategy not in ("udh", "sar", "payload"):
        raise SplitError(f"unknown long-message strategy {strategy!r}")
    ref_bits = 8 if strategy == "udh" and not reference_16bit else 16
    if not 0 <= reference < 1 << ref_bits:
        raise SplitError(f"reference {reference} does not fit {ref_bits} bits")

    limits = limits_for(data_coding, reference_16bit=reference_16bit)
    if len(payload) <= limits.single:
        return [Part(payload, 0, (), 1, 1)]
    if strategy == "payload":
        return [Part(b"", 0, ((Tag.MESSAGE_PAYLOAD, payload),), 1, 1)]

    chunks = chunk(payload, data_coding, limits.part)
    total = len(chunks)
    if total > MAX_PARTS:
        raise TooManyPartsError(total)
    if strategy == "udh":
        return [
            Part(_udh(reference, total, seq, reference_16bit) + body, ESM_UDHI, (), seq, total)
            for seq, body in enumerate(chunks, 1)
        ]
    ref = reference.to_bytes(2, "big")
    return [
        Part(
            body,
            0,
            (
                (Tag.SAR_MSG_REF_NUM, ref),
                (Tag.SAR_TOTAL_SEGMENTS, bytes((total,))),
                (Tag.SAR_SEGMENT_SEQNUM, bytes((seq,))),
            ),
            seq,
            total,
        )
        for seq, body in enumerate(chunks, 1)
    ]


class Concat(NamedTuple):
    """The concatenation info of one received part, and its body after the UDH."""

    reference: int
    total: int
    seq: int
    body: bytes


def parse_udh(short_message: bytes) -> Concat | None:
    """Read the concatenation IE (0x00 or 0x08) of a short_message sent with UDHI.

    Other IEs are skipped. Returns None when the UDH is malformed or holds no usable
    concatenation IE (23.040: a sequence number of 0 or above the total is ignored).
    """
    if not short_message:
        return None
    end = 1 + short_message[0]
    if end > len(short_message):
        return None
    found: Concat | None = None
    pos = 1
    while pos + 2 <= end:
        iei, length = short_message[pos], short_message[pos + 1]
        data = short_message[pos + 2 : pos + 2 + length]
        pos += 2 + length
        if pos > end:
            return None  # an IE runs past the header
        if iei == IE_CONCAT_8BIT and length == 3:
            found = Concat(data[0], data[1], data[2], b"")
        elif iei == IE_CONCAT_16BIT and length == 4:
            found = Concat(int.from_bytes(data[:2], "big"), data[2], data[3], b"")
    if found is None or not 1 <= found.seq <= found.total:
        return None
    return found._replace(body=short_message[end:])


def parse_sar(tlvs: Mapping[int, bytes], body: bytes) -> Concat | None:
    """The concatenation info of a part sent with the SAR TLVs (sar_msg_ref_num,
    sar_total_segments, sar_segment_seqnum), or None when they are missing, malformed
    or name a sequence number of 0 or above the total."""
    ref = tlvs.get(Tag.SAR_MSG_REF_NUM)
    total = tlvs.get(Tag.SAR_TOTAL_SEGMENTS)
    seq = tlvs.get(Tag.SAR_SEGMENT_SEQNUM)
    if ref is None or total is None or seq is None:
        return None
    if len(ref) != 2 or len(total) != 1 or len(seq) != 1 or not 1 <= seq[0] <= total[0]:
        return None
    return Concat(int.from_bytes(ref, "big"), total[0], seq[0], body)
