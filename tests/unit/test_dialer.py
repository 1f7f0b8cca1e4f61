"""The dialer seam (smppd.link.dialer): a bind reaches its SMSC only through the
operator's dialer, so a test's in-memory pipe (here a socket pair straight into the
simulator, no listening port) is the same code path as TCP and TLS."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import TypeVar

from e2e_helpers import PASSWORD, SYSTEM_ID, mno, running_sim, wait_for

from simulators import Mno
from smppd.config import Config
from smppd.link.connection import SmppConnection
from smppd.link.operator import Operator
from smppd.link.parts import OutboundPart
from smppd.protocol.pdu import DeliverSm, Pdu, SubmitSm, encode

P = TypeVar("P", bound=asyncio.BaseProtocol)


class PipeDialer:
    """Connects every dial to the simulated MNO through a socket pair."""

    def __init__(self, smsc: Mno) -> None:
        self.smsc = smsc
        self.dialed: list[tuple[str, int]] = []

    async def dial(self, host: str, port: int, factory: Callable[[], P]) -> P:
        self.dialed.append((host, port))
        ours, theirs = socket.socketpair()
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(self.smsc.new_connection, sock=theirs)
        _, protocol = await loop.create_connection(factory, sock=ours)
        return protocol


class Answers:
    """OperatorEvents that keep what came back."""

    def __init__(self) -> None:
        self.responses: list[int] = []
        self.receipts: list[DeliverSm] = []

    def submit_answered(self, op: Operator, part: OutboundPart, pdu: Pdu) -> None:
        self.responses.append(pdu.command_status)

    def submit_unknown(self, op: Operator, part: OutboundPart, reason: str) -> None:
        raise AssertionError(reason)

    def deliver_received(self, op: Operator, conn: SmppConnection, pdu: DeliverSm) -> None:
        self.receipts.append(pdu)
        conn.respond(pdu, pdu.response())

    def bind_changed(self, op: Operator) -> None:
        pass


async def test_a_bind_through_an_in_memory_pipe() -> None:
    async with running_sim([mno("op")]) as sim:
        config = Config.model_validate({"operators": [{
            "id": "op", "hosts": ["smsc.invalid:2775"], "system_id": SYSTEM_ID,
            "password": PASSWORD, "bind_types": ["transmitter", "receiver"]}]})
        dialer = PipeDialer(sim.mno("op"))
        answers = Answers()
        op = Operator(config.operators[0], answers, password=lambda: PASSWORD, dialer=dialer)
        op.start()
        try:
            await wait_for(lambda: op.bound_count == 2, what="both binds")
            frame = encode(SubmitSm(source_addr="SMPPD", destination_addr="93700000001",
                                    registered_delivery=1, short_message=b"hi"))
            op.enqueue(OutboundPart("m1", 1, 1, frame))
            await wait_for(lambda: answers.responses and answers.receipts, what="receipt")
        finally:
            await op.stop(1.0)
        assert answers.responses == [0]
        assert dialer.dialed == [("smsc.invalid", 2775)] * 2  # never resolved, never dialed
        assert len(answers.receipts) == 1
        assert sim.mno("op").counters.binds == 2
