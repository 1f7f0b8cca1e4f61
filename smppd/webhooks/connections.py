"""A lean HTTP/1.1 client for webhook POSTs: keep-alive connections per receiver
(scheme, host, port), one request at a time on each, the response parsed by httptools
(llhttp, the parser Node.js uses; nothing here parses HTTP by hand).

Why not aiohttp's client: a webhook POST through it cost ~250 µs of the daemon's CPU
(a task per request for the body, a timeout context, its request and response objects),
more than the rest of a receipt's handling; this costs ~60 µs, most of it the socket's
send and receive (docs/webhooks.md, "Cost"). What it leaves out on purpose: proxies
(a proxy would see every event), cookies, compression, redirects (smppd.webhooks.client
follows them itself, on the same host only).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import NamedTuple, cast

import httptools

IDLE = 30.0  # seconds an unused connection is kept open
MAX_RESPONSE = 1 << 20  # bytes of a response (its body is thrown away) before giving up


class Response(NamedTuple):
    status: int
    location: str | None  # of a redirect


class ResponseError(Exception):
    """The receiver's answer was not HTTP (or too large); the connection is closed."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``request`` sends a request and waits for its answer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, gone: Callable[[_Connection], None],
                 ) -> None:
        self._loop = loop
        self._gone = gone  # told when the connection closes
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._status = 0
        self._location: bytes | None = None
        self._seen = 0  # bytes of the current answer
        self.reusable = False
        self.closed = False
        self.used_at = 0.0

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._seen += len(data)
        try:
            if self._waiter is None:  # nothing asked: a receiver must not send unasked
                raise ResponseError("data before a request")
            if self._seen > MAX_RESPONSE:
                raise ResponseError("response too large")
            self._parser.feed_data(data)
        except (httptools.HttpParserError, ResponseError) as exc:
            self._fail(exc if isinstance(exc, ResponseError) else ResponseError(str(exc)))

    def eof_received(self) -> bool:
        return False  # close: answers without a length end here (connection_lost)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._status >= 200:  # the body ended with the connection: the status counts
                waiter.set_result(Response(self._status, self._decoded_location()))
            else:
                waiter.set_exception(ConnectionResetError(
                    "connection closed before an answer" if exc is None else str(exc)))
        self._gone(self)

    # -- httptools callbacks --

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"location":
            self._location = value

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_message_complete(self) -> None:
        if self._status < 200:  # 1xx: the answer is still to come
            self._status, self._location = 0, None
            return
        waiter = self._waiter
        self.reusable = self._parser.should_keep_alive()
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self._status, self._decoded_location()))

    # -- use --

    def _decoded_location(self) -> str | None:
        return None if self._location is None else self._location.decode("latin-1")

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    async def request(self, data: bytes, timeout: float) -> Response:
        """Send one request (head and body in one write) and wait for its answer."""
        assert self._transport is not None
        self._status, self._location, self._seen = 0, None, 0
        self.reusable = False
        waiter: asyncio.Future[Response] = self._loop.create_future()
        self._waiter = waiter
        timer = self._loop.call_later(timeout, self._expire, waiter)
        self._transport.write(data)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None
            self.used_at = time.monotonic()

    def _expire(self, waiter: asyncio.Future[Response]) -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError())
            self.close()  # its answer may still come: the connection cannot be reused

    def close(self) -> None:
        self.reusable = False
        if self._transport is not None and not self.closed:
            self._transport.close()


class Target(NamedTuple):
    """Where a request goes, as the pool needs it (from a parsed URL)."""

    scheme: str  # http or https
    host: str  # as connected to (an IPv6 address without brackets)
    port: int


class Client:
    """Keep-alive connections by target, reused one request at a time (the caller
    bounds how many requests run at once to each host)."""

    def __init__(self, ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext | None]
                 | None = None, idle: float = IDLE) -> None:
        # A callable is asked at each new https connection (a reload may change it);
        # None from it, or no context at all: the system's CAs.
        self._ssl = ssl_context
        self._default: ssl.SSLContext | None = None
        self._idle_for = idle
        self._idle: dict[Target, list[_Connection]] = {}
        self._open: set[_Connection] = set()

    def _tls(self) -> ssl.SSLContext:
        chosen = self._ssl() if callable(self._ssl) else self._ssl
        if chosen is not None:
            return chosen
        if self._default is None:  # made at the first https receiver: loading CAs costs
            self._default = ssl.create_default_context()
        return self._default

    async def request(self, target: Target, data: bytes, deadline: float) -> Response:
        """Send ``data`` (a whole request) to ``target`` and return its answer, all by
        ``deadline`` (time.monotonic()). A reused connection that the receiver had
        closed meanwhile is replaced once."""
        idle = self._idle.get(target)
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            try:
                return await self._on(conn, target, data, deadline)
            except ConnectionResetError:
                if conn.used_at == 0.0 or time.monotonic() >= deadline:
                    raise
                break  # the receiver closed it while idle: once more, on a new one
        conn = await self._connect(target, deadline)
        return await self._on(conn, target, data, deadline)

    async def _on(self, conn: _Connection, target: Target, data: bytes,
                  deadline: float) -> Response:
        try:
            response = await conn.request(data, max(0.0, deadline - time.monotonic()))
        except BaseException:
            conn.close()
            raise
        if conn.reusable:
            self._idle.setdefault(target, []).append(conn)
        else:
            conn.close()
        return response

    async def _connect(self, target: Target, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = target.scheme == "https"
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            _, conn = await loop.create_connection(
                lambda: _Connection(loop, self._open.discard), target.host, target.port,
                ssl=self._tls() if tls else None, server_hostname=target.host if tls else None)
        self._open.add(conn)
        return conn

    def sweep(self, now: float | None = None) -> None:
        """Close the connections unused for longer than ``idle`` seconds."""
        now = time.monotonic() if now is None else now
        for target, conns in list(self._idle.items()):
            keep = [c for c in conns if not c.closed and now - c.used_at < self._idle_for]
            for conn in conns:
                if conn not in keep:
                    conn.close()
            if keep:
                self._idle[target] = keep
            else:
                del self._idle[target]

    def close(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
