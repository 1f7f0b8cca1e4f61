"""The SMSC side of bench/chaos.py, as a process of its own (so it can be SIGKILLed).

    python bench/chaos_smsc.py normal --port 2775 --journal /tmp/j.txt [--first-id N]
    python bench/chaos_smsc.py hostile --port 2776 --pdus 1000000 --stats /tmp/h.json

``normal``: the SMSC simulator, one MNO ``op`` (account esme/secret), DELIVRD receipts
(``--response-delay-ms``: each submit_sm_resp that late, so the ESME's windows are full).
Each submit_sm it receives is appended to the journal as it comes (one write per PDU:
it survives a SIGKILL of this process): ``time conn destination``.

``hostile``: an SMSC that accepts any bind, then sends mutated PDUs: command_length 0,
15, 2^31 and 64 KiB + 1 (each closes the session, as SMPP 3.4 says: the stream cannot
be framed any more), truncated bodies, unknown command ids, TLV lengths past the end,
64 KiB PDUs, floods of enquire_link, responses to sequence numbers never used; the
second connection gets an enquire_link one byte per second instead. It counts what it
sent and what came back, and writes the counts as JSON to ``--stats`` when it has sent
``--pdus`` PDUs (and again at SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import struct
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators import AccountConfig, Behaviour, MnoConfig, ReceiptConfig, SimConfig
from simulators.recorder import Recorder
from simulators.server import SmscSimulator
from smppd.protocol.constants import CommandId, Tag
from smppd.protocol.pdu import BindTransceiverResp, DeliverSm, encode

HEADER = struct.Struct(">IIII")


# --------------------------------------------------------------------------- normal


class JournalRecorder(Recorder):
    """Appends each submit_sm received and each submit_sm_resp sent to a file, at once;
    keeps nothing in memory. Lines: ``time conn in sequence destination`` and
    ``time conn out sequence status``."""

    def __init__(self, path: str) -> None:
        super().__init__(limit=1, enabled=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def record(self, now: float, direction: str, command_id: int, status: int, sequence: int,
               conn_id: int, **details: Any) -> None:
        if command_id == CommandId.SUBMIT_SM and direction == "in":
            line = f"{now:.6f} {conn_id} in {sequence} {details['destination_addr']}\n"
        elif command_id == CommandId.SUBMIT_SM_RESP and direction == "out":
            line = f"{now:.6f} {conn_id} out {sequence} {status}\n"
        else:
            return
        os.write(self._fd, line.encode())


async def run_normal(args: argparse.Namespace) -> None:
    config = SimConfig(admin_port=None, mnos=[MnoConfig(
        name="op", port=args.port, first_id=args.first_id, window=100,
        behaviour=Behaviour(response_delay_ms=args.response_delay_ms),
        accounts=[AccountConfig("esme", ["secret"], tps=100_000, max_binds=8)],
        receipts=ReceiptConfig(delay_ms=(args.receipt_delay_ms, args.receipt_delay_ms)),
    )])
    sim = SmscSimulator(config)
    await sim.start()
    sim.mno("op").recorder = JournalRecorder(args.journal)
    await _until_signalled()
    await sim.stop()


# --------------------------------------------------------------------------- hostile


def _frame(command_id: int, body: bytes, sequence: int, length: int | None = None) -> bytes:
    return HEADER.pack(16 + len(body) if length is None else length, command_id, 0,
                       sequence) + body


def _deliver_body(rng: random.Random) -> bytes:
    """A deliver_sm body that decodes: random addresses and a short text."""
    pdu = DeliverSm(source_addr=str(rng.randrange(10**10)), destination_addr="SMPPD",
                    short_message=rng.randbytes(rng.randrange(1, 40)))
    return encode(pdu)[16:]


class Mutations:
    """Kinds of bad PDUs; ``answers`` tells whether SMPP 3.4 wants a response to one."""

    # Kind -> weight among the PDUs that keep the session framed.
    WEIGHTS = {"enquire_link": 30, "unknown_seq_resp": 25, "unknown_command": 15,
               "truncated": 15, "bad_tlv": 14, "pdu_64k": 0.1}
    FATAL = ("length_0", "length_15", "length_2^31", "length_64k+1")
    ANSWERED = {"enquire_link", "unknown_command", "truncated", "bad_tlv", "pdu_64k"}

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.kinds = list(self.WEIGHTS)
        self.weights = list(self.WEIGHTS.values())
        self._fatal = 0

    def next(self, sequence: int) -> tuple[str, bytes]:
        kind = self.rng.choices(self.kinds, self.weights)[0]
        return kind, getattr(self, "_" + kind)(sequence)

    def fatal(self, sequence: int) -> tuple[str, bytes]:
        kind = self.FATAL[self._fatal % len(self.FATAL)]
        self._fatal += 1
        length = {"length_0": 0, "length_15": 15, "length_2^31": 2**31,
                  "length_64k+1": 64 * 1024 + 1}[kind]
        return kind, HEADER.pack(length, CommandId.DELIVER_SM, 0, sequence)

    def _enquire_link(self, sequence: int) -> bytes:
        return _frame(CommandId.ENQUIRE_LINK, b"", sequence)

    def _unknown_seq_resp(self, sequence: int) -> bytes:
        command = self.rng.choice([CommandId.SUBMIT_SM_RESP, CommandId.ENQUIRE_LINK_RESP,
                                   CommandId.GENERIC_NACK, CommandId.UNBIND_RESP])
        body = b"12345\0" if command == CommandId.SUBMIT_SM_RESP else b""
        return _frame(command, body, 0x7FFF0000 + self.rng.randrange(0xFFFF))

    def _unknown_command(self, sequence: int) -> bytes:
        command = self.rng.choice([0x00000099, 0x00000010, 0x0000FFFF, 0x00010203])
        return _frame(command, self.rng.randbytes(self.rng.randrange(0, 64)), sequence)

    def _truncated(self, sequence: int) -> bytes:
        body = _deliver_body(self.rng)
        return _frame(CommandId.DELIVER_SM, body[:self.rng.randrange(0, 8)], sequence)

    def _bad_tlv(self, sequence: int) -> bytes:
        tlv = struct.pack(">HH", Tag.MESSAGE_PAYLOAD, 200) + b"short"  # says 200, has 5
        return _frame(CommandId.DELIVER_SM, _deliver_body(self.rng) + tlv, sequence)

    def _pdu_64k(self, sequence: int) -> bytes:
        return _frame(0x00000099, bytes(64 * 1024 - 16), sequence)


class Hostile:
    def __init__(self, pdus: int, stats: Path, round_size: int) -> None:
        self.pdus = pdus
        self.stats_path = stats
        self.round_size = round_size
        self.mutations = Mutations(seed=14)
        self.sent: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.answers_due = 0
        self.connections = 0
        self.closed_by_peer = 0  # sessions the daemon closed (after a fatal PDU or a stall)
        self.total = 0
        self.done = asyncio.Event()
        self.started = time.monotonic()

    def write_stats(self) -> None:
        stats = {"sent": self.total, "by_kind": dict(self.sent),
                 "received": dict(self.received), "answers_due": self.answers_due,
                 "answered": sum(n for k, n in self.received.items()
                                 if k in ("generic_nack", "enquire_link_resp",
                                          "deliver_sm_resp")),
                 "fatal": sum(self.sent[k] for k in Mutations.FATAL),
                 "connections": self.connections, "closed_by_peer": self.closed_by_peer,
                 "seconds": round(time.monotonic() - self.started, 1)}
        partial = self.stats_path.with_suffix(".partial")
        partial.write_text(json.dumps(stats))
        partial.replace(self.stats_path)  # the bench reads it meanwhile: never half a file

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        slow = self.connections % 4 == 2  # one connection in four drips instead
        try:
            header = await reader.readexactly(16)
            length, _, _, sequence = HEADER.unpack(header)
            await reader.readexactly(length - 16)
            writer.write(encode(BindTransceiverResp(sequence_number=sequence, system_id="HOSTILE")))
            counting = asyncio.ensure_future(self._count(reader))
            sending = asyncio.ensure_future(self._drip(writer) if slow else self._flood(writer))
            try:
                await asyncio.wait([counting, sending], return_when=asyncio.FIRST_COMPLETED)
                if not counting.done():  # a fatal PDU went out: the daemon should close
                    await asyncio.wait([counting], timeout=30.0)
            finally:
                counting.cancel()
                sending.cancel()
                if sending.done() and not sending.cancelled():
                    sending.exception()  # a reset while sending: the session is over
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()

    async def _count(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header = await reader.readexactly(16)
                length, command_id, _, _ = HEADER.unpack(header)
                if length > 16:
                    await reader.readexactly(length - 16)
                try:
                    self.received[CommandId(command_id).name.lower()] += 1
                except ValueError:
                    self.received[f"0x{command_id:08x}"] += 1
        except (OSError, asyncio.IncompleteReadError):
            self.closed_by_peer += 1

    async def _flood(self, writer: asyncio.StreamWriter) -> None:
        batch: list[bytes] = []
        for n in range(self.round_size):
            if self.total >= self.pdus:
                break
            kind, frame = self.mutations.next(n + 2)
            self.sent[kind] += 1
            self.answers_due += kind in Mutations.ANSWERED
            self.total += 1
            batch.append(frame)
            if len(batch) == 256:
                writer.write(b"".join(batch))
                batch.clear()
                await writer.drain()
        if self.total >= self.pdus:
            writer.write(b"".join(batch))
            self.write_stats()
            self.done.set()
            await writer.drain()
            await asyncio.Event().wait()  # keep the session; the bench stops us
        kind, frame = self.mutations.fatal(1)
        self.sent[kind] += 1
        self.total += 1
        writer.write(b"".join(batch) + frame)
        await writer.drain()

    async def _drip(self, writer: asyncio.StreamWriter) -> None:
        """An enquire_link one byte per second, until the daemon gives up on the peer."""
        frame = _frame(CommandId.ENQUIRE_LINK, b"", 1)
        self.sent["one_byte_per_second"] += 1
        for byte in frame * 100:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1.0)


async def run_hostile(args: argparse.Namespace) -> None:
    hostile = Hostile(args.pdus, Path(args.stats), args.round)
    server = await asyncio.start_server(hostile.serve, "127.0.0.1", args.port)
    stop = asyncio.ensure_future(_until_signalled())
    done = asyncio.ensure_future(hostile.done.wait())
    while not (stop.done() or done.done()):  # the counts so far, once a second
        hostile.write_stats()
        await asyncio.wait([stop, done], timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
    hostile.write_stats()
    await stop
    hostile.write_stats()
    server.close()


# --------------------------------------------------------------------------- main


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    normal = sub.add_parser("normal")
    normal.add_argument("--port", type=int, required=True)
    normal.add_argument("--journal", required=True)
    normal.add_argument("--first-id", type=int, default=1)
    normal.add_argument("--receipt-delay-ms", type=float, default=50.0)
    normal.add_argument("--response-delay-ms", type=float, default=0.0,
                        help="submit_sm_resp this late (fills the ESME's windows)")
    hostile = sub.add_parser("hostile")
    hostile.add_argument("--port", type=int, required=True)
    hostile.add_argument("--pdus", type=int, default=1_000_000)
    hostile.add_argument("--round", type=int, default=20_000,
                         help="PDUs per session before the one that closes it")
    hostile.add_argument("--stats", required=True)
    args = parser.parse_args()
    import uvloop

    uvloop.run(run_normal(args) if args.mode == "normal" else run_hostile(args))


if __name__ == "__main__":
    main()
