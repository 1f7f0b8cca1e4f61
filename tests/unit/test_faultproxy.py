"""The fault proxy driven by the toxiproxy-python client, unchanged, over real sockets.

The proxy runs in the test's loop with a hand-moved clock: a toxic that holds data back
shows up as a pending sleep with its deadline, and the bytes move when the test moves
the clock, so no assertion depends on how fast the machine is. toxiproxy-python is
blocking (requests), so its calls run in a thread.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
import toxiproxy
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from simulators import SmscSimulator, parse_config
from simulators.faultproxy import FaultProxy, Registry
from simulators.faultproxy.link import Link
from simulators.faultproxy.toxics import (
    jittered_ms,
    limit_take,
    parse_toxic,
    rate_pieces,
    send_seconds,
    slice_sizes,
)
from smppd.link.connection import BaseHandler, ConnectionClosedError, SmppConnection
from smppd.protocol.constants import Status
from smppd.protocol.pdu import BindTransceiver, EnquireLink
from smppd.protocol.session import Role, Session

TIMEOUT = 5.0
T = TypeVar("T")


class ManualClock:
    """Monotonic time that moves only when the test says; sleepers wait for it."""

    def __init__(self, start: float = 100.0) -> None:
        self.t = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []
        self._slept = asyncio.Event()  # set whenever something starts waiting

    def now(self) -> float:
        return self.t

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self.t:
            return
        entry = (deadline, asyncio.get_running_loop().create_future())
        self._sleepers.append(entry)
        self._slept.set()
        try:
            await entry[1]
        finally:
            self._sleepers.remove(entry)

    def pending(self) -> list[float]:
        return sorted(d for d, f in self._sleepers if not f.done())

    async def next_deadline(self) -> float:
        """The earliest deadline anything waits for, once something waits."""
        async with asyncio.timeout(TIMEOUT):
            while not self.pending():
                self._slept.clear()
                await self._slept.wait()
        return self.pending()[0]

    def advance_to(self, t: float) -> None:
        self.t = max(self.t, t)
        for deadline, fut in self._sleepers:
            if deadline <= self.t and not fut.done():
                fut.set_result(None)


class Upstream:
    """An echo server that keeps what it received; it closes once the client has."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.received += data
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.fixture
def clock() -> ManualClock:  # this module's clock: the proxy sleeps on it
    return ManualClock()


@pytest.fixture
async def fp(clock: ManualClock) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(Registry(clock=clock, rng=random.Random(7)))
    await proxy.start("127.0.0.1", 0)
    yield proxy
    await proxy.stop()


@pytest.fixture
def tp(fp: FaultProxy) -> toxiproxy.Toxiproxy:
    server = toxiproxy.Toxiproxy()
    server.update_api_consumer("127.0.0.1", fp.port)
    return server


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    yield server
    await server.stop()


def url(fp: FaultProxy, path: str) -> str:
    return f"http://127.0.0.1:{fp.port}{path}"


def address(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host, int(port)


async def open_client(proxy: toxiproxy.Proxy) -> tuple[asyncio.StreamReader,
                                                        asyncio.StreamWriter]:
    host, port = address(proxy.listen)
    return await asyncio.open_connection(host, port)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               data: bytes) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), TIMEOUT)


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), TIMEOUT)


async def only_link(fp: FaultProxy, name: str, stream: str) -> Link:
    """The one connection's link, once the proxy has reached the upstream for it."""
    proxy = fp.registry.get(name)
    await until(lambda: len(proxy.connections) == 1)
    (conn,) = proxy.connections
    return conn.links[stream]


async def until(check: Callable[[], bool]) -> None:
    """Polls: the proxy's counters have no event to wait on (bounded by TIMEOUT)."""
    async with asyncio.timeout(TIMEOUT):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


