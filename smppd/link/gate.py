"""A gate the send loops wait at: an operator's pause and its hold-back are one each."""

from __future__ import annotations

import asyncio


class Gate:
    """Open or shut; ``wait_open`` suspends only while it is shut."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()

    @property
    def shut(self) -> bool:
        return not self._open.is_set()

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def wait_open(self) -> None:
        await self._open.wait()
