"""One simulated MNO: accounts, binds, TPS, message ids, receipts, MO and misbehaviours.

``Mno`` holds the policy and state of one operator; ``SmscHandler`` is the
per-connection handler the asyncio adapter calls. submit_sm arrives undecoded
(the session's lazy path): the header says enough to throttle and answer with a
pre-built submit_sm_resp; the body is decoded only when a receipt may be due or
recording is on.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from smppd.link.connection import BaseHandler, SmppConnection
from smppd.protocol.constants import HEADER_LEN, CommandId, Status
from smppd.protocol.encoding import choose_coding, encode_text
from smppd.protocol.errors import PduDecodeError
from smppd.protocol.pdu import (
    Bind,
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DeliverSm,
    Pdu,
    SubmitSm,
    decode,
    encode,
    generic_nack,
)
from smppd.protocol.session import Closed, Event, RawRequestReceived, Role, Session
from smppd.protocol.split import Strategy, split_message
from smppd.protocol.window import Pending

from .config import AccountConfig, Behaviour, MnoConfig
from .counters import AccountCounters, Totals
from .id_formats import parse_id_format
from .receipt_maker import DueQueue, ReceiptMaker, SubmitLike, peek_submit
from .recorder import Recorder, message_details
from .wire import (
    DELIVER_SM,
    ENQUIRE_LINK,
    ENQUIRE_LINK_RESP,
    HEADER,
    SUBMIT_SM,
    SUBMIT_SM_RESP,
    U32,
)

log = logging.getLogger("simulators.mno")

_BIND_TYPES: dict[type[Bind], str] = {
    BindTransmitter: "transmitter",
    BindReceiver: "receiver",
    BindTransceiver: "transceiver",
}
_RECEIVING = frozenset({"receiver", "transceiver"})


def submit_resp(sequence: int, status: int, message_id: bytes = b"") -> bytes:
    """A submit_sm_resp on the wire; error responses carry no body."""
    if status:
        return HEADER.pack(HEADER_LEN, SUBMIT_SM_RESP, status, sequence)
    return HEADER.pack(HEADER_LEN + len(message_id) + 1, SUBMIT_SM_RESP, 0, sequence) \
        + message_id + b"\0"


class MoError(ValueError):
    """An MO that cannot be sent; ``field`` names the cause."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Account:
    """An account's runtime state: passwords (rotatable), binds, TPS counters."""

    def __init__(self, config: AccountConfig) -> None:
        self.config = config
        self.system_id = config.system_id
        self.passwords = list(config.passwords)
        self.counters = AccountCounters(config.tps)
        self.bound: list[SmscHandler] = []
        # receipts and MO with no receiving bind, kept until one binds (as an SMSC does)
        self.undelivered: deque[bytes] = deque(maxlen=100_000)
        self._rr = 0

    def receivers(self) -> list[SmscHandler]:
        return [h for h in self.bound if h.bind_type in _RECEIVING and h.conn.is_open]

    def next_receiver(self, exclude: SmscHandler | None = None) -> SmscHandler | None:
        """Round-robin over the binds that can receive deliver_sm."""
        receivers = [h for h in self.receivers() if h is not exclude] or self.receivers()
        if not receivers:
            return None
        self._rr = (self._rr + 1) % len(receivers)
        return receivers[self._rr]


@dataclass(slots=True)
class _Receipt:
    origin: SmscHandler
    frame: bytes  # deliver_sm, sequence number still 0