async def client_through(tp: toxiproxy.Toxiproxy, upstream: Upstream, toxic: str,
                         attributes: dict[str, Any], **options: Any,
                         ) -> tuple[toxiproxy.Proxy, asyncio.StreamReader, asyncio.StreamWriter]:
    """A client connection through a new proxy with one ``toxic`` (``options``: its
    stream, toxicity, name)."""
    proxy = await make(tp, upstream)
    await call(proxy.add_toxic, type=toxic, attributes=attributes, **options)
    reader, writer = await open_client(proxy)
    return proxy, reader, writer


async def make(tp: toxiproxy.Toxiproxy, upstream: Upstream, name: str = "smsc",
               **kwargs: Any) -> toxiproxy.Proxy:
    return await call(tp.create, upstream=f"127.0.0.1:{upstream.port}", name=name, **kwargs)


# --- the API --------------------------------------------------------------------------


async def test_version_and_running(tp: toxiproxy.Toxiproxy) -> None:
    assert await call(tp.running)
    assert b'"version"' in await call(tp.version)


async def test_create_list_get_disable_enable_delete(
        fp: FaultProxy, tp: toxiproxy.Toxiproxy, upstream: Upstream) -> None:
    proxy = await make(tp, upstream)
    host, port = address(proxy.listen)
    assert (host, proxy.enabled) == ("127.0.0.1", True) and port != 0  # the real port
    assert set(await call(tp.proxies)) == {"smsc"}
    got = await call(tp.get_proxy, "smsc")
    assert (got.upstream, got.listen) == (f"127.0.0.1:{upstream.port}", proxy.listen)
    with pytest.raises(ProxyExists):
        await make(tp, upstream)
    raw = await call(requests.post, url(fp, "/proxies"),
                     json={"name": "smsc", "upstream": "127.0.0.1:1"})
    assert raw.status_code == 409 and raw.json()["status"] == 409

    reader, writer = await open_client(proxy)
    assert await echo(reader, writer, b"hello") == b"hello"

    await call(proxy.disable)  # drops live connections and stops listening
    assert await read_to_eof(reader) == b""
    writer.close()
    assert not (await call(tp.get_proxy, "smsc")).enabled
    with pytest.raises(OSError):
        await asyncio.open_connection(host, port)

    await call(proxy.enable)  # listens again on the same address
    assert (await call(tp.get_proxy, "smsc")).listen == proxy.listen
    reader, writer = await open_client(proxy)
    assert await echo(reader, writer, b"again") == b"again"
    writer.close()

    assert await call(proxy.destroy)
    assert await call(tp.get_proxy, "smsc") is None
    with pytest.raises(NotFound):
        await call(proxy.destroy)
    with pytest.raises(OSError):
        await asyncio.open_connection(host, port)


async def test_update_moves_a_proxy_to_a_new_upstream(
        fp: FaultProxy, tp: toxiproxy.Toxiproxy, upstream: Upstream) -> None:
    proxy = await make(tp, upstream)
    other = Upstream()
    await other.start()
    try:
        raw = await call(requests.patch, url(fp, "/proxies/smsc"),
                         json={"upstream": f"127.0.0.1:{other.port}"})
        assert raw.status_code == 200 and raw.json()["upstream"] == f"127.0.0.1:{other.port}"
        reader, writer = await open_client(proxy)
        assert await echo(reader, writer, b"moved") == b"moved"
        writer.close()
        assert bytes(other.received) == b"moved" and upstream.received == b""
    finally:
        await other.stop()


