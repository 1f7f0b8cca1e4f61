"""Message-id formats of real SMSCs, from a per-MNO counter (deterministic).

``decimal``, ``hex`` (lower), ``HEX`` (upper), each with an optional fixed width
padded with leading zeros (``decimal:10``, ``HEX:8``), and ``uuid`` (the counter as a
UUID's 128-bit integer).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

IdFormatter = Callable[[int], str]

_BASES = {"decimal": "d", "hex": "x", "HEX": "X"}


def parse_id_format(spec: str) -> IdFormatter:
    """A function turning the counter into an id string; ValueError for a bad spec."""
    if spec == "uuid":
        return lambda n: str(uuid.UUID(int=n))
    base, _, width = spec.partition(":")
    code = _BASES.get(base)
    if code is None:
        raise ValueError(f"unknown id format {spec!r}: decimal, hex, HEX (optionally :width) "
                         "or uuid")
    if not width:
        return ("{:" + code + "}").format
    if not width.isdigit() or not 1 <= int(width) <= 64:
        raise ValueError(f"id format {spec!r}: width must be 1..64")
    return ("{:0" + width + code + "}").format
