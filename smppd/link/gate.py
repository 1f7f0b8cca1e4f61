"""A gate the send loops wait at: an operator's pause and its hold-back are one each."""

from __future__ import annotations

import asyncio


class Gate:
    """Open or shut. ``shut`` is a plain attribute because the send loop reads it for
    every part; ``wait_open`` suspends only while the gate is shut."""

    __slots__ = ("_open", "shut")

    def __init__(self) -> None:
        self.shut = False
        self._open = asyncio.Event()
        self._open.set()

    def close(self) -> None:
        self.shut = True
        self._open.clear()

    def open(self) -> None:
        self.shut = False
        self._open.set()

    async def wait_open(self) -> None:
        await self._open.wait()