async def test_created_disabled_then_populated(fp: FaultProxy, tp: toxiproxy.Toxiproxy,
                                               upstream: Upstream) -> None:
    proxy = await make(tp, upstream, enabled=False)
    assert not proxy.enabled and proxy.listen == "127.0.0.1:0"
    created = await call(tp.populate, [
        {"name": "smsc", "upstream": f"127.0.0.1:{upstream.port}", "listen": "127.0.0.1:0"},
        {"name": "second", "upstream": f"127.0.0.1:{upstream.port}", "listen": "127.0.0.1:0"},
    ])
    assert [p.name for p in created] == ["second"]  # the client keeps an unchanged one
    raw = await call(requests.post, url(fp, "/populate"),
                     json=[{"name": "smsc", "upstream": f"127.0.0.1:{upstream.port}"}])
    assert raw.status_code == 201
    assert [p["enabled"] for p in raw.json()["proxies"]] == [True]
    assert sorted(await call(tp.proxies)) == ["second", "smsc"]
    bad = await call(requests.post, url(fp, "/populate"),
                     json=[{"name": "third", "upstream": "127.0.0.1:1"}, {"name": "x"}])
    assert bad.status_code == 400 and "proxies[1].upstream" in bad.json()["error"]
    assert "third" not in await call(tp.proxies)  # nothing changed: all checked first


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/proxies", {"name": "p"}, "upstream"),
    ("/proxies", {"upstream": "127.0.0.1:1"}, "name"),
    ("/proxies", {"name": "p", "upstream": "nowhere"}, "upstream"),
    ("/proxies", {"name": "p", "upstream": "127.0.0.1:1", "listen": "127.0.0.1:99999"},
     "listen"),
    ("/proxies", {"name": "p", "upstream": "127.0.0.1:1", "enabled": "yes"}, "enabled"),
    ("/proxies", {"name": "p", "upstream": "127.0.0.1:1", "lisen": "x"}, "lisen"),
    ("/proxies", "not an object", "body"),
])
async def test_bad_proxy_is_400_naming_the_field(fp: FaultProxy, path: str, body: Any,
                                                 field: str) -> None:
    raw = await call(requests.post, url(fp, path), json=body)
    assert raw.status_code == 400
    assert raw.json()["error"].startswith(field + ":"), raw.json()


async def test_listen_address_in_use_is_400(fp: FaultProxy, tp: toxiproxy.Toxiproxy,
                                            upstream: Upstream) -> None:
    first = await make(tp, upstream)
    raw = await call(requests.post, url(fp, "/proxies"), json={
        "name": "second", "upstream": f"127.0.0.1:{upstream.port}", "listen": first.listen})
    assert raw.status_code == 400 and raw.json()["error"].startswith("listen: cannot listen")
    assert set(await call(tp.proxies)) == {"smsc"}


async def test_unknown_names_are_404(fp: FaultProxy, tp: toxiproxy.Toxiproxy,
                                     upstream: Upstream) -> None:
    proxy = await make(tp, upstream)
    for method, path in [("get", "/proxies/nope"), ("post", "/proxies/nope"),
                         ("delete", "/proxies/nope"), ("get", "/proxies/nope/toxics"),
                         ("post", "/proxies/nope/toxics"), ("get", "/proxies/smsc/toxics/x"),
                         ("post", "/proxies/smsc/toxics/x"), ("delete", "/proxies/smsc/toxics/x")]:
        raw = await call(requests.request, method, url(fp, path), json={"type": "latency"})
        assert raw.status_code == 404, (method, path)
        assert "not found" in raw.json()["error"]
    with pytest.raises(NotFound):
        await call(proxy.destroy_toxic, "x")


@pytest.mark.parametrize(("toxic", "field"), [
    ({"type": "sleepy"}, "type"),
    ({"type": "latency", "stream": "sideways"}, "stream"),
    ({"type": "latency", "toxicity": 1.5}, "toxicity"),
    ({"type": "latency", "attributes": {"latency": -1}}, "attributes.latency"),
    ({"type": "latency", "attributes": {"latency": 1.5}}, "attributes.latency"),
    ({"type": "latency", "attributes": {"latency_ms": 10}}, "attributes.latency_ms"),
    ({"type": "slicer", "attributes": {"average_size": 0}}, "attributes.average_size"),
    ({"type": "slicer", "attributes": {"average_size": 4, "size_variation": 4}},
     "attributes.size_variation"),
])
async def test_bad_toxic_is_400_naming_the_field(tp: toxiproxy.Toxiproxy, upstream: Upstream,
                                                 toxic: dict[str, Any], field: str) -> None:
    proxy = await make(tp, upstream)
    with pytest.raises(InvalidToxic) as err:
        await call(proxy.add_toxic, **toxic)
    assert f'"error": "{field}:'.encode() in err.value.args[0]
    assert await call(proxy.toxics) == {}


