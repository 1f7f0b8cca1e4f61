"""A raw SMPP load generator: bind, then blast pipelined submit_sm with a window of N.

Deliberately not a Session user: it must cost less than the thing it measures. The
submit_sm is encoded once and its sequence number patched in with ``pack_into``;
of the responses only the 16-byte headers are read; deliver_sm (receipts) are
answered with a pre-built deliver_sm_resp.

    python -m simulators.loadgen --port 2775 --system-id smppd-roshan --password rosh-pw \\
        --count 200000 --window 100 [--receipts]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

from smppd.protocol.pdu import BindTransceiver, EnquireLinkResp, SubmitSm, encode

from .console import run_fast
from .wire import (
    BIND_TRANSCEIVER_RESP,
    DELIVER_SM,
    DELIVER_SM_RESP,
    ENQUIRE_LINK,
    HEADER,
    SUBMIT_SM_RESP,
    U32,
    UNBIND,
)


@dataclass
class Result:
    sent: int = 0
    responses: int = 0
    receipts: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    elapsed: float = 0.0  # first submit to last response (and last receipt if awaited)

    @property
    def rate(self) -> float:
        return self.responses / self.elapsed if self.elapsed else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "responses": self.responses, "receipts": self.receipts,
                "statuses": {f"0x{k:08X}": v for k, v in self.statuses.items()},
                "elapsed": round(self.elapsed, 4), "rate": round(self.rate)}


class Blaster(asyncio.Protocol):
    def __init__(self, system_id: str, password: str, count: int, window: int,
                 registered_delivery: int, expect_receipts: int, done: asyncio.Future[Result]
                 ) -> None:
        self.count = count
        self.window = window
        self.expect_receipts = expect_receipts
        self.done = done
        self.result = Result()
        self._bind = encode(BindTransceiver(sequence_number=1, system_id=system_id,
                                            password=password))
        self._template = encode(SubmitSm(
            source_addr="SMPPD", source_addr_ton=5, destination_addr="93700123456",
            dest_addr_ton=1, dest_addr_npi=1, registered_delivery=registered_delivery,
            short_message=b"Load test message from the smppd load generator",
        ))
        self._size = len(self._template)
        self._buffer = bytearray()
        self._outstanding = 0
        self._sequence = 1
        self._started = 0.0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self._transport.write(self._bind)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        offset, end = 0, len(buf)
        replies: list[bytes] = []
        result = self.result
        statuses = result.statuses
        while end - offset >= 16:
            length, command_id, status, sequence = HEADER.unpack_from(buf, offset)
            if end - offset < length:
                break
            offset += length
            if command_id == SUBMIT_SM_RESP:
                self._outstanding -= 1
                result.responses += 1
                statuses[status] += 1
            elif command_id == DELIVER_SM:
                result.receipts += 1
                replies.append(HEADER.pack(17, DELIVER_SM_RESP, 0, sequence) + b"\0")
            elif command_id == BIND_TRANSCEIVER_RESP:
                if status:
                    self.done.set_exception(ConnectionError(f"bind refused 0x{status:08X}"))
                    return
                self._started = time.perf_counter()
            elif command_id == ENQUIRE_LINK:
                replies.append(encode(EnquireLinkResp(sequence_number=sequence)))
            elif command_id == UNBIND:
                self.done.set_exception(ConnectionError("unbound by the SMSC"))
                return
        del buf[:offset]
        if self._started:
            replies.append(self._fill())
        if replies and self._transport is not None:
            self._transport.write(b"".join(replies))
        self._check_done()

    def _fill(self) -> bytes:
        """As many submit_sm as the window allows, in one buffer."""
        n = min(self.window - self._outstanding, self.count - self.result.sent)
        if n <= 0:
            return b""
        size = self._size
        batch = bytearray(self._template * n)
        seq = self._sequence
        pack_into = U32.pack_into
        for i in range(n):
            seq += 1
            pack_into(batch, i * size + 12, seq)
        self._sequence = seq
        self._outstanding += n
        self.result.sent += n
        return bytes(batch)

    def _check_done(self) -> None:
        result = self.result
        # receipts are only due for accepted submits (not throttled ones)
        if (result.responses >= self.count and not self.done.done()
                and result.receipts >= min(self.expect_receipts, result.statuses[0])):
            result.elapsed = time.perf_counter() - self._started
            self.done.set_result(result)


async def blast(host: str, port: int, system_id: str, password: str, *, count: int,
                window: int = 100, receipts: bool = False, time_limit: float = 120.0) -> Result:
    """Bind, send ``count`` submit_sm keeping ``window`` in flight; wait for every response
    (and every receipt when ``receipts``); close."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Result] = loop.create_future()
    transport, _ = await loop.create_connection(
        lambda: Blaster(system_id, password, count, window, 1 if receipts else 0,
                        count if receipts else 0, done),
        host, port)
    try:
        async with asyncio.timeout(time_limit):
            return await done
    finally:
        transport.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="SMPP submit_sm blaster")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--system-id", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--receipts", action="store_true", help="ask for and await receipts")
    args = parser.parse_args(argv)
    result = run_fast(blast(args.host, args.port, args.system_id, args.password, count=args.count,
                          window=args.window, receipts=args.receipts))
    print(json.dumps(result.to_dict()))


if __name__ == "__main__":
    main()
