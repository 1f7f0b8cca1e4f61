"""What waits to be sent to an operator: a part (one submit_sm) and the queue of them.

Its own module so that the operator (``smppd.link.operator``), its binds (``smppd.link.bind``)
and the spill file (``smppd.link.spill``) all use it without importing one another.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True, eq=False)
class OutboundPart:
    """One submit_sm of a message, waiting for (or holding) a window slot."""

    message_id: str
    part: int  # 1-based
    total: int
    frame: bytes  # the submit_sm, encoded once at accept with sequence number 0
    attempts: int = 0
    in_doubt: int = 0  # sessions that ended with it written and unanswered (smppd.link.bind)
    sent_at: float = 0.0
    bind: str = ""


class PartQueue:
    """FIFO of parts with put-back at the front (a part a dead bind could not send)."""

    def __init__(self) -> None:
        self._items: collections.deque[OutboundPart] = collections.deque()
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        # Set while part of the operator's backlog waits in the store only (see
        # ``Operator.spill``): called each time a part is taken and ``low_water`` or
        # fewer are left.
        self.on_low: Callable[[], None] | None = None
        self.low_water = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, part: OutboundPart) -> None:
        self._items.append(part)
        self._wake()

    def put_front(self, part: OutboundPart) -> None:
        self._items.appendleft(part)
        self._wake()

    def get_nowait(self) -> OutboundPart | None:
        if not self._items:
            return None
        part = self._items.popleft()
        if self.on_low is not None and len(self._items) <= self.low_water:
            self.on_low()
        return part

    async def get(self) -> OutboundPart:
        while not self._items:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # pass the wake-up on to another getter
                raise
        part = self._items.popleft()
        if self.on_low is not None and len(self._items) <= self.low_water:
            self.on_low()
        return part

    def drain(self) -> list[OutboundPart]:
        items = list(self._items)
        self._items.clear()
        return items

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
