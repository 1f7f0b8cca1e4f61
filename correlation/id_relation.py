"""How an operator's SMSC writes its two ids under "auto", learned as they come.

"auto" reads an id with only digits as decimal, which is wrong for an SMSC that
writes hex ids: its "10" is sixteen, and the receipt says "16". Two kinds of
evidence teach the forms, each unambiguous:

* submit side: a submit_sm_resp id in hex with a letter (a-f) shows the SMSC writes
  hex there; from then on the operator's all-digit submit ids are read as hex too.
* receipt side: a receipt that matched under exactly one of its numeric readings
  (decimal, hex, hex-digits; see ``correlation.ids.readings``) is a vote for it;
  ``LEARN_AFTER`` votes for one form and none for the other set that form's reading
  first. Until then the default order is used, and the other readings are tried
  only once the first had the hold time to match (``correlation.matcher``).

Each fact is learned once per process, logged once by the matcher and shown in the
API (``learned``).
"""

from __future__ import annotations

import re
from collections import Counter

from correlation.ids import READINGS, IdForm, normalise_id, readings

LEARN_AFTER = 3

# receipt form -> the readings tried, first to last
_ORDERS: dict[str | None, tuple[str, ...]] = {
    None: READINGS,
    "decimal": ("decimal", "hex-digits", "hex", "text"),
    "hex": ("hex", "decimal", "hex-digits", "text"),
}
_NUMERIC = ("decimal", "hex", "hex-digits")
_HEX_WITH_LETTER = re.compile(r"(?:0[xX])?[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*")


class IdRelations:
    """Per operator: the forms learned so far and the votes for the receipt form."""

    def __init__(self) -> None:
        self._submit_hex: set[str] = set()
        self._receipt_form: dict[str, str] = {}
        self._votes: dict[str, Counter[str]] = {}

    def learned(self, operator_id: str) -> dict[str, str]:
        """The forms learned for the operator: ``submit_resp_id`` and ``receipt_id``
        when known (for the API)."""
        found: dict[str, str] = {}
        if operator_id in self._submit_hex:
            found["submit_resp_id"] = "hex"
        if operator_id in self._receipt_form:
            found["receipt_id"] = self._receipt_form[operator_id]
        return found

    def submit_key(self, operator_id: str, smsc_id: str, form: IdForm) -> tuple[str, bool]:
        """The key of a submit_sm_resp id, and whether this id taught the operator's
        submit form (to be logged once)."""
        if form != "auto":
            return normalise_id(smsc_id, form), False
        if operator_id in self._submit_hex:
            return normalise_id(smsc_id, "hex"), False
        key = normalise_id(smsc_id, "auto")
        if not _HEX_WITH_LETTER.fullmatch(smsc_id.strip(" \t\r\n\x00")):
            return key, False
        self._submit_hex.add(operator_id)
        return key, True

    def receipt_keys(self, operator_id: str, raw: str) -> tuple[str, ...]:
        """The receipt id's keys, most likely first for this operator; no duplicates."""
        found = dict(readings(raw))
        order = _ORDERS[self._receipt_form.get(operator_id)]
        return tuple(dict.fromkeys(found[name] for name in order if name in found))

    def receipt_matched(self, operator_id: str, raw: str, key: str) -> str | None:
        """Note that receipt id ``raw`` matched under ``key``; returns the receipt form
        when this match is the one that teaches it (to be logged once), else None."""
        if operator_id in self._receipt_form:
            return None
        names = [name for name, k in readings(raw) if k == key and name in _NUMERIC]
        if len(names) != 1:
            return None  # several readings give this key (or none): it says nothing
        votes = self._votes.setdefault(operator_id, Counter())
        votes["hex" if names[0] == "hex" else "decimal"] += 1
        for form, other in (("decimal", "hex"), ("hex", "decimal")):
            if votes[form] >= LEARN_AFTER and not votes[other]:
                self._receipt_form[operator_id] = form
                del self._votes[operator_id]
                return form
        return None

