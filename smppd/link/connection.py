"""The thin asyncio adapter that drives a sans-IO ``Session`` over a transport.

It feeds received bytes to the session, writes what the session queues (coalesced
into one write per loop iteration), arms one timer at the session's next deadline,
and hands events to a handler that owns the policy. Both the daemon (ESME side) and
the simulator (SMSC side) use it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol, cast

from smppd.protocol.constants import Status
from smppd.protocol.pdu import GenericNack, Pdu, Unbind
from smppd.protocol.session import (
    Closed,
    Event,
    RawRequestReceived,
    RequestExpired,
    RequestReceived,
    ResponseReceived,
    Session,
    State,
)
from smppd.protocol.window import Pending

log = logging.getLogger("smppd.connection")


class ResponseTimeoutError(Exception):
    """No response arrived within the session's response timeout."""


class ConnectionClosedError(ConnectionError):
    """The connection closed before the response arrived."""


class SmppError(Exception):
    """A response with a non-zero command_status, for ``request()`` callers."""

    def __init__(self, pdu: Pdu) -> None:
        super().__init__(f"{pdu.name} status 0x{pdu.command_status:08X}")
        self.pdu = pdu
        self.command_status = pdu.command_status


class ConnectionHandler(Protocol):
    """Policy for one connection; every request received must be answered."""

    def request_received(self, conn: SmppConnection, pdu: Pdu) -> None: ...

    def response_received(self, conn: SmppConnection, pending: Pending, pdu: Pdu) -> None: ...

    def request_expired(self, conn: SmppConnection, pending: Pending) -> None: ...

    def session_event(self, conn: SmppConnection, event: Event) -> None: ...

    def connection_closed(self, conn: SmppConnection, closed: Closed) -> None: ...


class BaseHandler:
    """Defaults: refuse unexpected requests with ESME_RINVCMDID-free generic answers."""

    def request_received(self, conn: SmppConnection, pdu: Pdu) -> None:
        conn.respond(pdu, pdu.response(Status.ESME_RSYSERR) if pdu.response_class
                     else GenericNack(command_status=Status.ESME_RSYSERR))

    def response_received(self, conn: SmppConnection, pending: Pending, pdu: Pdu) -> None:
        pass

    def request_expired(self, conn: SmppConnection, pending: Pending) -> None:
        pass

    def session_event(self, conn: SmppConnection, event: Event) -> None:
        pass

    def connection_closed(self, conn: SmppConnection, closed: Closed) -> None:
        pass


