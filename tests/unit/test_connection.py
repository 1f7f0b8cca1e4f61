"""The asyncio adapter over real TCP on 127.0.0.1: an SMSC end and an ESME end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from smppd.link.connection import (
    BaseHandler,
    ConnectionClosedError,
    ResponseTimeoutError,
    SmppConnection,
    SmppError,
)
from smppd.protocol import pdu as p
from smppd.protocol.constants import Status
from smppd.protocol.session import Closed, Role, Session, State


class SmscHandler(BaseHandler):
    """Accepts any bind, answers submit_sm with message id ``m<seq>`` unless told to stay mute."""

    def __init__(self) -> None:
        self.mute = False
        self.received: list[p.Pdu] = []
        self.changed = asyncio.Event()

    async def wait_received(self, count: int) -> None:
        while len(self.received) < count:
            self.changed.clear()
            await self.changed.wait()

    def request_received(self, conn: SmppConnection, pdu: p.Pdu) -> None:
        self.received.append(pdu)
        self.changed.set()
        if isinstance(pdu, p.Bind):
            conn.respond(pdu, pdu.response(system_id="SMSC"))
        elif isinstance(pdu, p.SubmitSm) and not self.mute:
            status = Status.ESME_RINVDSTADR if pdu.destination_addr == "bad" else Status.ESME_ROK
            conn.respond(pdu, pdu.response(status, message_id=f"m{pdu.sequence_number}"))
        elif not self.mute:
            super().request_received(conn, pdu)


@dataclass
class Pair:
    esme: SmppConnection
    smsc_handler: SmscHandler
    smsc: list[SmppConnection] = field(default_factory=list)


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    loop = asyncio.get_running_loop()
    handler = SmscHandler()
    smsc_conns: list[SmppConnection] = []

    def smsc_factory() -> SmppConnection:
        conn = SmppConnection(Session(Role.SMSC), handler)
        smsc_conns.append(conn)
        return conn

    server = await loop.create_server(smsc_factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, esme = await loop.create_connection(
        lambda: SmppConnection(Session(Role.ESME, window_size=5, response_timeout=5.0),
                               BaseHandler()),
        "127.0.0.1", port)
    try:
        yield Pair(esme, handler, smsc_conns)
    finally:
        esme.abort()
        for conn in smsc_conns:
            conn.abort()
        server.close()
        await server.wait_closed()
        await asyncio.wait_for(asyncio.gather(esme.closed, *(c.closed for c in smsc_conns)), 5)


async def bind(esme: SmppConnection) -> p.Pdu:
    return await esme.request(p.BindTransceiver(system_id="esme", password="pw"))


async def test_bind_round_trip(pair: Pair) -> None:
    resp = await bind(pair.esme)
    assert resp == p.BindTransceiverResp(sequence_number=1, system_id="SMSC")
    assert pair.esme.state is State.BOUND_TRX
    assert pair.smsc[0].state is State.BOUND_TRX
    assert pair.smsc[0].session.system_id == "esme"


async def test_request_round_trip(pair: Pair) -> None:
    await bind(pair.esme)
    resp = await pair.esme.request(p.SubmitSm(destination_addr="93700123456",
                                              short_message=b"hello"))
    assert resp == p.SubmitSmResp(sequence_number=2, message_id="m2")
    assert pair.smsc_handler.received[-1].short_message == b"hello"  # type: ignore[attr-defined]


async def test_error_status_raises(pair: Pair) -> None:
    await bind(pair.esme)
    with pytest.raises(SmppError) as info:
        await pair.esme.request(p.SubmitSm(destination_addr="bad"))
    assert info.value.command_status == Status.ESME_RINVDSTADR
    resp = await pair.esme.request(p.SubmitSm(destination_addr="bad"), check_status=False)
    assert resp.command_status == Status.ESME_RINVDSTADR


async def test_pipelined_requests_beyond_the_window(pair: Pair) -> None:
    await bind(pair.esme)
    texts = [f"msg {i}".encode() for i in range(40)]
    responses = await asyncio.gather(*(
        pair.esme.request(p.SubmitSm(destination_addr="93700123456", short_message=t))
        for t in texts))
    assert [r.message_id for r in responses] == [  # type: ignore[attr-defined]
        f"m{r.sequence_number}" for r in responses]
    assert len({r.sequence_number for r in responses}) == 40
    received = [pdu.short_message for pdu in pair.smsc_handler.received[1:]]  # type: ignore[attr-defined]
    assert sorted(received) == sorted(texts)
    assert len(pair.esme.session.window) == 0


async def test_enquire_link_request(pair: Pair) -> None:
    await bind(pair.esme)
    resp = await pair.esme.request(p.EnquireLink())
    assert isinstance(resp, p.EnquireLinkResp)


async def test_unbind(pair: Pair) -> None:
    await bind(pair.esme)
    await pair.esme.unbind()
    esme_closed = await asyncio.wait_for(pair.esme.closed, 5)
    smsc_closed = await asyncio.wait_for(pair.smsc[0].closed, 5)
    assert esme_closed == Closed("unbound", [])
    assert smsc_closed.reason == "peer_unbound"
    assert not pair.esme.is_open
    with pytest.raises(ConnectionClosedError):
        pair.esme.send(p.SubmitSm())


async def test_connection_loss_fails_pending_requests(pair: Pair) -> None:
    await bind(pair.esme)
    pair.smsc_handler.mute = True
    pending = [asyncio.ensure_future(pair.esme.request(p.SubmitSm(destination_addr="1")))
               for _ in range(3)]
    await asyncio.wait_for(pair.smsc_handler.wait_received(4), 5)  # bind + three submits
    pair.smsc[0].abort()
    results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 5)
    assert all(isinstance(r, ConnectionClosedError) for r in results)
    closed = await pair.esme.closed
    assert closed.reason == "connection_lost"
    assert len(closed.abandoned) == 3


async def test_window_waiters_fail_on_connection_loss(pair: Pair) -> None:
    await bind(pair.esme)
    pair.smsc_handler.mute = True
    requests = [asyncio.ensure_future(pair.esme.request(p.SubmitSm(destination_addr="1")))
                for _ in range(8)]  # window is 5: three wait for a slot
    await asyncio.wait_for(pair.smsc_handler.wait_received(6), 5)
    pair.esme.abort()
    results = await asyncio.wait_for(asyncio.gather(*requests, return_exceptions=True), 5)
    assert all(isinstance(r, ConnectionClosedError) for r in results)


async def test_request_timeout() -> None:
    """The adapter's timer fires at the session's deadline (a 50 ms response timeout)."""
    loop = asyncio.get_running_loop()
    handler = SmscHandler()
    handler.mute = True
    server = await loop.create_server(lambda: SmppConnection(Session(Role.SMSC), handler),
                                      "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, esme = await loop.create_connection(
        lambda: SmppConnection(Session(Role.ESME, response_timeout=0.05), BaseHandler()),
        "127.0.0.1", port)
    try:
        await esme.request(p.BindTransmitter())  # the muted handler still binds
        with pytest.raises(ResponseTimeoutError):
            await esme.request(p.SubmitSm())
        assert len(esme.session.window) == 0
    finally:
        esme.abort()
        server.close()
        await server.wait_closed()
        await esme.closed


class SilentHandler(BaseHandler):
    """Answers nothing at all (a black-hole SMSC)."""

    def request_received(self, conn: SmppConnection, pdu: p.Pdu) -> None:
        pass


async def test_new_request_deadline_rearms_a_later_timer() -> None:
    """A timer already armed for the enquire_link interval must not delay a response timeout."""
    loop = asyncio.get_running_loop()
    smsc_conns: list[SmppConnection] = []

    def factory() -> SmppConnection:
        smsc_conns.append(SmppConnection(Session(Role.SMSC), SilentHandler()))
        return smsc_conns[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, esme = await loop.create_connection(
        lambda: SmppConnection(Session(Role.ESME, response_timeout=0.05,
                                       enquire_link_interval=30.0), BaseHandler()),
        "127.0.0.1", port)
    try:
        # the SMSC probes first: the ESME answers and arms its timer 30 s ahead
        await smsc_conns[0].request(p.EnquireLink())
        with pytest.raises(ResponseTimeoutError):
            await asyncio.wait_for(esme.request(p.BindTransmitter()), 5)
    finally:
        esme.abort()
        server.close()
        await server.wait_closed()
        await esme.closed
        await smsc_conns[0].closed
