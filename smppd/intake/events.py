"""The event sink seam: where delivery receipts and MO messages go.

Embedded mode stores them (readable through the API); the distributed mode
publishes them on NATS (``sms.dlr.inbound``, ``sms.mo.inbound``). Shadow mode
correlates everything and publishes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from correlation.store import CorrelationStore

DLR_SCHEMA = "smppd.dlr.v1"
MO_SCHEMA = "smppd.mo.v1"


class EventSink(Protocol):
    async def publish(self, kind: str, event: dict[str, Any]) -> None:
        """kind is "dlr" or "mo"; event is versioned JSON (its "schema" field)."""

    async def publish_many(self, kind: str, events: Sequence[dict[str, Any]]) -> None:
        """``publish`` for many events of one kind: returns once every one is out."""


class StoredEvents:
    """Embedded sink: events go into the store's events table."""

    def __init__(self, store: CorrelationStore) -> None:
        self._store = store

    async def publish(self, kind: str, event: dict[str, Any]) -> None:
        await self._store.store_event(kind, event)

    async def publish_many(self, kind: str, events: Sequence[dict[str, Any]]) -> None:
        await self._store.store_events(kind, events)


class ShadowSink:
    """Shadow mode: correlate and count, publish nothing."""

    def __init__(self) -> None:
        self.suppressed = 0

    async def publish(self, kind: str, event: dict[str, Any]) -> None:
        self.suppressed += 1

    async def publish_many(self, kind: str, events: Sequence[dict[str, Any]]) -> None:
        self.suppressed += len(events)