async def test_toxics_listed_got_updated_removed(fp: FaultProxy, tp: toxiproxy.Toxiproxy,
                                                 upstream: Upstream) -> None:
    proxy = await make(tp, upstream)
    await call(proxy.add_toxic, type="latency", attributes={"latency": 100})
    await call(proxy.add_toxic, type="limit_data", stream="upstream", name="cap",
               toxicity=0.5, attributes={"bytes": 3})
    toxics = await call(proxy.toxics)
    assert sorted(toxics) == ["cap", "latency_downstream"]  # Toxiproxy's default name
    cap = toxics["cap"]
    assert (cap.type, cap.stream, cap.toxicity, cap.attributes) == (
        "limit_data", "upstream", 0.5, {"bytes": 3})
    assert (await call(proxy.get_toxic, "latency_downstream")).attributes == {
        "latency": 100, "jitter": 0}
    with pytest.raises(ProxyExists):  # 409: a toxic name is unique per proxy
        await call(proxy.add_toxic, type="timeout", name="cap")

    raw = await call(requests.post, url(fp, "/proxies/smsc/toxics/cap"),
                     json={"attributes": {"bytes": 9}, "toxicity": 1})
    assert raw.status_code == 200
    assert (raw.json()["attributes"], raw.json()["toxicity"]) == ({"bytes": 9}, 1.0)
    shown = await call(requests.get, url(fp, "/proxies/smsc"))
    assert [t["name"] for t in shown.json()["toxics"]] == ["latency_downstream", "cap"]

    assert await call(proxy.destroy_toxic, "cap")
    assert sorted(await call(proxy.toxics)) == ["latency_downstream"]


async def test_reset_enables_every_proxy_and_removes_every_toxic(
        tp: toxiproxy.Toxiproxy, upstream: Upstream) -> None:
    one = await make(tp, upstream, name="one")
    two = await make(tp, upstream, name="two")
    await call(one.add_toxic, type="timeout")
    await call(two.add_toxic, type="slicer", attributes={"average_size": 2})
    await call(two.disable)
    assert await call(tp.reset)
    proxies = await call(tp.proxies)
    assert all(p.enabled for p in proxies.values())
    assert await call(one.toxics) == {} and await call(two.toxics) == {}
    reader, writer = await open_client(two)
    assert await echo(reader, writer, b"clean") == b"clean"
    writer.close()


async def test_browsers_are_refused(fp: FaultProxy) -> None:
    raw = await call(requests.get, url(fp, "/proxies"), headers={"User-Agent": "Mozilla/5.0"})
    assert raw.status_code == 403


# --- each toxic's effect on the bytes ---------------------------------------------------


async def test_latency_holds_each_chunk_for_its_delay(
        clock: ManualClock, tp: toxiproxy.Toxiproxy, upstream: Upstream) -> None:
    proxy = await make(tp, upstream)
    reader, writer = await open_client(proxy)
    assert await echo(reader, writer, b"before") == b"before"
    # Added to a live connection: the next data waits.
    await call(proxy.add_toxic, type="latency", attributes={"latency": 200})
    writer.write(b"ping")
    assert await clock.next_deadline() == pytest.approx(clock.now() + 0.2)
    clock.advance_to(clock.now() + 0.2)
    assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == b"ping"

    await call(proxy.destroy_toxic, "latency_downstream")
    assert await echo(reader, writer, b"after") == b"after"  # no clock move needed
    writer.close()


