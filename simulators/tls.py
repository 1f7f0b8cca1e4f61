"""The simulator's TLS listener: server-side TLS over memory BIOs.

asyncio's own TLS server drops a connection whose handshake fails without sending
the TLS alert, so a client whose certificate is refused sees only a closed
connection. An SMSC behind OpenSSL sends the alert ("certificate required",
"unknown ca"), and the daemon reports it: this listener does the same. Once the
handshake is done it hands the inner protocol (the SMPP connection) a transport that
encrypts what it writes.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

log = logging.getLogger("simulators.tls")


class TlsServerProtocol(asyncio.Protocol):
    def __init__(self, context: ssl.SSLContext,
                 inner_factory: Callable[[], asyncio.Protocol]) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._inner_factory = inner_factory
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None

    # -- from the network --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._incoming.write(data)
        if self._inner is None and not self._handshake():
            return
        plain = []
        while True:
            try:
                chunk = self._ssl.read(65536)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLError):  # close_notify, or garbage
                self._flush()
                self.close()
                return
            if not chunk:
                break
            plain.append(chunk)
        self._flush()  # e.g. TLS 1.3 session tickets
        if plain and self._inner is not None:
            self._inner.data_received(b"".join(plain))

    def _handshake(self) -> bool:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        except ssl.SSLError as exc:
            log.info("TLS handshake refused: %s", exc.reason or exc)
            self._flush()  # the alert, so the client learns why
            self.close()
            return False
        self._flush()
        self._inner = self._inner_factory()
        self._inner.connection_made(_Plain(self))
        return True

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._inner.connection_lost(exc)
            self._inner = None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # -- to the network --

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._ssl.write(data)
            self._flush()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending and self._transport is not None and not self._transport.is_closing():
            self._transport.write(pending)

    def extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._ssl
        if name == "peercert":
            return self._ssl.getpeercert()
        return self._transport.get_extra_info(name, default) if self._transport else default


class _Plain(asyncio.Transport):
    """What the inner protocol writes to: plain bytes in, TLS records out."""

    def __init__(self, tls: TlsServerProtocol) -> None:
        super().__init__()
        self._tls = tls
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._tls.write(bytes(data))

    def close(self) -> None:
        self._closing = True
        self._tls.close()

    def abort(self) -> None:
        self._closing = True
        self._tls.abort()

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._tls.extra_info(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        transport = self._tls._transport
        if transport is not None:
            transport.set_write_buffer_limits(high, low)
