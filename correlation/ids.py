"""SMSC message ids reduced to one key, so a receipt meets the submit it answers.

SMSCs write the same id differently on the two sides: hex in submit_sm_resp and
decimal in the receipt (or the reverse), with or without leading zeros, in either
letter case. Each operator's config says which form each side uses
(``submit_resp_id``, ``receipt_id``); normalising each side with its own form gives
the same key for the same message.

The key of a numeric id is its integer value in lowercase hex without leading
zeros ("0" for zero): decimal "10597059", hex "A1B2C3" and hex "00a1b2c3" all give
"a1b2c3". An id that is not a number in the stated base (a UUID, "MSG-1") is kept
as text: stripped and lowercased, so "ABCDEF" as text and as hex meet too.

Rule for ``auto``: only decimal digits means decimal; decimal digits with a-f means
hex; anything else is text. So "1234" under auto is decimal, even if the SMSC meant
hex: where that matters, configure the form, or let a matcher try every reading
with ``candidate_keys`` (``readings`` names them).
"""

from __future__ import annotations

import re
from typing import Literal

IdForm = Literal["decimal", "hex", "auto", "text"]

_DECIMAL = re.compile(r"[0-9]+")
_HEX = re.compile(r"(?:0[xX])?([0-9a-fA-F]+)")
# SMPP message_ids are at most 64 characters; far longer "numbers" are not ids, and Python
# refuses to convert decimal strings above 4300 digits.
_MAX_NUMERIC_LEN = 128


def normalise_id(raw: str, form: IdForm) -> str:
    """The matching key of an id as sent, read in its side's configured form."""
    text = raw.strip(" \t\r\n\x00")
    if form == "text":
        return text.lower()
    if form == "decimal":
        key = _decimal_key(text)
    elif form == "hex":
        key = _hex_key(text)
    elif form == "auto":
        key = _decimal_key(text) or _hex_key(text)
    else:
        raise ValueError(f"unknown message id form {form!r}: use decimal, hex, auto or text")
    return key or text.lower()


# The readings of a receipt id under "auto", by name, in the default order of preference:
# "decimal" and "hex" read the receipt id in that base; "hex-digits" is for an SMSC that
# answers submits in hex and receipts in decimal when the hex id has no letter (an "auto"
# submit side read that id as decimal: receipt "68719476736" is hex "1000000000", which
# "auto" stored as the key of decimal 1000000000); "text" is the id as text.
READINGS = ("decimal", "hex", "hex-digits", "text")


def readings(raw: str) -> tuple[tuple[str, str], ...]:
    """(reading, key) for every reading the receipt id has, in READINGS order."""
    text = raw.strip(" \t\r\n\x00")
    decimal = _decimal_key(text)
    hex_digits = _decimal_key(decimal) if decimal is not None else None
    found = zip(READINGS, (decimal, _hex_key(text), hex_digits, text.lower()), strict=True)
    return tuple((name, key) for name, key in found if key)


def candidate_keys(raw: str) -> tuple[str, ...]:
    """Every key the id could have (decimal, hex, hex-digits, text; no duplicates), for a
    matcher that does not know the form. Beware: more readings, more chance of a false
    match (see correlation.matcher for how the readings are tried)."""
    return tuple(dict.fromkeys(key for _, key in readings(raw)))


def _decimal_key(text: str) -> str | None:
    if len(text) > _MAX_NUMERIC_LEN or not _DECIMAL.fullmatch(text):
        return None
    return format(int(text), "x")


def _hex_key(text: str) -> str | None:
    m = _HEX.fullmatch(text) if len(text) <= _MAX_NUMERIC_LEN + 2 else None
    if m is None:
        return None
    return format(int(m[1], 16), "x")