async def test_latency_jitter_stays_within_its_bounds(
        clock: ManualClock, tp: toxiproxy.Toxiproxy, upstream: Upstream) -> None:
    _, reader, writer = await client_through(tp, upstream, "latency",
                                             {"latency": 200, "jitter": 50}, stream="upstream")
    writer.write(b"ping")
    deadline = await clock.next_deadline()
    assert clock.now() + 0.15 <= deadline <= clock.now() + 0.25
    assert upstream.received == b""  # upstream stream: held before the server sees it
    clock.advance_to(deadline)
    assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == b"ping"
    writer.close()


async def test_removing_latency_releases_what_it_holds(
        clock: ManualClock, tp: toxiproxy.Toxiproxy, upstream: Upstream) -> None:
    proxy, reader, writer = await client_through(tp, upstream, "latency", {"latency": 60_000})
    writer.write(b"held")
    await clock.next_deadline()
    await call(proxy.destroy_toxic, "latency_downstream")
    assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == b"held"
    writer.close()


async def test_updating_a_toxic_acts_on_live_connections(
        fp: FaultProxy, clock: ManualClock, tp: toxiproxy.Toxiproxy, upstream: Upstream) -> None:
    _, reader, writer = await client_through(tp, upstream, "latency", {"latency": 60_000})
    writer.write(b"held")
    await clock.next_deadline()
    raw = await call(requests.patch, url(fp, "/proxies/smsc/toxics/latency_downstream"),
                     json={"attributes": {"latency": 100}})
    assert raw.status_code == 200
    # What it held goes on (as Toxiproxy restarts a toxic); new data gets the new value.
    assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == b"held"
    writer.write(b"next")
    assert await clock.next_deadline() == pytest.approx(clock.now() + 0.1)
    clock.advance_to(clock.now() + 0.1)
    assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == b"next"
    writer.close()


async def test_bandwidth_paces_the_bytes(clock: ManualClock, tp: toxiproxy.Toxiproxy,
                                         upstream: Upstream) -> None:
    _, reader, writer = await client_through(tp, upstream, "bandwidth", {"rate": 1})  # 1000 bytes/s
    writer.write(bytes(range(250)))
    start, got = clock.now(), b""
    for at, size in [(0.1, 100), (0.2, 100), (0.25, 50)]:  # 100 ms pieces at 1 KB/s
        deadline = await clock.next_deadline()
        assert deadline == pytest.approx(start + at)
        clock.advance_to(deadline)
        got += await asyncio.wait_for(reader.readexactly(size), TIMEOUT)
    assert got == bytes(range(250))
    writer.close()


async def test_slow_close_delays_the_end_of_the_stream(
        clock: ManualClock, tp: toxiproxy.Toxiproxy, upstream: Upstream) -> None:
    _, reader, writer = await client_through(tp, upstream, "slow_close", {"delay": 300})
    assert await echo(reader, writer, b"bye") == b"bye"
    writer.write_eof()  # the echo server closes; its FIN is held for 300 ms
    assert await clock.next_deadline() == pytest.approx(clock.now() + 0.3)
    assert not reader.at_eof()
    clock.advance_to(clock.now() + 0.3)
    assert await read_to_eof(reader) == b""
    writer.close()


async def test_timeout_0_is_a_black_hole_until_removed(
        fp: FaultProxy, tp: toxiproxy.Toxiproxy, upstream: Upstream) -> None:
    proxy, reader, writer = await client_through(tp, upstream, "timeout",
                                                 {"timeout": 0}, stream="upstream")
    writer.write(b"lost")
    link = await only_link(fp, "smsc", "upstream")
    await until(lambda: link.processed == 4)
    assert upstream.received == b""
    # Removing it closes the connection: the bytes it swallowed are gone (as Toxiproxy).
    await call(proxy.destroy_toxic, "timeout_upstream")
    assert await read_to_eof(reader) == b""
    writer.close()
    assert upstream.received == b""
    reader, writer = await open_client(proxy)
    assert await echo(reader, writer, b"found") == b"found"
    writer.close()


