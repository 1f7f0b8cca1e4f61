"""Concatenated MO messages, joined from their parts (UDH or SAR).

The parts of a message are kept until its MO event is out (``forget``): if that
write fails, the deliver_sm that completed it is answered with a transient error,
the SMSC sends it again, and it completes the message again. Messages whose parts
never all arrive are dropped, oldest first, beyond ``max_partial``.
"""

from __future__ import annotations

import logging

from smppd.protocol.constants import ESM_UDHI, Tag
from smppd.protocol.pdu import DeliverSm
from smppd.protocol.split import parse_sar, parse_udh

log = logging.getLogger(__name__)

Key = tuple[str, str, int]  # operator, source address, concatenation reference


class MoParts:
    def __init__(self, max_partial: int = 10_000) -> None:
        self._max_partial = max_partial
        self._parts: dict[Key, dict[int, bytes]] = {}  # insertion order: oldest first

    def __len__(self) -> int:
        return len(self._parts)

    def add(self, operator_id: str, pdu: DeliverSm) -> tuple[Key | None, bytes | None]:
        """(key, body): the whole message's body once every part is in, None while
        parts are missing; key is None for a message sent in one piece."""
        body = pdu.short_message or pdu.tlvs.get(Tag.MESSAGE_PAYLOAD, b"")
        concat = parse_udh(body) if pdu.esm_class & ESM_UDHI else parse_sar(pdu.tlvs, body)
        if concat is None:
            return None, body
        key = (operator_id, pdu.source_addr, concat.reference)
        parts = self._parts.get(key)
        if parts is None:
            parts = self._parts[key] = {}
            self._bound()
        parts[concat.seq] = concat.body
        if len(parts) < concat.total:
            return key, None
        return key, b"".join(parts[i] for i in sorted(parts))

    def forget(self, key: Key) -> None:
        """The message's event is out: its parts are no longer needed."""
        self._parts.pop(key, None)

    def _bound(self) -> None:
        while len(self._parts) > self._max_partial:
            oldest = next(iter(self._parts))
            parts = self._parts.pop(oldest)
            log.warning("incomplete MO message dropped", extra={  # (no MSISDN in logs)
                "event": "mo_parts_dropped", "operator": oldest[0], "parts": len(parts)})
