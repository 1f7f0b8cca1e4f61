"""SMPP delivery receipts: parse them from deliver_sm, format them for the simulator.

A receipt arrives in one of two forms, often both at once:

* the text form in short_message (SMPP v3.4 appendix B), e.g. ``id:123 sub:001 dlvrd:001
  submit date:2301011200 done date:2301011201 stat:DELIVRD err:000 text:hi``.
  Real SMSCs drop fields, reorder them, change key case, pad with spaces and add
  seconds to the dates, so the parser only relies on the key names;
* TLVs: receipted_message_id, message_state, network_error_code.

When both carry a value, the TLV wins. Either form alone is enough, as long as it
gives an id and a state. Dates are naive: SMSCs send local time without a zone.

Pure code: no smppd import (correlation stands on its own), so the few SMPP numbers
needed are defined here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

# TLV tags (SMPP v3.4 section 5.3.2).
TAG_RECEIPTED_MESSAGE_ID = 0x001E
TAG_NETWORK_ERROR_CODE = 0x0423
# network_error_code's first byte (SMPP 3.4, 5.3.2.31)
NETWORK_TYPES = {1: "ANSI-136", 2: "IS-95", 3: "GSM"}
TAG_MESSAGE_STATE = 0x0427
TAG_MESSAGE_PAYLOAD = 0x0424

# message_state TLV value -> receipt stat word (section 5.2.28 and appendix B).
STATE_TO_STAT: dict[int, str] = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
STAT_TO_STATE: dict[str, int] = {stat: state for state, stat in STATE_TO_STAT.items()}

# Spellings seen in the field, mapped to the canonical 7-letter stat words.
_STAT_ALIASES: dict[str, str] = {
    **{stat: stat for stat in STAT_TO_STATE},
    "DELIVERED": "DELIVRD",
    "DELIVER": "DELIVRD",
    "UNDELIVERABLE": "UNDELIV",
    "UNDELIVERED": "UNDELIV",
    "FAILED": "UNDELIV",
    "ACCEPTED": "ACCEPTD",
    "REJECTED": "REJECTD",
    "REJECT": "REJECTD",
    "EXPIRE": "EXPIRED",
    "DELETE": "DELETED",
}

_INTERMEDIATE_STATS = frozenset({"ENROUTE", "ACCEPTD"})
_FORMAT_TEXT_MAX = 20


class DlrStatus(StrEnum):
    """Our message status for a receipt; ENROUTE and ACCEPTED are intermediate."""

    DELIVERED = "DELIVERED"
    UNDELIVERABLE = "UNDELIVERABLE"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"
    DELETED = "DELETED"
    UNKNOWN = "UNKNOWN"
    ENROUTE = "ENROUTE"
    ACCEPTED = "ACCEPTED"


_STAT_TO_STATUS: dict[str, DlrStatus] = {
    "DELIVRD": DlrStatus.DELIVERED,
    "UNDELIV": DlrStatus.UNDELIVERABLE,
    "EXPIRED": DlrStatus.EXPIRED,
    "REJECTD": DlrStatus.REJECTED,
    "DELETED": DlrStatus.DELETED,
    "UNKNOWN": DlrStatus.UNKNOWN,
    "ENROUTE": DlrStatus.ENROUTE,
    "ACCEPTD": DlrStatus.ACCEPTED,
}


class ReceiptError(ValueError):
    """The deliver_sm is not a usable receipt; ``field`` names what is missing or wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Receipt:
    message_id: str  # as the SMSC sent it; see correlation.ids to match it
    stat: str  # one of STAT_TO_STATE's keys
    err: str | None = None
    sub: int | None = None
    dlvrd: int | None = None
    submit_date: datetime | None = None
    done_date: datetime | None = None
    text: str | None = None
    network_error_code: bytes | None = None  # 3 bytes: network type, then error code
    message_state: int | None = None  # the TLV value, when one was sent

    @property
    def is_final(self) -> bool:
        return self.stat not in _INTERMEDIATE_STATS

    @property
    def status(self) -> DlrStatus:
        return _STAT_TO_STATUS[self.stat]

    @property
    def network_error_fields(self) -> dict[str, Any] | None:
        """network_error_code for an event: network type (number and name) and code."""
        found = self.network_error
        if found is None:
            return None
        network_type, code = found
        return {"network_type": network_type,
                "network": NETWORK_TYPES.get(network_type, "unknown"), "code": code}

    @property
    def network_error(self) -> tuple[int, int] | None:
        """network_error_code as (network type, error code)."""
        if self.network_error_code is None:
            return None
        nec = self.network_error_code
        return nec[0], int.from_bytes(nec[1:3], "big")


