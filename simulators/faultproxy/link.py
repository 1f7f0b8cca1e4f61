"""One proxied connection: two links (upstream, downstream), each reading its source,
running every chunk through the toxics attached to it, and writing its destination.

A link reads into a small queue (so a slow toxic holds the sender back, as TCP would)
and a pump passes each chunk through the chain in order, the chain taken afresh for
every chunk: a toxic added or removed applies to the next data of live connections,
and one removed while it holds data lets that data through.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Callable, Coroutine, Iterable
from functools import partial
from typing import Any

from .clock import Clock
from .toxics import DOWNSTREAM, UPSTREAM, Behaviour, Chunk, Toxic, behaviour

READ_SIZE = 65536
QUEUE_CHUNKS = 16


class Attachment:
    """One toxic on one link: its behaviour, whether it applies (rolled against its
    toxicity when attached, as Toxiproxy does per connection) and its own task."""

    def __init__(self, toxic: Toxic, link: Link, rng: random.Random) -> None:
        self.toxic = toxic
        self.link = link
        self.rng = rng
        self.behaviour: Behaviour = behaviour(toxic, rng)
        self.removed = False
        self._interrupt = asyncio.Event()
        self.active = False
        self.task: asyncio.Task[None] | None = None
        self.roll()

    def roll(self) -> None:
        """(Re)decide whether the toxic applies and (re)start its task; what it holds
        goes on at once, as when Toxiproxy restarts a toxic on update."""
        self.interrupt()
        self.stop()
        self.active = self.rng.random() < self.toxic.toxicity
        if self.active:
            self.task = self.link.conn.spawn(self.behaviour.on_attach(self))

    def interrupt(self) -> None:
        """Wake whatever waits in this toxic: it lets its data through now."""
        self._interrupt.set()
        self._interrupt = asyncio.Event()

    def stop(self) -> None:
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        self.task = None

    # Effects
    def now(self) -> float:
        return self.link.clock.now()

    async def sleep_until(self, deadline: float) -> bool:
        if self.removed:
            return False
        if deadline <= self.now():  # no wait (a slicer without delay): no tasks either
            return True
        interrupt = self._interrupt
        sleep = asyncio.ensure_future(self.link.clock.sleep_until(deadline))
        woken = asyncio.ensure_future(interrupt.wait())
        try:
            await asyncio.wait((sleep, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            woken.cancel()
        return not interrupt.is_set()

    def close(self) -> None:
        self.link.conn.close()

    def reset(self) -> None:
        self.link.conn.reset()


class Link:
    def __init__(self, stream: str, conn: Connection, source: asyncio.StreamReader,
                 dest: asyncio.StreamWriter) -> None:
        self.stream = stream
        self.conn = conn
        self.clock = conn.clock
        self.source = source
        self.dest = dest
        self.attachments: list[Attachment] = []
        self.finished = False
        self.received = 0  # bytes read from the source
        self.processed = 0  # of those, bytes done with the toxics (passed on or dropped)
        self.sent = 0  # bytes written to the destination
        self._queue: asyncio.Queue[Chunk | None] = asyncio.Queue(QUEUE_CHUNKS)

    def attach(self, toxic: Toxic) -> None:
        self.attachments.append(Attachment(toxic, self, self.conn.rng))

    def detach(self, toxic: Toxic) -> None:
        for attachment in self.attachments:
            if attachment.toxic is toxic:
                self.attachments.remove(attachment)
                attachment.removed = True
                attachment.interrupt()
                attachment.stop()
                if attachment.active:
                    attachment.behaviour.on_remove(attachment)
                return

    def reroll(self, toxic: Toxic) -> None:
        for attachment in self.attachments:
            if attachment.toxic is toxic:
                attachment.roll()

    def stop(self) -> None:
        for attachment in self.attachments:
            attachment.stop()

    async def read(self) -> None:
        try:
            while data := await self.source.read(READ_SIZE):
                self.received += len(data)
                await self._queue.put(Chunk(data, self.clock.now()))
        except OSError:  # reset by the peer: the whole connection goes
            self.conn.close()
            return
        await self._queue.put(None)

    async def pump(self) -> None:
        try:
            while (chunk := await self._queue.get()) is not None:
                chain = [a for a in self.attachments if a.active]
                await self._through(chain, chunk)
                self.processed += len(chunk.data)
                if self.conn.closed:
                    return
            for attachment in [a for a in self.attachments if a.active]:
                await attachment.behaviour.on_eof(attachment)
            if self.dest.can_write_eof() and not self.conn.closed:
                self.dest.write_eof()  # half-close: the other direction may still flow
        except OSError:
            self.conn.close()
            return
        self.finished = True
        self.conn.link_finished()

    async def _through(self, chain: list[Attachment], chunk: Chunk) -> None:
        while chain and chain[0].removed:
            chain = chain[1:]
        if not chain:
            await self._write(chunk)
            return
        first = chain[0]
        await first.behaviour.on_data(chunk, partial(self._through, chain[1:]), first)

    async def _write(self, chunk: Chunk) -> None:
        if self.conn.closed or not chunk.data:
            return
        self.dest.write(chunk.data)
        self.sent += len(chunk.data)
        await self.dest.drain()


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Connection:
    def __init__(self, client: Streams, upstream: Streams, toxics: Iterable[Toxic], *,
                 clock: Clock, rng: random.Random,
                 on_closed: Callable[[Connection], None]) -> None:
        self.clock = clock
        self.rng = rng
        self.closed = False
        self._writers = (client[1], upstream[1])
        self._on_closed = on_closed
        self.links = {UPSTREAM: Link(UPSTREAM, self, client[0], upstream[1]),
                      DOWNSTREAM: Link(DOWNSTREAM, self, upstream[0], client[1])}
        self._tasks: set[asyncio.Task[None]] = set()
        for toxic in toxics:
            self.attach(toxic)

    def start(self) -> None:
        for link in self.links.values():
            self.spawn(link.read())
            self.spawn(link.pump())

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task of this connection: cancelled when it closes, awaited by wait_closed."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def attach(self, toxic: Toxic) -> None:
        if not self.closed:
            self.links[toxic.stream].attach(toxic)

    def detach(self, toxic: Toxic) -> None:
        self.links[toxic.stream].detach(toxic)

    def reroll(self, toxic: Toxic) -> None:
        if not self.closed:
            self.links[toxic.stream].reroll(toxic)

    def link_finished(self) -> None:
        if all(link.finished for link in self.links.values()):
            self.close()

    def close(self) -> None:
        """Both sides closed after what was already written (FIN)."""
        if self._shut():
            for writer in self._writers:
                writer.close()

    def reset(self) -> None:
        """Both sides aborted with SO_LINGER 0: the peers get a TCP RST."""
        if self._shut():
            for writer in self._writers:
                sock = writer.get_extra_info("socket")
                with contextlib.suppress(AttributeError, OSError):  # gone: nothing to reset
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()

    def _shut(self) -> bool:
        if self.closed:
            return False
        self.closed = True
        for link in self.links.values():
            link.stop()
        me = asyncio.current_task()
        for task in list(self._tasks):
            if task is not me:
                task.cancel()
        self._on_closed(self)
        return True

    async def wait_closed(self) -> None:
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for writer in self._writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()
