"""TLS contexts, built once from the files a config names.

``client_context`` is an operator's (smppd dials the SMSC); ``server_context`` is the
control API's and the simulator's. Each raises ``TlsFileError`` naming the config key
whose file is missing or unusable, so config loading can report it under that key.
Private keys must be unencrypted PEM (a daemon has nobody to type a passphrase).
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsFileError(ValueError):
    """A certificate, key or CA file that cannot be used; ``key`` is its config key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def client_context(*, ca: Path | None = None, cert: Path | None = None,
                   key: Path | None = None, verify: bool = True) -> ssl.SSLContext:
    """For dialing an SMSC: the system's CAs (or ``ca`` only), host name checked,
    a client certificate when ``cert`` is given. ``verify=False`` checks nothing."""
    if ca is None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:
        # Only this CA: an SMSC's private CA does not widen what else is trusted.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, checks the name
        _load_verify(context, ca, "tls_ca")
    if cert is not None:
        _load_chain(context, cert, key)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def receiver_context(*, ca: Path | None = None) -> ssl.SSLContext:
    """For POSTing to https webhook receivers: the system's CAs and, when given, ``ca``
    as well. It widens rather than replaces what is trusted (unlike an SMSC's
    ``tls_ca``): one tenant's receiver may sit behind a private CA while another's has
    a public certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca is not None:
        _load_verify(context, ca, "tls_ca")
    return context


def server_context(*, cert: Path, key: Path | None = None,
                   client_ca: Path | None = None) -> ssl.SSLContext:
    """For a TLS listener; with ``client_ca`` a client must present a certificate it
    signed (mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _load_chain(context, cert, key)
    if client_ca is not None:
        _load_verify(context, client_ca, "tls_client_ca")
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _load_verify(context: ssl.SSLContext, path: Path, field: str) -> None:
    _readable(path, field)
    try:
        context.load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        raise TlsFileError(field, f"{path}: not a PEM CA certificate ({exc.reason})") from None


def _load_chain(context: ssl.SSLContext, cert: Path, key: Path | None) -> None:
    _readable(cert, "tls_cert")
    if key is not None:
        _readable(key, "tls_key")
    try:
        context.load_cert_chain(str(cert), str(key) if key is not None else None,
                                password=_no_passphrase)
    except ssl.SSLError as exc:
        holder = key if key is not None else cert  # the file the key is in
        if b"ENCRYPTED" in holder.read_bytes():
            raise TlsFileError("tls_key" if key is not None else "tls_cert",
                               f"{holder}: an encrypted private key; it must be unencrypted "
                               "(a daemon has nobody to type its passphrase)") from None
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsFileError("tls_key", f"{key}: does not match the certificate "
                                          f"{cert}") from None
        detail = exc.reason or exc.strerror or str(exc)
        raise TlsFileError("tls_cert", f"{cert}: not a PEM certificate with its unencrypted "
                                       f"key ({detail})") from None


def _no_passphrase() -> str:
    return ""  # an encrypted key fails to load instead of prompting on a terminal


def _readable(path: Path, field: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise TlsFileError(field, f"{path}: file not found") from None
    except OSError as exc:
        raise TlsFileError(field, f"{path}: cannot read: {exc.strerror or exc}") from None