_ID, _SUB, _DLVRD, _SUBMIT, _DONE, _STAT, _ERR, _TEXT = range(1, 9)
# Key words as sent, lowercased; "submit date" and "done date" are looked up by their first word.
_KEYS: dict[str, int] = {
    "id": _ID,
    "sub": _SUB,
    "dlvrd": _DLVRD,
    "submit_date": _SUBMIT,
    "submitdate": _SUBMIT,
    "done_date": _DONE,
    "donedate": _DONE,
    "stat": _STAT,
    "err": _ERR,
    "text": _TEXT,
}
_DATE_KEYS: dict[str, int] = {"submit": _SUBMIT, "done": _DONE}

# Fast path: the canonical order, any key case and spacing, no ':' inside a value.
# Whatever it does not match goes through the general split; both give the same fields.
_CANONICAL = re.compile(
    r"\s*id\s*:\s*([^\s:]*)\s+sub\s*:\s*([^\s:]*)\s+dlvrd\s*:\s*([^\s:]*)"
    r"\s+submit date\s*:\s*([^\s:]*)\s+done date\s*:\s*([^\s:]*)"
    r"\s+stat\s*:\s*([^\s:]*)\s+err\s*:\s*([^\s:]*)(?:\s+text\s*:(.*))?\s*",
    re.IGNORECASE | re.DOTALL,
)
_CANONICAL_KEYS = (_ID, _SUB, _DLVRD, _SUBMIT, _DONE, _STAT, _ERR, _TEXT)


def normalise_stat(raw: str) -> str:
    """Map a stat word as sent (any case, long spellings) to its canonical form, else UNKNOWN."""
    return _STAT_ALIASES.get(raw.strip().upper(), "UNKNOWN")


def parse_receipt(short_message: bytes, tlvs: Mapping[int, bytes]) -> Receipt:
    """Parse a receipt from a deliver_sm's short_message and TLVs (tag -> value).

    Raises ReceiptError (and nothing else, whatever the bytes) when no id or no
    state can be found.
    """
    fields = _text_fields(_receipt_text(short_message, tlvs))

    message_id = _tlv_message_id(tlvs.get(TAG_RECEIPTED_MESSAGE_ID))
    if message_id is None:
        message_id = (fields.get(_ID) or "").strip()
        if not message_id:
            raise ReceiptError("id", "no receipted_message_id TLV and no id: in the text")

    message_state = _tlv_message_state(tlvs.get(TAG_MESSAGE_STATE))
    if message_state is not None:
        stat = STATE_TO_STAT[message_state]
    elif (raw_stat := fields.get(_STAT)) is not None:
        stat = normalise_stat(raw_stat)
    else:
        raise ReceiptError("stat", "no message_state TLV and no stat: in the text")

    raw_nec = tlvs.get(TAG_NETWORK_ERROR_CODE)
    nec = bytes(raw_nec) if raw_nec is not None and len(raw_nec) == 3 else None
    err = (fields.get(_ERR) or "").strip() or None
    if err is None and nec is not None:
        # A TLV-only failure: its error code stands in for the text's err field.
        err = format(int.from_bytes(nec[1:3], "big"), "03d")
    text = fields.get(_TEXT)
    return Receipt(
        message_id=message_id,
        stat=stat,
        err=err,
        sub=_int_field(fields.get(_SUB)),
        dlvrd=_int_field(fields.get(_DLVRD)),
        submit_date=_date_field(fields.get(_SUBMIT)),
        done_date=_date_field(fields.get(_DONE)),
        text=text.strip() if text is not None else None,
        network_error_code=nec,
        message_state=message_state,
    )


def _receipt_text(short_message: bytes, tlvs: Mapping[int, bytes]) -> str:
    raw = short_message or tlvs.get(TAG_MESSAGE_PAYLOAD, b"")
    # A few SMSCs send the receipt in UCS-2; its first byte is then NUL.
    if raw[:1] == b"\x00" and len(raw) % 2 == 0:
        text = raw.decode("utf-16-be", errors="replace")
    else:
        text = raw.decode("latin-1")  # receipt text is ASCII; latin-1 never fails
    return text.rstrip("\x00")  # some SMSCs NUL-terminate short_message


def _text_fields(text: str) -> dict[int, str | None]:
    """Key index -> raw value (not stripped), None or absent when the key was not sent."""
    m = _CANONICAL.fullmatch(text)
    if m is None:
        return _split_fields(text)
    return dict(zip(_CANONICAL_KEYS, m.groups(), strict=True))