class SmscHandler(BaseHandler):
    """Policy of one SMSC-side connection; the MNO decides, this routes."""

    def __init__(self, mno: Mno, conn_id: int) -> None:
        self.mno = mno
        self.conn_id = conn_id
        self.conn: SmppConnection = None  # type: ignore[assignment]  # set by the factory
        self.account: Account | None = None
        self.bind_type: str | None = None
        self.dropped = False
        self.backlog: deque[bytes] = deque()  # deliver_sm frames waiting for a window slot

    @property
    def can_receive(self) -> bool:
        return self.bind_type in _RECEIVING and self.conn.is_open and not self.dropped

    # -- ConnectionHandler --

    def request_received(self, conn: SmppConnection, pdu: Pdu) -> None:
        if isinstance(pdu, Bind):
            self.mno.on_bind(self, pdu)
        else:
            self.mno.record_in(self, pdu)
            super().request_received(conn, pdu)

    def session_event(self, conn: SmppConnection, event: Event) -> None:
        if type(event) is RawRequestReceived:
            if event.command_id == SUBMIT_SM:
                self.mno.on_submit(self, event)
            else:
                self.mno.on_enquire_link(self, event)

    def response_received(self, conn: SmppConnection, pending: Pending, pdu: Pdu) -> None:
        self.mno.on_response(self, pdu)
        if isinstance(pending.context, bytes):
            self.mno.receipt_acked(self, pending.context, pdu.command_status)
        if self.backlog:
            self.flush_backlog()

    def request_expired(self, conn: SmppConnection, pending: Pending) -> None:
        if self.backlog:
            self.flush_backlog()

    def connection_closed(self, conn: SmppConnection, closed: Closed) -> None:
        self.mno.on_closed(self, closed)

    # -- sending deliver_sm --

    def send_deliver(self, frame: bytes) -> None:
        """Send a pre-encoded deliver_sm (sequence 0) through the window, or queue it."""
        if self.backlog or self.conn.session.window.free == 0:
            self.backlog.append(frame)
        else:
            self._send(frame)

    def flush_backlog(self) -> None:
        window = self.conn.session.window
        while self.backlog and window.free and self.conn.is_open:
            self._send(self.backlog.popleft())

    def _send(self, frame: bytes) -> None:
        # the session's window and sequence numbers, without re-encoding the PDU
        session = self.conn.session
        sequence = session.next_sequence()
        # the frame as context: if the connection dies unanswered, it is delivered again
        session.window.add(sequence, DELIVER_SM, self.conn.loop.time(), frame)
        self.conn.send_raw(frame[:12] + U32.pack(sequence) + frame[16:])
        mno = self.mno
        if mno.recorder.enabled:
            pdu, _ = decode(frame)
            assert isinstance(pdu, DeliverSm)
            mno.recorder.record(mno.clock(), "out", DELIVER_SM, 0, sequence, self.conn_id,
                                **message_details(pdu))


# Seconds before a deliver_sm answered ESME_RX_T_APPN is sent again.
REDELIVER_AFTER = 1.0


