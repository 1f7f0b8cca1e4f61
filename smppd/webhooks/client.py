"""One webhook POST: signed, bounded in time, redirects followed on the same host only
(over smppd.webhooks.connections's keep-alive connections).

Pure helpers (signature, URL checks) and ``post``, which turns whatever happens into
an ``Outcome`` with a short reason: the outbox worker (smppd.webhooks) decides what
to do with it. Nothing here logs; a reason never holds the URL (it may carry a
receiver's credentials) nor the secret.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ipaddress
import time
import urllib.parse
from dataclasses import dataclass
from typing import NamedTuple

from smppd.webhooks.connections import Client, ResponseError, Target

MAX_REDIRECTS = 3  # on the same host; a redirect to another host is never followed
REDIRECTS = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "smppd-webhooks/1"


def signature(secret: str, timestamp: str, body: str) -> str:
    """The X-Smppd-Signature value: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">."""
    return Signer(secret)(timestamp, body.encode())


class Signer:
    """``signature`` with one tenant's secret, its key schedule computed once."""

    def __init__(self, secret: str) -> None:
        self._mac = hmac.new(secret.encode(), digestmod=hashlib.sha256)

    def __call__(self, timestamp: str, body: bytes) -> str:
        mac = self._mac.copy()
        mac.update(timestamp.encode() + b"." + body)
        return "sha256=" + mac.hexdigest()


def headers(secret: str, timestamp: str, body: str, kind: str, delivery_id: int,
            ) -> dict[str, str]:
    return signed_headers(signature(secret, timestamp, body), timestamp, kind, delivery_id)


def signed_headers(signed: str, timestamp: str, kind: str, delivery_id: int,
                   ) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Smppd-Event": kind,
        "X-Smppd-Delivery": str(delivery_id),  # the same on every retry: dedupe on it
        "X-Smppd-Timestamp": timestamp,
        "X-Smppd-Signature": signed,
    }


def _port(url: urllib.parse.SplitResult) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def same_host(origin: str, target: str) -> bool:
    """Whether a redirect from ``origin`` to ``target`` stays on the same host and port
    (http to https on that host is allowed, https to http is not)."""
    a, b = urllib.parse.urlsplit(origin), urllib.parse.urlsplit(target)
    if b.scheme not in ("http", "https") or (a.scheme, b.scheme) == ("https", "http"):
        return False
    if (a.hostname or "").lower() != (b.hostname or "").lower():
        return False
    return a.scheme != b.scheme or _port(a) == _port(b)


def _local(hostname: str) -> bool:
    host = hostname.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def points_at(url: str, listen_host: str, port: int) -> bool:
    """Whether ``url`` would reach the API listening on (listen_host, port): the same
    port on the listen host itself, or on a loopback or unspecified address or a
    localhost name."""
    parts = urllib.parse.urlsplit(url)
    hostname = (parts.hostname or "").lower()
    if _port(parts) != port:
        return False
    return _local(hostname) or hostname == listen_host.lower().strip("[]")


def redacted(url: str) -> str:
    """The URL without its user:password and query (either may hold a credential)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path,
                                    "..." if parts.query else "", ""))


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    reason: str = ""  # metric label: connect, timeout, http_4xx, http_5xx, redirect, error
    detail: str = ""  # for the dead letter: e.g. "http 503", "redirect to another host"


DELIVERED = Outcome(True)


class Prepared(NamedTuple):
    """A callback URL as a request needs it, parsed once (see ``prepared``)."""

    target: Target  # where to connect
    host: str  # the Host header (the key of the per-host limit: ``hostname``)
    hostname: str  # lower case
    path: str  # the request target: path and query
    authorization: str | None  # HTTP Basic, from user:password@ in the URL


@functools.lru_cache(maxsize=1024)
def prepared(url: str) -> Prepared:
    """Raises ValueError for a URL that is not visible-ASCII http(s) with a host."""
    if not all("!" <= c <= "~" for c in url):
        raise ValueError("not a visible-ASCII URL")
    parts = urllib.parse.urlsplit(url)
    hostname = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not hostname:
        raise ValueError("not an http(s) URL with a host")
    port = _port(parts)
    host = f"[{hostname}]" if ":" in hostname else hostname
    if port != (443 if parts.scheme == "https" else 80):
        host += f":{port}"
    authorization = None
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Prepared(Target(parts.scheme, hostname, port), host, hostname, path, authorization)


def encode_request(url: Prepared, request_headers: dict[str, str], body: bytes) -> bytes:
    """The whole POST, head and body, as one write."""
    lines = [f"POST {url.path} HTTP/1.1", f"Host: {url.host}",
             f"Content-Length: {len(body)}"]
    if url.authorization is not None:
        lines.append(f"Authorization: {url.authorization}")
    lines += [f"{name}: {value}" for name, value in request_headers.items()]
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1") + body


async def post(client: Client, url: str, body: bytes, request_headers: dict[str, str],
               timeout: float) -> Outcome:
    """POST ``body`` to ``url`` within ``timeout`` seconds in all (redirects included)."""
    deadline = time.monotonic() + timeout
    try:
        for _ in range(MAX_REDIRECTS + 1):
            where = prepared(url)
            status, location = await client.request(
                where.target, encode_request(where, request_headers, body), deadline)
            if 200 <= status < 300:
                return DELIVERED
            if status not in REDIRECTS:
                family = "http_5xx" if status >= 500 else "http_4xx"
                return Outcome(False, family, f"http {status}")
            target = urllib.parse.urljoin(url, location or "")
            if not location or not same_host(url, target):
                return Outcome(False, "redirect", f"http {status}: redirect to another "
                               "host, not followed")
            url = target
        return Outcome(False, "redirect", f"more than {MAX_REDIRECTS} redirects")
    except TimeoutError:
        return Outcome(False, "timeout", f"no answer within {timeout:g} s")
    except ConnectionResetError:
        return Outcome(False, "error", "connection closed before an answer")
    except OSError as exc:  # refused, unreachable, unknown host, TLS
        return Outcome(False, "connect", f"connect failed: {exc.strerror or type(exc).__name__}")
    except (ResponseError, ValueError) as exc:
        return Outcome(False, "error", type(exc).__name__)
