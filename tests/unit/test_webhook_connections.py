"""The webhook HTTP client (smppd.webhooks.connections, .client.post) against raw
receivers on the loopback: what goes on the wire, keep-alive reuse, and each way an
answer can end. Also run under uvloop, the daemon's loop."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import uvloop
from tls_certs import Pki

from smppd.config.webhooks import WebhooksSection
from smppd.webhooks import client as webhook_http
from smppd.webhooks.connections import Client

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


@dataclass
class Raw:
    """A receiver that reads whole requests (head + Content-Length body) and answers
    each with ``answer(n)`` (n counts requests from 0); None: no answer, keep waiting."""

    answer: Callable[[int], bytes | None]
    close_after: bool = False  # close each connection after its answer
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                reply = self.answer(len(self.requests) - 1)
                if reply is None:
                    await reader.read()  # until the client gives up
                    return
                writer.write(reply)
                await writer.drain()
                if self.close_after:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def raw(answer: Callable[[int], bytes | None], tls: ssl.SSLContext | None = None,
              **options: bool) -> AsyncIterator[Raw]:
    receiver = Raw(answer, **options)
    server = await asyncio.start_server(receiver._serve, "127.0.0.1", 0, ssl=tls)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()


HEADERS = webhook_http.headers("k" * 16, "1700000000", '{"a":1}', "dlr", 7)


async def post(client: Client, url: str, timeout: float = 5.0) -> webhook_http.Outcome:
    return await webhook_http.post(client, url, b'{"a":1}', HEADERS, timeout)


async def test_many_posts_share_one_kept_alive_connection() -> None:
    client = Client()
    async with raw(lambda n: NO_CONTENT) as rx:
        for _ in range(20):
            assert (await post(client, f"http://us%40r:p%3Aw@127.0.0.1:{rx.port}/h?x=1")).ok
    client.close()
    assert rx.connections == 1 and len(rx.requests) == 20
    head, _, body = rx.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /h?x=1 HTTP/1.1" and body == b'{"a":1}'
    sent = dict(line.split(": ", 1) for line in lines[1:])
    assert sent["Host"] == f"127.0.0.1:{rx.port}" and sent["Content-Length"] == "7"
    assert sent["Authorization"] == "Basic dXNAcjpwOnc="  # us@r:p:w
    assert sent["X-Smppd-Signature"] == HEADERS["X-Smppd-Signature"]
    assert sent["X-Smppd-Delivery"] == "7" and sent["Content-Type"] == "application/json"


async def test_a_connection_the_receiver_closed_is_replaced() -> None:
    client = Client()
    async with raw(lambda n: NO_CONTENT, close_after=True) as rx:
        for _ in range(3):
            assert (await post(client, f"http://127.0.0.1:{rx.port}/")).ok
    client.close()
    assert rx.connections == 3


async def test_answers_that_end_in_other_ways() -> None:
    client = Client()
    answers = {
        b"HTTP/1.0 200 OK\r\n\r\nno length, ends with the connection": True,
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok": True,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n": True,
        b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n": False,
    }
    for answer, ok in answers.items():
        async with raw(lambda n, a=answer: a, close_after=True) as rx:  # type: ignore[misc]
            outcome = await post(client, f"http://127.0.0.1:{rx.port}/")
        assert outcome.ok is ok, answer
    assert (outcome.reason, outcome.detail) == ("http_5xx", "http 503")
    async with raw(lambda n: b"SMTP ready\r\n\r\n") as rx:
        outcome = await post(client, f"http://127.0.0.1:{rx.port}/")
    assert (outcome.ok, outcome.reason) == (False, "error")
    client.close()


async def test_no_answer_in_time_and_nothing_listening() -> None:
    client = Client()
    async with raw(lambda n: None) as rx:
        outcome = await post(client, f"http://127.0.0.1:{rx.port}/", timeout=0.05)
    assert (outcome.reason, outcome.detail) == ("timeout", "no answer within 0.05 s")
    async with raw(lambda n: NO_CONTENT) as rx:
        port = rx.port
    outcome = await post(client, f"http://127.0.0.1:{port}/")
    assert outcome.reason == "connect" and outcome.detail.startswith("connect failed")
    client.close()


async def test_redirects_on_the_same_host_reuse_the_connection() -> None:
    client = Client()
    moved = b"HTTP/1.1 307 Moved\r\nLocation: /there\r\nContent-Length: 0\r\n\r\n"
    async with raw(lambda n: moved if n == 0 else NO_CONTENT) as rx:
        assert (await post(client, f"http://127.0.0.1:{rx.port}/here")).ok
        away = (b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.example/\r\n"
                b"Content-Length: 0\r\n\r\n")
        rx.answer = lambda n: away
        outcome = await post(client, f"http://127.0.0.1:{rx.port}/here")
    client.close()
    assert [r.split(b" ")[1] for r in rx.requests] == [b"/here", b"/there", b"/here"]
    assert rx.connections == 1
    assert outcome.reason == "redirect" and "not followed" in outcome.detail


async def test_https_receivers_are_verified_and_kept_alive(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    ca = pki.ca("hooks-ca")
    leaf = pki.issue(ca, "hooks")
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(leaf.cert, leaf.key)
    trusting = ssl.create_default_context(cafile=str(ca.cert))
    client = Client(ssl_context=trusting)
    async with raw(lambda n: NO_CONTENT, tls=served) as rx:
        for _ in range(3):
            assert (await post(client, f"https://127.0.0.1:{rx.port}/tls")).ok
        # A receiver whose certificate no trusted CA signed gets nothing.
        stranger = Client()  # the system's CAs only
        outcome = await post(stranger, f"https://127.0.0.1:{rx.port}/tls")
        stranger.close()
    client.close()
    assert rx.connections == 1 and len(rx.requests) == 3
    assert rx.requests[0].startswith(b"POST /tls HTTP/1.1")
    assert (outcome.ok, outcome.reason) == (False, "connect"), outcome
    assert "certificate verify failed" in outcome.detail


async def test_webhooks_tls_ca_adds_a_private_ca(tmp_path: Path) -> None:
    """[webhooks] tls_ca: receivers behind a private CA are verified against it; the
    client asks the config at each new connection, so a reload's CA is the one used."""
    pki = Pki(tmp_path)
    ca = pki.ca("private-ca")
    leaf = pki.issue(ca, "hooks")
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(leaf.cert, leaf.key)
    section = WebhooksSection()
    client = Client(lambda: section.ssl_context)
    async with raw(lambda n: NO_CONTENT, tls=served, close_after=True) as rx:
        before = await post(client, f"https://127.0.0.1:{rx.port}/")
        section = WebhooksSection(tls_ca=ca.cert)  # as after a reload
        after = await post(client, f"https://127.0.0.1:{rx.port}/")
    client.close()
    assert not before.ok and "certificate verify failed" in before.detail
    assert after.ok and len(rx.requests) == 1
    assert section.ssl_context is not None
    if ssl.get_default_verify_paths().cafile:  # a system bundle loaded at once: counted
        # The system's CAs stay trusted beside it.
        assert section.ssl_context.cert_store_stats()["x509_ca"] > 1


def test_under_uvloop() -> None:
    async def scenario() -> tuple[int, int]:
        client = Client()
        async with raw(lambda n: NO_CONTENT) as rx:
            for _ in range(5):
                assert (await post(client, f"http://127.0.0.1:{rx.port}/")).ok
        client.sweep(now=float("inf"))  # idle too long: closed
        assert client._idle == {}
        client.close()
        return rx.connections, len(rx.requests)

    assert uvloop.run(scenario()) == (1, 5)
