"""How a bind reaches its SMSC: a dialer opens the connection, plain TCP or TLS, so
the bind code has one path for both (and a test may hand in its own dialer).

``NetworkDialer`` is built from an operator's config: with ``tls = true`` it wraps
the connection in the operator's ``ssl.SSLContext`` (built once, at config load) and
checks the certificate against ``tls_server_name`` or else the host being dialed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from smppd.config import OperatorConfig

P = TypeVar("P", bound=asyncio.BaseProtocol)


class Dialer(Protocol):
    async def dial(self, host: str, port: int, factory: Callable[[], P]) -> P:
        """Connect (TLS handshake included) and return the connected protocol."""


class NetworkDialer:
    def __init__(self, context: ssl.SSLContext | None = None,
                 server_name: str | None = None) -> None:
        self.context = context
        self.server_name = server_name

    @classmethod
    def for_operator(cls, config: OperatorConfig) -> NetworkDialer:
        return cls(config.ssl_context, config.tls_server_name)

    async def dial(self, host: str, port: int, factory: Callable[[], P]) -> P:
        loop = asyncio.get_running_loop()
        if self.context is None:
            _, protocol = await loop.create_connection(factory, host, port)
        else:
            name = self.server_name or host
            _, protocol = await loop.create_connection(factory, host, port, ssl=self.context,
                                                       server_hostname=name)
        return protocol


# OpenSSL reasons an SMSC's alert carries, and what they mean for the config.
_HINTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the SMSC requires a client certificate "
                                         "(tls_cert, tls_key)",
    "TLSV1_ALERT_UNKNOWN_CA": "the SMSC does not trust our client certificate's CA",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the SMSC refused our client certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the SMSC says our client certificate expired",
    "WRONG_VERSION_NUMBER": "the SMSC did not answer in TLS (is this its TLS port?)",
}


class Probe(asyncio.Protocol):
    """A connection opened only to see that the host answers, then closed (a bind on a
    backup looks for its primary so)."""

    transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def tls_failure(exc: BaseException) -> str | None:
    """What went wrong in TLS, if ``exc`` is a TLS error (verification, handshake,
    an alert from the peer such as a missing client certificate)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"certificate verify failed: {exc.verify_message} (is tls_ca the CA of "
                "the SMSC's certificate, tls_server_name the name in it?)")
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or exc)
        text = reason.replace("_", " ").lower()
        hint = _HINTS.get(reason)
        return f"{text}: {hint}" if hint else text
    return None
