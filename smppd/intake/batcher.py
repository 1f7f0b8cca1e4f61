"""Work that arrives one item at a time, handled in batches by a few tasks.

A batch takes everything that arrived while the running batches waited on I/O
(a store commit, a publish ack), so the cost of a round trip is shared by as many
items as came meanwhile. A new task starts only when every running one is busy
with a batch of its own, up to ``workers`` at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    def __init__(self, handle: Callable[[list[T]], Awaitable[None]], *, workers: int,
                 spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[Any]],
                 on_batch_done: Callable[[], None] | None = None) -> None:
        self._handle = handle
        self._on_batch_done = on_batch_done
        self.pending = 0  # items added and not yet handled (waiting or in a batch)
        self._workers = workers
        self._spawn = spawn
        self._items: list[T] = []
        self._running = 0
        self._starting = False  # a task spawned that has not taken its batch yet

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T) -> None:
        self._items.append(item)
        self.pending += 1
        if not self._starting and self._running < self._workers:
            self._running += 1
            self._starting = True
            self._spawn(self._work())

    async def _work(self) -> None:
        try:
            self._starting = False
            while self._items:
                batch, self._items = self._items, []
                try:
                    await self._handle(batch)
                finally:
                    self.pending -= len(batch)
                if self._on_batch_done is not None:
                    self._on_batch_done()
        finally:
            self._running -= 1