class SmppConnection(asyncio.Protocol):
    def __init__(self, session: Session, handler: ConnectionHandler,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.session = session
        self.handler = handler
        self.loop = loop or asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[Closed] = self.loop.create_future()
        self.peer: tuple[Any, ...] | None = None
        self.lost_error: Exception | None = None  # why the transport went (e.g. a TLS alert)
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._window_waiters: list[asyncio.Future[None]] = []
        self._can_write = asyncio.Event()
        self._can_write.set()

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass: cast, don't assert
        self.transport = cast(asyncio.Transport, transport)
        self.peer = transport.get_extra_info("peername")

    def data_received(self, data: bytes) -> None:
        events = self.session.receive_data(data, self.loop.time())
        self._dispatch(events)
        self._flush()
        if self._timer is None:
            self._arm_timer()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_error = exc
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport = None
        if not self.closed.done():
            self._dispatch([self.session.connection_lost()])
        self._wake_window_waiters()
        self._can_write.set()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # -- sending --

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.closed.done()

    def send(self, pdu: Pdu, context: Any = None) -> int:
        """Queue a request through the window; raises WindowFullError or NotBoundError."""
        if not self.is_open:
            raise ConnectionClosedError("connection is closed")
        sequence = self.session.send_request(pdu, self.loop.time(), context)
        self._schedule_flush()
        self._arm_timer()  # this response may be due before the timer already armed
        return sequence

    def send_encoded(self, frame: bytes, context: Any = None) -> int:
        """``send`` for a request encoded beforehand (``Session.send_encoded``)."""
        if not self.is_open:
            raise ConnectionClosedError("connection is closed")
        session = self.session
        sequence = session.send_encoded(frame, self.loop.time(), context)
        self._schedule_flush()
        # Entries share one timeout, so with others outstanding the armed timer is
        # already due no later than this one: re-arm only for the first entry.
        if len(session.window) == 1:
            self._arm_timer()
        return sequence

    def flush(self) -> None:
        """Write what is queued now instead of at the end of this loop iteration."""
        self._flush()

    def pause_on_any_backlog(self) -> None:
        """Report the transport busy (``drained`` waits) as soon as it holds any
        unwritten byte, not only past 64 KiB."""
        if self.transport is not None:
            self.transport.set_write_buffer_limits(high=0)

    async def request(self, pdu: Pdu, *, check_status: bool = True) -> Pdu:
        """Send a request and wait for its response (bind, unbind, enquire_link, query)."""
        await self.wait_for_window()
        future: asyncio.Future[Pdu] = self.loop.create_future()
        self.send(pdu, future)
        response = await future
        if check_status and response.command_status != Status.ESME_ROK:
            raise SmppError(response)
        return response

    def respond(self, request: Pdu | RawRequestReceived, response: Pdu) -> None:
        if not self.is_open:
            return
        self.session.respond(request, response)
        self._schedule_flush()

    def send_raw(self, data: bytes) -> None:
        if self.is_open:
            self.session.send_raw(data)
            self._schedule_flush()

    async def wait_for_window(self) -> None:
        """Until the window has a free slot (or the connection is gone)."""
        while self.is_open and self.session.window.free == 0:
            waiter: asyncio.Future[None] = self.loop.create_future()
            self._window_waiters.append(waiter)
            await waiter
        if not self.is_open:
            raise ConnectionClosedError("connection is closed")

    async def wait_window_empty(self) -> None:
        """Until every outstanding request has been answered or has expired."""
        while self.is_open and len(self.session.window):
            waiter: asyncio.Future[None] = self.loop.create_future()
            self._window_waiters.append(waiter)
            await waiter
        if not self.is_open and len(self.session.window):
            raise ConnectionClosedError("connection is closed")

    async def drained(self) -> None:
        """Until the transport's write buffer is below its high-water mark."""
        await self._can_write.wait()

    async def unbind(self, grace: float = 5.0) -> None:
        """Orderly close: unbind, wait for unbind_resp (bounded), close the transport."""
        if self.is_open and self.session.state.bound:
            try:
                future: asyncio.Future[Pdu] = self.loop.create_future()
                self.send(Unbind(), future)
                await asyncio.wait_for(asyncio.shield(future), grace)
            except (TimeoutError, ResponseTimeoutError, ConnectionClosedError, SmppError):
                pass
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self._flush()
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- internals --

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        if self._timer is None:
            self._arm_timer()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.session.has_output and self.transport is not None:
            self.transport.write(self.session.data_to_send())

    def _arm_timer(self) -> None:
        """Arm the timer at the session's next deadline, unless one is armed no later."""
        deadline = self.session.next_deadline()
        if deadline is None or self.transport is None:
            return
        if self._timer is not None:
            if self._timer.when() <= deadline:
                return
            self._timer.cancel()
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch(self.session.tick(self.loop.time()))
        self._flush()
        self._arm_timer()

    def _wake_window_waiters(self) -> None:
        waiters, self._window_waiters = self._window_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _dispatch(self, events: list[Event]) -> None:
        handler = self.handler
        freed = False
        for event in events:
            if type(event) is ResponseReceived:
                freed = True
                context = event.pending.context
                if isinstance(context, asyncio.Future):
                    if not context.done():
                        context.set_result(event.pdu)
                else:
                    handler.response_received(self, event.pending, event.pdu)
                handler.session_event(self, event)
            elif type(event) is RequestReceived:
                handler.request_received(self, event.pdu)
            elif type(event) is RequestExpired:
                freed = True
                context = event.pending.context
                if isinstance(context, asyncio.Future):
                    if not context.done():
                        context.set_exception(ResponseTimeoutError("no response in time"))
                else:
                    handler.request_expired(self, event.pending)
            elif type(event) is Closed:
                freed = True
                for pending in event.abandoned:
                    context = pending.context
                    if isinstance(context, asyncio.Future) and not context.done():
                        context.set_exception(ConnectionClosedError(event.reason))
                self._flush()
                if not self.closed.done():
                    self.closed.set_result(event)
                    handler.connection_closed(self, event)
                if self.transport is not None:
                    self.transport.close()
            else:
                handler.session_event(self, event)
        if freed and self._window_waiters:
            self._wake_window_waiters()

    @property
    def state(self) -> State:
        return self.session.state