def _split_fields(text: str) -> dict[int, str | None]:
    """Key index -> raw value; the first occurrence of a key wins, text: takes the rest.

    A hand split on ":" (1.7x faster than a regex finditer): every piece but the
    last ends with the key of the next value, unless that colon was part of a value.
    """
    parts = text.split(":")
    last = len(parts) - 1
    fields: dict[int, str | None] = {}
    key = 0  # 0: the text before the first key, ignored
    value: str | None = None
    for i, part in enumerate(parts):
        if key == _TEXT:
            fields.setdefault(_TEXT, ":".join(parts[i:]))
            return fields
        split = _split_key(part) if i < last else None
        if split is None:  # no key before the next colon: it belongs to the value
            value = part if value is None else f"{value}:{part}"
            continue
        head, next_key = split
        if key:
            fields.setdefault(key, head if value is None else f"{value}:{head}")
        key, value = next_key, None
    if key:
        fields.setdefault(key, value or "")
    return fields


def _split_key(part: str) -> tuple[str, int] | None:
    """Split "value key" (the piece before a colon) into value and key index."""
    words = part.rsplit(None, 1)
    if not words:
        return None
    word = words[-1].lower()
    head = words[0] if len(words) == 2 else ""
    if word == "date":
        words = head.rsplit(None, 1)
        if words and (key := _DATE_KEYS.get(words[-1].lower())):
            return (words[0] if len(words) == 2 else ""), key
        return None
    key = _KEYS.get(word)
    return None if key is None else (head, key)


def _tlv_message_id(value: bytes | None) -> str | None:
    if value is None:
        return None
    message_id = value.split(b"\x00", 1)[0].decode("latin-1").strip()
    return message_id or None


def _tlv_message_state(value: bytes | None) -> int | None:
    if value is None or len(value) != 1 or value[0] not in STATE_TO_STAT:
        return None  # malformed: fall back to the text
    return value[0]


def _int_field(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 10):
        return None
    return int(value)


def _date_field(value: str | None) -> datetime | None:
    """YYMMDDhhmm, or YYMMDDhhmmss as some SMSCs send it; anything else is None."""
    if value is None:
        return None
    v = value.strip()
    if len(v) == 10:
        v += "00"
    elif len(v) != 12:
        return None
    if not (v.isascii() and v.isdigit()):
        return None
    # One int() and divmods: twice as fast as six slices, and this runs per receipt.
    rest, second = divmod(int(v), 100)
    rest, minute = divmod(rest, 100)
    rest, hour = divmod(rest, 100)
    rest, day = divmod(rest, 100)
    year, month = divmod(rest, 100)
    try:
        return datetime(2000 + year, month, day, hour, minute, second)
    except ValueError:  # month 13, hour 25 and the like
        return None


def format_receipt(
    message_id: str,
    stat: str,
    *,
    submit_date: datetime,
    done_date: datetime,
    err: str = "000",
    sub: int = 1,
    dlvrd: int = 1,
    text: str = "",
) -> bytes:
    """The canonical text form of a receipt, as the SMSC simulator sends it."""
    canonical = _STAT_ALIASES.get(stat.upper())
    if canonical is None:
        raise ValueError(f"unknown receipt stat {stat!r}")
    body = (
        f"id:{message_id} sub:{sub:03d} dlvrd:{dlvrd:03d}"
        f" submit date:{submit_date:%y%m%d%H%M} done date:{done_date:%y%m%d%H%M}"
        f" stat:{canonical} err:{err} text:{text[:_FORMAT_TEXT_MAX]}"
    )
    return body.encode("latin-1", errors="replace")


def receipt_tlvs(
    message_id: str,
    state: int | str,
    network_error_code: bytes | None = None,
) -> list[tuple[int, bytes]]:
    """The receipt TLVs; ``state`` is a message_state value (1..8) or a stat word."""
    if isinstance(state, str):
        stat = _STAT_ALIASES.get(state.upper())
        if stat is None:
            raise ValueError(f"unknown receipt stat {state!r}")
        state = STAT_TO_STATE[stat]
    if state not in STATE_TO_STAT:
        raise ValueError(f"message_state must be 1..8, got {state}")
    tlvs = [
        (TAG_RECEIPTED_MESSAGE_ID, message_id.encode("latin-1") + b"\x00"),
        (TAG_MESSAGE_STATE, bytes([state])),
    ]
    if network_error_code is not None:
        if len(network_error_code) != 3:
            raise ValueError("network_error_code must be 3 bytes: network type, error code")
        tlvs.append((TAG_NETWORK_ERROR_CODE, bytes(network_error_code)))
    return tlvs
