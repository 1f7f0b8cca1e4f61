"""A bounded ring buffer of the PDUs an MNO saw and sent, for tests to assert on."""

from __future__ import annotations

from collections import deque
from typing import Any

from smppd.protocol.constants import CommandId, Tag, status_name
from smppd.protocol.pdu import ShortMessage, tlv_int

_SAR_TAGS = {
    Tag.SAR_MSG_REF_NUM: "sar_msg_ref_num",
    Tag.SAR_TOTAL_SEGMENTS: "sar_total_segments",
    Tag.SAR_SEGMENT_SEQNUM: "sar_segment_seqnum",
}


class Recorder:
    """Last ``limit`` PDUs; ``enabled`` off makes ``record`` a no-op (benchmarks)."""

    def __init__(self, limit: int = 10_000, enabled: bool = True) -> None:
        self.enabled = enabled
        self._entries: deque[dict[str, Any]] = deque(maxlen=limit)

    def record(self, now: float, direction: str, command_id: int, status: int, sequence: int,
               conn_id: int, **details: Any) -> None:
        if not self.enabled:
            return
        entry: dict[str, Any] = {
            "time": now,
            "direction": direction,  # "in" (from the ESME) or "out"
            "command": _command_name(command_id),
            "status": status,
            "status_name": status_name(status),
            "sequence": sequence,
            "conn": conn_id,
        }
        entry.update(details)
        self._entries.append(entry)

    def entries(self, command: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        items = [e for e in self._entries if command is None or e["command"] == command]
        return items[-limit:] if limit else items

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def message_details(pdu: ShortMessage) -> dict[str, Any]:
    """What a test wants to see of a submit_sm or deliver_sm."""
    details: dict[str, Any] = {
        "source_addr": pdu.source_addr,
        "source_addr_ton": pdu.source_addr_ton,
        "source_addr_npi": pdu.source_addr_npi,
        "destination_addr": pdu.destination_addr,
        "dest_addr_ton": pdu.dest_addr_ton,
        "dest_addr_npi": pdu.dest_addr_npi,
        "data_coding": pdu.data_coding,
        "esm_class": pdu.esm_class,
        "registered_delivery": pdu.registered_delivery,
        "short_message": pdu.short_message.hex(),
    }
    for tag, name in _SAR_TAGS.items():
        value = tlv_int(pdu.tlvs, tag)
        if value is not None:
            details[name] = value
    payload = pdu.tlvs.get(Tag.MESSAGE_PAYLOAD)
    if payload is not None:
        details["message_payload"] = payload.hex()
    return details


def _command_name(command_id: int) -> str:
    try:
        return CommandId(command_id).name.lower()
    except ValueError:
        return f"0x{command_id:08x}"