class Mno:
    """One simulated operator."""

    def __init__(self, config: MnoConfig, clock: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.name = config.name
        self.clock = clock
        self.loop = loop
        self.port = config.port
        self.tls_port: int | None = None  # once listening with TLS
        self.accounts: dict[str, Account] = {}
        self.handlers: set[SmscHandler] = set()
        self.recorder = Recorder(config.record_limit, config.record)
        self.receipts = DueQueue[_Receipt](loop, self._deliver_receipt)
        self._submit_id = parse_id_format(config.submit_id_format)
        self._receipt_id = parse_id_format(config.receipt_id_format)
        self._conn_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        # id(receipt frame) -> (frame, handler, sequence, message_id) of a submit_sm_resp
        # held for that receipt's deliver_sm_resp (response_after_receipt_ack)
        self._response_after_ack: dict[int, tuple[bytes, SmscHandler, int, str]] = {}
        self.reset()

    def reset(self) -> None:
        """Back to the configured state: behaviour, passwords, counters, ids, records."""
        self.behaviour: Behaviour = replace(self.config.behaviour)
        for account_config in self.config.accounts:
            account = self.accounts.get(account_config.system_id)
            if account is None:
                self.accounts[account_config.system_id] = Account(account_config)
            else:
                account.passwords = list(account_config.passwords)
                account.counters = AccountCounters(account_config.tps)
        self.counters = Totals(per_account={a.system_id: a.counters
                                            for a in self.accounts.values()})
        self.random = random.Random(self.config.seed)
        self.receipt_maker = ReceiptMaker(self.config.receipts, self.random)
        self._next_id = self.config.first_id - 1
        self._mo_reference = 0
        self.recorder.clear()
        self.receipts.clear()

    # -- connections --

    def new_connection(self) -> SmppConnection:
        """The protocol factory for this MNO's listening socket."""
        handler = SmscHandler(self, next(self._conn_ids))
        session = Session(
            Role.SMSC,
            window_size=self.config.window,
            response_timeout=self.config.response_timeout,
            enquire_link_interval=self.config.enquire_link_interval,
            lazy_commands=(CommandId.SUBMIT_SM, CommandId.ENQUIRE_LINK),
        )
        handler.conn = SmppConnection(session, handler, self.loop)
        self.handlers.add(handler)
        return handler.conn

    def on_closed(self, handler: SmscHandler, closed: Closed) -> None:
        self.handlers.discard(handler)
        if closed.reason == "peer_unbound":
            # the session answered the ESME's unbind itself (sequence number not kept)
            self.record_out(handler, CommandId.UNBIND, 0, 0, direction_in=True)
            self.record_out(handler, CommandId.UNBIND_RESP, 0, 0)
        account = handler.account
        if account is not None and handler in account.bound:
            account.bound.remove(handler)
        # deliver_sm unanswered or queued on a closed bind go to another bind of the
        # account, or wait for one
        frames = [p.context for p in closed.abandoned if isinstance(p.context, bytes)]
        frames.extend(handler.backlog)
        handler.backlog.clear()
        for frame in frames:
            self._route(_Receipt(handler, frame))

    @property
    def bound_count(self) -> int:
        return sum(len(a.bound) for a in self.accounts.values())

    # -- binds --

    def on_bind(self, handler: SmscHandler, pdu: Bind) -> None:
        self.record_in(handler, pdu, system_id=pdu.system_id)
        bind_type = _BIND_TYPES[type(pdu)]
        status, account = self._bind_status(pdu, bind_type)
        handler.conn.respond(pdu, pdu.response(status, system_id=self.config.smsc_system_id))
        self.record_out(handler, pdu.command_id | 0x80000000, status, pdu.sequence_number)
        if account is None:
            self.counters.bind_refusals += 1
            return
        handler.account = account
        handler.bind_type = bind_type
        account.bound.append(handler)
        self.counters.binds += 1
        if bind_type in _RECEIVING:
            waiting, account.undelivered = account.undelivered, deque(maxlen=100_000)
            for frame in waiting:
                handler.send_deliver(frame)

    def _bind_status(self, pdu: Bind, bind_type: str) -> tuple[int, Account | None]:
        if self.behaviour.reject_binds is not None:
            return self.behaviour.reject_binds, None
        account = self.accounts.get(pdu.system_id)
        if account is None:
            return Status.ESME_RINVSYSID, None
        if pdu.password not in account.passwords:
            return Status.ESME_RINVPASWD, None
        if bind_type not in account.config.bind_types:
            return Status.ESME_RBINDFAIL, None
        if len(account.bound) >= account.config.max_binds:
            self.counters.alybnd_refusals += 1
            return Status.ESME_RALYBND, None
        return Status.ESME_ROK, account

    # -- submit_sm: the hot path --

    def on_submit(self, handler: SmscHandler, raw: RawRequestReceived) -> None:
        counters = self.counters
        counters.submits += 1
        if handler.dropped:
            return
        behaviour = self.behaviour
        conn = handler.conn
        sequence = raw.sequence_number
        recorder = self.recorder
        receipts = self.config.receipts.enabled
        submit: SubmitLike | None = None
        if receipts and not recorder.enabled:
            submit = peek_submit(raw.frame)  # cheap: just what a receipt needs
        if submit is None and (recorder.enabled or receipts):
            try:
                pdu, _ = decode(raw.frame)
            except PduDecodeError as exc:
                conn.send_raw(submit_resp(sequence, exc.command_status))
                return
            assert isinstance(pdu, SubmitSm)
            submit = pdu
        if behaviour.black_hole:
            self._record_submit(handler, submit, sequence, None)
            return
        if behaviour.generic_nack:
            self._record_submit(handler, submit, sequence, None)
            conn.send_raw(generic_nack(sequence, Status.ESME_RSYSERR))
            self.record_out(handler, CommandId.GENERIC_NACK, Status.ESME_RSYSERR, sequence)
            return
        account = handler.account
        assert account is not None  # the session only passes submit_sm up once bound
        if behaviour.queue_full:
            counters.queue_full += 1
            status = Status.ESME_RMSGQFUL
        elif not account.counters.admit(self.clock()):
            counters.throttled += 1
            status = Status.ESME_RTHROTTLED
        else:
            status = Status.ESME_ROK
        if status:
            self._record_submit(handler, submit, sequence, None)
            self._respond(handler, submit_resp(sequence, status), sequence, status, None)
            return
        counters.accepted += 1
        self._next_id += 1
        message_id = self._submit_id(self._next_id)
        self._record_submit(handler, submit, sequence, message_id)
        planned = None
        if submit is not None and receipts and submit.registered_delivery & 0x03:
            planned = self.receipt_maker.plan(submit, self._receipt_id(self._next_id),
                                              self.clock())
            if behaviour.receipt_before_response or behaviour.response_after_receipt_ack:
                for _, receipt in planned:
                    self._route(_Receipt(handler, receipt))
                if behaviour.response_after_receipt_ack:
                    # answered once the last receipt is acknowledged (receipt_acked)
                    self._response_after_ack[id(planned[-1][1])] = (
                        planned[-1][1], handler, sequence, message_id)
                    return
                planned = None
        self._respond(handler, submit_resp(sequence, 0, message_id.encode()), sequence, 0,
                      message_id)
        if planned:
            push = self.receipts.push
            for delay, receipt in planned:
                push(delay, _Receipt(handler, receipt))

    def _respond(self, handler: SmscHandler, data: bytes, sequence: int, status: int,
                 message_id: str | None) -> None:
        delay = self.behaviour.response_delay_ms
        if delay:
            self.loop.call_later(delay / 1000.0, handler.conn.send_raw, data)
        else:
            handler.conn.send_raw(data)
        if self.recorder.enabled:
            details: dict[str, Any] = {} if message_id is None else {"message_id": message_id}
            self.record_out(handler, SUBMIT_SM_RESP, status, sequence, **details)
        behaviour = self.behaviour
        if behaviour.drop_after is not None:
            behaviour.drop_after -= 1
            if behaviour.drop_after <= 0:
                behaviour.drop_after = None
                handler.dropped = True
                handler.conn.close()  # what was answered goes out; the rest of the window is lost

    def _record_submit(self, handler: SmscHandler, submit: SubmitLike | None, sequence: int,
                       message_id: str | None) -> None:
        if isinstance(submit, SubmitSm) and self.recorder.enabled:
            self.recorder.record(self.clock(), "in", SUBMIT_SM, 0, sequence, handler.conn_id,
                                 system_id=handler.account.system_id if handler.account else None,
                                 **message_details(submit))

    def receipt_acked(self, handler: SmscHandler, frame: bytes, status: int) -> None:
        """A deliver_sm_resp came back: a transient error (ESME_RX_T_APPN) has the
        deliver_sm sent again REDELIVER_AFTER seconds later, as SMSCs do; an OK releases
        a submit_sm_resp waiting for it (any other error leaves it waiting)."""
        if status == Status.ESME_RX_T_APPN:
            self.counters.redeliveries += 1
            self.receipts.push(REDELIVER_AFTER, _Receipt(handler, frame))
            return
        if status or not self._response_after_ack:
            return
        waiting = self._response_after_ack.pop(id(frame), None)
        if waiting is None:
            return
        _, handler, sequence, message_id = waiting
        if handler.conn.is_open:
            self._respond(handler, submit_resp(sequence, 0, message_id.encode()), sequence, 0,
                          message_id)

    def on_enquire_link(self, handler: SmscHandler, raw: RawRequestReceived) -> None:
        if self.recorder.enabled:
            self.recorder.record(self.clock(), "in", raw.command_id, 0, raw.sequence_number,
                                 handler.conn_id)
        if raw.command_id != ENQUIRE_LINK or self.behaviour.silent_enquire_link:
            return
        handler.conn.send_raw(HEADER.pack(HEADER_LEN, ENQUIRE_LINK_RESP, 0, raw.sequence_number))
        self.record_out(handler, ENQUIRE_LINK_RESP, 0, raw.sequence_number)

    def on_response(self, handler: SmscHandler, pdu: Pdu) -> None:
        if pdu.command_status:
            self.counters.deliver_sm_resp_errors += 1
        self.record_in(handler, pdu)

    # -- receipts and MO --

    def _deliver_receipt(self, receipt: _Receipt) -> None:
        self._route(receipt)

    def _route(self, receipt: _Receipt) -> None:
        origin = receipt.origin
        target: SmscHandler | None = origin
        if self.config.receipts.route != "same" or not origin.can_receive:
            account = origin.account
            target = account.next_receiver() if account is not None else None
        if target is None:
            account = origin.account
            if account is None or len(account.undelivered) == account.undelivered.maxlen:
                self.counters.receipts_dropped += 1
            else:
                account.undelivered.append(receipt.frame)
            return
        self.counters.receipts_sent += 1
        target.send_deliver(receipt.frame)

    def inject_mo(self, source_addr: str, destination_addr: str, text: str | bytes, *,
                  system_id: str | None = None, data_coding: int | None = None,
                  concat: Strategy = "udh", only_parts: Sequence[int] | None = None,
                  reference: int | None = None) -> int:
        """Send a mobile-originated message, split as needed; returns the PDUs sent.

        ``text`` as str is encoded for ``data_coding`` (chosen if None); bytes are sent
        as they are. All parts go on one receiving bind (round-robin across binds).
        ``only_parts`` (1-based) sends some parts only, under ``reference`` if given:
        the rest can follow in a later call with the same reference (as after the
        ESME restarted between two parts).
        """
        if system_id is not None and system_id not in self.accounts:
            raise MoError("system_id", f"unknown system_id {system_id!r}")
        accounts = [self.accounts[system_id]] if system_id else list(self.accounts.values())
        target = next((h for a in accounts if (h := a.next_receiver()) is not None), None)
        if target is None:
            raise MoError("system_id", "no receiver or transceiver bind to deliver to")
        if data_coding is None:
            data_coding = choose_coding(text) if isinstance(text, str) else 4
        try:
            payload = encode_text(text, data_coding)
        except ValueError as exc:
            raise MoError("text", str(exc)) from None
        if reference is None:
            self._mo_reference = (self._mo_reference + 1) & 0xFF
            reference = self._mo_reference
        parts = split_message(payload, data_coding, concat, reference)
        if only_parts is not None:
            parts = [parts[n - 1] for n in only_parts]
        for part in parts:
            target.send_deliver(encode(DeliverSm(
                source_addr_ton=1, source_addr_npi=1, source_addr=source_addr,
                destination_addr=destination_addr, esm_class=part.esm_class,
                data_coding=data_coding, short_message=part.short_message,
                tlvs=dict(part.tlvs),
            )))
        self.counters.mo_sent += 1
        return len(parts)

    # -- admin actions --

    def set_passwords(self, system_id: str, passwords: list[str]) -> None:
        self.accounts[system_id].passwords = list(passwords)

    def unbind_all(self, grace: float = 5.0) -> int:
        """Unbind every bound session from the SMSC side; returns how many."""
        handlers = [h for a in self.accounts.values() for h in a.bound if h.conn.is_open]
        for handler in handlers:
            task = self.loop.create_task(handler.conn.unbind(grace))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(handlers)

    def close_all(self) -> None:
        for handler in list(self.handlers):
            handler.conn.abort()
        self.receipts.clear()

    # -- recording --

    def record_in(self, handler: SmscHandler, pdu: Pdu, **details: Any) -> None:
        if self.recorder.enabled:
            self.recorder.record(self.clock(), "in", pdu.command_id, pdu.command_status,
                                 pdu.sequence_number, handler.conn_id, **details)

    def record_out(self, handler: SmscHandler, command_id: int, status: int, sequence: int,
                   *, direction_in: bool = False, **details: Any) -> None:
        if self.recorder.enabled:
            self.recorder.record(self.clock(), "in" if direction_in else "out", command_id,
                                 status, sequence, handler.conn_id, **details)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "port": self.port,
            "networks": self.config.networks,
            "accounts": sorted(self.accounts),
            "bound": {sid: len(a.bound) for sid, a in self.accounts.items()},
            "behaviour": self.behaviour.to_dict(),
        }