async def test_timeout_closes_after_its_time(
        fp: FaultProxy, clock: ManualClock, tp: toxiproxy.Toxiproxy, upstream: Upstream) -> None:
    _, reader, writer = await client_through(tp, upstream, "timeout", {"timeout": 500})
    assert await clock.next_deadline() == pytest.approx(clock.now() + 0.5)
    writer.write(b"echoed but dropped")
    link = await only_link(fp, "smsc", "downstream")
    await until(lambda: link.processed == 18)
    clock.advance_to(clock.now() + 0.5)
    assert await read_to_eof(reader) == b""
    assert bytes(upstream.received) == b"echoed but dropped"  # downstream only
    writer.close()


async def test_reset_peer_sends_rst(clock: ManualClock, tp: toxiproxy.Toxiproxy,
                                    upstream: Upstream) -> None:
    _, reader, writer = await client_through(tp, upstream, "reset_peer", {"timeout": 100})
    writer.write(b"ping")  # the echo's first bytes start the 100 ms
    assert await clock.next_deadline() == pytest.approx(clock.now() + 0.1)
    clock.advance_to(clock.now() + 0.1)
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(100), TIMEOUT)
    writer.close()


async def test_limit_data_closes_after_n_bytes(fp: FaultProxy, tp: toxiproxy.Toxiproxy,
                                               upstream: Upstream) -> None:
    _, reader, writer = await client_through(tp, upstream, "limit_data", {"bytes": 10})
    writer.write(b"0123456789abcdefghij")
    assert await read_to_eof(reader) == b"0123456789"
    writer.close()


async def test_limit_data_upstream_counts_across_writes(
        fp: FaultProxy, tp: toxiproxy.Toxiproxy, upstream: Upstream) -> None:
    _, reader, writer = await client_through(tp, upstream, "limit_data",
                                             {"bytes": 6}, stream="upstream")
    assert await echo(reader, writer, b"abcd") == b"abcd"
    writer.write(b"efgh")
    assert await read_to_eof(reader) == b""  # closed at once: the echo of "ef" never comes
    writer.close()
    await until(lambda: len(upstream.received) >= 6)
    assert bytes(upstream.received) == b"abcdef"


async def test_slicer_delivers_small_pieces_apart(
        clock: ManualClock, tp: toxiproxy.Toxiproxy, upstream: Upstream) -> None:
    slices = {"average_size": 4, "size_variation": 0, "delay": 1000}
    _, reader, writer = await client_through(tp, upstream, "slicer", slices)
    data = bytes(range(40))
    writer.write(data)
    got = await asyncio.wait_for(reader.readexactly(4), TIMEOUT)
    for _ in range(9):  # each next piece waits for the 1 ms delay
        deadline = await clock.next_deadline()
        assert deadline == pytest.approx(clock.now() + 0.001)
        clock.advance_to(deadline)
        got += await asyncio.wait_for(reader.readexactly(4), TIMEOUT)
    assert got == data
    writer.close()


async def test_toxicity_zero_never_applies(tp: toxiproxy.Toxiproxy, upstream: Upstream) -> None:
    _, reader, writer = await client_through(tp, upstream, "limit_data", {"bytes": 0}, toxicity=0.0)
    assert await echo(reader, writer, b"untouched") == b"untouched"
    writer.close()


# --- SMPP through the proxy ---------------------------------------------------------------


