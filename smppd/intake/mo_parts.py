"""Concatenated MO messages, joined from their parts (UDH or SAR).

Each part is written to the store before its deliver_sm is answered (the SMSC does
not send an answered part again), and the parts of a whole message are forgotten
only once its MO event is out (``forget``): if that write fails, the deliver_sm that
completed it is answered with a transient error, the SMSC sends it again, and it
completes the message again. After a restart the stored parts are put back
(``restore``). Messages whose parts never all arrive are dropped, oldest first,
beyond ``max_partial`` (``add`` says which, for the store to forget them too).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from correlation.store import MoPartRecord
from smppd.protocol.constants import ESM_UDHI, Tag
from smppd.protocol.pdu import DeliverSm
from smppd.protocol.split import parse_sar, parse_udh

log = logging.getLogger("smppd.mo_parts")  # the name its records have always had

Key = tuple[str, str, int]  # operator, source address, concatenation reference


@dataclass(slots=True)
class Added:
    """What one deliver_sm did: ``body`` is the whole message's once every part is in
    (None while parts are missing); ``key`` and ``part`` are None for a message sent in
    one piece; ``dropped`` are incomplete messages pushed out to make room."""

    body: bytes | None
    key: Key | None = None
    part: MoPartRecord | None = None
    dropped: list[Key] = field(default_factory=list)


class MoParts:
    def __init__(self, max_partial: int = 10_000) -> None:
        self._max_partial = max_partial
        self._parts: dict[Key, dict[int, bytes]] = {}  # insertion order: oldest first

    def __len__(self) -> int:
        return len(self._parts)

    def add(self, operator_id: str, pdu: DeliverSm, at: float) -> Added:
        body = pdu.short_message or pdu.tlvs.get(Tag.MESSAGE_PAYLOAD, b"")
        concat = parse_udh(body) if pdu.esm_class & ESM_UDHI else parse_sar(pdu.tlvs, body)
        if concat is None:
            return Added(body)
        key = (operator_id, pdu.source_addr, concat.reference)
        part = MoPartRecord(operator_id, pdu.source_addr, concat.reference, concat.seq,
                            concat.total, pdu.destination_addr, pdu.data_coding,
                            concat.body, at)
        whole, dropped = self._put(key, concat.seq, concat.total, concat.body)
        return Added(whole, key, part, dropped)

    def restore(self, part: MoPartRecord) -> tuple[Key, bytes | None, list[Key]]:
        """Put back a stored part: (key, the whole body if this completes it, dropped)."""
        key = (part.operator_id, part.source, part.reference)
        whole, dropped = self._put(key, part.seq, part.total, part.body)
        return key, whole, dropped

    def forget(self, key: Key) -> None:
        """The message's event is out: its parts are no longer needed."""
        self._parts.pop(key, None)

    def _put(self, key: Key, seq: int, total: int, body: bytes,
             ) -> tuple[bytes | None, list[Key]]:
        parts = self._parts.get(key)
        dropped: list[Key] = []
        if parts is None:
            parts = self._parts[key] = {}
            dropped = self._bound()
        parts[seq] = body
        if len(parts) < total:
            return None, dropped
        return b"".join(parts[i] for i in sorted(parts)), dropped

    def _bound(self) -> list[Key]:
        dropped = []
        while len(self._parts) > self._max_partial:
            oldest = next(iter(self._parts))
            parts = self._parts.pop(oldest)
            dropped.append(oldest)
            log.warning("incomplete MO message dropped", extra={  # (no MSISDN in logs)
                "event": "mo_parts_dropped", "operator": oldest[0], "parts": len(parts)})
        return dropped