async def test_smpp_bind_goes_through_the_proxy(clock: ManualClock,
                                                tp: toxiproxy.Toxiproxy) -> None:
    config = parse_config({"mno": [{"name": "alpha", "port": 0, "account": [
        {"system_id": "esme1", "password": "secret1"}]}]})
    async with SmscSimulator(config) as sim:
        proxy = await call(tp.create, upstream=f"127.0.0.1:{sim.port_of('alpha')}",
                           name="alpha")
        await call(proxy.add_toxic, type="latency", attributes={"latency": 250})
        host, port = address(proxy.listen)
        _, conn = await asyncio.get_running_loop().create_connection(
            lambda: SmppConnection(Session(Role.ESME), BaseHandler()), host, port)
        bind = asyncio.ensure_future(
            conn.request(BindTransceiver(system_id="esme1", password="secret1")))
        assert await clock.next_deadline() == pytest.approx(clock.now() + 0.25)
        assert not bind.done()  # the bind_resp is held in the proxy
        clock.advance_to(clock.now() + 0.25)
        assert (await asyncio.wait_for(bind, TIMEOUT)).command_status == Status.ESME_ROK

        await call(proxy.destroy_toxic, "latency_downstream")
        await call(proxy.add_toxic, type="reset_peer", attributes={"timeout": 0})
        with pytest.raises(ConnectionClosedError):  # the SMSC's answer turned into a RST
            await asyncio.wait_for(conn.request(EnquireLink()), TIMEOUT)
        conn.close()


# --- the console script ------------------------------------------------------------------

FAULTPROXY = str(Path(sys.executable).parent / "smppd-faultproxy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_console_script_serves_the_client(upstream: Upstream, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "proxies.json"
    config.write_text(json.dumps([{"name": "from_file", "listen": "127.0.0.1:0",
                                   "upstream": f"127.0.0.1:{upstream.port}"}]))
    process = await asyncio.create_subprocess_exec(
        FAULTPROXY, "--listen", f"127.0.0.1:{port}", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert process.stdout is not None
    try:
        async with asyncio.timeout(TIMEOUT):
            while b"fault proxy API on" not in await process.stdout.readline():
                pass
        server = toxiproxy.Toxiproxy()
        server.update_api_consumer("127.0.0.1", port)
        assert set(await call(server.proxies)) == {"from_file"}
        proxy = await call(server.create, name="cli", upstream=f"127.0.0.1:{upstream.port}")
        await call(proxy.add_toxic, type="limit_data", attributes={"bytes": 3})
        reader, writer = await open_client(proxy)
        writer.write(b"abcdef")
        assert await read_to_eof(reader) == b"abc"
        writer.close()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == 0, output
    assert b"proxy cli stopped" in output


async def test_console_script_refuses_a_bad_listen_address() -> None:
    process = await asyncio.create_subprocess_exec(
        FAULTPROXY, "--listen", "localhost", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == 2
    assert b"--listen: 'localhost' is not host:port" in output


# --- the pure parts ------------------------------------------------------------------


def test_slice_sizes_cover_the_data_within_the_variation() -> None:
    rng = random.Random(1)
    for total in (1, 7, 100, 1000):
        sizes = slice_sizes(total, 10, 3, rng)
        assert sum(sizes) == total
        assert all(1 <= s <= 13 for s in sizes)
        assert all(s >= 7 for s in sizes[:-1])


def test_jitter_rate_and_limit_arithmetic() -> None:
    rng = random.Random(2)
    assert {jittered_ms(100, 0, rng) for _ in range(5)} == {100}
    assert all(90 <= jittered_ms(100, 10, rng) <= 110 for _ in range(200))
    assert jittered_ms(5, 50, random.Random(0)) >= 0
    assert [len(p) for p in rate_pieces(bytes(250), 1)] == [100, 100, 50]
    assert send_seconds(500, 1) == 0.5
    assert (limit_take(10, 0, 4), limit_take(10, 8, 4), limit_take(10, 10, 4)) == (4, 2, 0)


def test_toxic_defaults_are_toxiproxys() -> None:
    toxic = parse_toxic({"type": "slicer", "attributes": {"average_size": 8}})
    assert toxic.to_json() == {
        "name": "slicer_downstream", "type": "slicer", "stream": "downstream",
        "toxicity": 1.0, "attributes": {"average_size": 8, "size_variation": 0, "delay": 0}}
