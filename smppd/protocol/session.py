"""A sans-IO SMPP session: bytes and clock readings in, events and bytes out.

The session frames and decodes what the peer sends, answers what the protocol
obliges it to answer (enquire_link_resp, unbind_resp, generic_nack, wrong-state
rejections), keeps the window of its own outstanding requests, and runs the
enquire_link and response timers from the ``now`` values it is given. What to do
with a bind, a submit_sm or a deliver_sm is the caller's policy: those arrive as
``RequestReceived`` events and the caller answers with ``respond``.

One class serves both ends: ``Role.ESME`` (the daemon) and ``Role.SMSC`` (the
simulator).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from .constants import MAX_PDU_LEN, MAX_SEQUENCE, RESPONSE_BIT, CommandId, Status
from .errors import InvalidCommandLengthError, PduDecodeError
from .pdu import (
    Bind,
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    EnquireLink,
    GenericNack,
    Pdu,
    Unbind,
    decode,
    encode,
    generic_nack,
    peek_header,
)
from .window import Pending, Window

_U32 = struct.Struct(">I")


class Role(enum.Enum):
    ESME = "esme"
    SMSC = "smsc"


class State(enum.Enum):
    OPEN = "open"
    BINDING = "binding"
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"
    CLOSED = "closed"

    @property
    def bound(self) -> bool:
        return self in _BOUND


_BOUND = frozenset({State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX})

_BIND_STATE: dict[int, State] = {
    CommandId.BIND_TRANSMITTER: State.BOUND_TX,
    CommandId.BIND_RECEIVER: State.BOUND_RX,
    CommandId.BIND_TRANSCEIVER: State.BOUND_TRX,
}
_BIND_RESP_STATE: dict[int, State] = {cid | RESPONSE_BIT: st for cid, st in _BIND_STATE.items()}

# Which requests each side may send while bound in each state (SMPP v3.4 section 2.3).
_ESME_SENDS = frozenset({CommandId.SUBMIT_SM, CommandId.DATA_SM, CommandId.QUERY_SM})
_SMSC_SENDS = frozenset({CommandId.DELIVER_SM, CommandId.DATA_SM})
_ALWAYS = frozenset({CommandId.ENQUIRE_LINK, CommandId.UNBIND, CommandId.GENERIC_NACK})


def _allowed(state: State, command_id: int, sender: Role) -> bool:
    """May ``sender`` send request ``command_id`` in ``state``?"""
    if command_id in _ALWAYS:
        return state.bound or state is State.UNBINDING or command_id == CommandId.ENQUIRE_LINK
    if command_id in _BIND_STATE:
        return state in (State.OPEN, State.BINDING) and sender is Role.ESME
    if command_id == CommandId.OUTBIND:
        return state is State.OPEN and sender is Role.SMSC
    if state is State.BOUND_TRX:
        return command_id in (_ESME_SENDS if sender is Role.ESME else _SMSC_SENDS)
    if state is State.BOUND_TX:
        # a transmitter bind carries ESME->SMSC messages only
        return sender is Role.ESME and command_id in _ESME_SENDS
    if state is State.BOUND_RX:
        return sender is Role.SMSC and command_id in _SMSC_SENDS
    return False


# --- events ----------------------------------------------------------------------


@dataclass(slots=True)
class RequestReceived:
    """A request the caller must answer with ``Session.respond``."""

    pdu: Pdu


@dataclass(slots=True)
class RawRequestReceived:
    """A request left undecoded (``lazy_commands``): decode ``frame`` only if needed."""

    command_id: int
    sequence_number: int
    frame: bytes


@dataclass(slots=True)
class ResponseReceived:
    """The answer to one of our requests (a generic_nack counts as one)."""

    pending: Pending
    pdu: Pdu


@dataclass(slots=True)
class UnexpectedResponse:
    """A response whose sequence number matches nothing outstanding (late or bogus)."""

    pdu: Pdu


@dataclass(slots=True)
class RequestExpired:
    """No response within the response timeout: the outcome is unknown."""

    pending: Pending


@dataclass(slots=True)
class Bound:
    state: State
    system_id: str


@dataclass(slots=True)
class BindRefused:
    command_status: int


@dataclass(slots=True)
class ProtocolError:
    """A PDU from the peer could not be decoded; it was answered with generic_nack."""

    error: PduDecodeError


@dataclass(slots=True)
class Closed:
    """The session is over: the caller should close the transport.

    ``reason``: "unbound" (orderly), "peer_unbound", "dead_peer", "framing_error".
    ``abandoned`` lists requests that were still waiting for a response.
    """

    reason: str
    abandoned: list[Pending] = field(default_factory=list)


Event: TypeAlias = (
    RequestReceived
    | RawRequestReceived
    | ResponseReceived
    | UnexpectedResponse
    | RequestExpired
    | Bound
    | BindRefused
    | ProtocolError
    | Closed
)

Clock: TypeAlias = Callable[[], float]


class NotBoundError(Exception):
    """The session's state does not allow this request (SMPP's ESME_RINVBNDSTS)."""

    def __init__(self, state: State, command_id: int) -> None:
        super().__init__(f"cannot send {CommandId(command_id).name.lower()} in state {state.value}")
        self.state = state
        self.command_id = command_id


class Session:
    """One SMPP connection's protocol state, with no I/O of its own."""

    def __init__(
        self,
        role: Role,
        *,
        window_size: int = 10,
        response_timeout: float = 30.0,
        enquire_link_interval: float = 30.0,
        max_pdu_length: int = MAX_PDU_LEN,
        lazy_commands: Iterable[int] = (),
    ) -> None:
        if enquire_link_interval <= 0:
            raise ValueError("enquire_link_interval must be positive")
        self.role = role
        self.state = State.OPEN
        self.window = Window(window_size, response_timeout)
        self.enquire_link_interval = enquire_link_interval
        self.max_pdu_length = max_pdu_length
        self.system_id = ""
        self._lazy = frozenset(lazy_commands)
        self._buffer = bytearray()
        self._out: list[bytes] = []
        self._sequence = 0
        self._last_received: float | None = None
        self._probe_outstanding = False

    # -- sequence numbers --

    def next_sequence(self) -> int:
        """1..0x7FFFFFFF, wrapping, skipping any still outstanding."""
        while True:
            self._sequence = self._sequence + 1 if self._sequence < MAX_SEQUENCE else 1
            if self._sequence not in self.window:
                return self._sequence

    # -- output --

    def data_to_send(self) -> bytes:
        """Everything queued for the wire since the last call."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    def send_request(self, pdu: Pdu, now: float, context: Any = None) -> int:
        """Queue a request; returns its sequence number.

        Raises ``NotBoundError`` if the state forbids it and ``WindowFullError`` when
        the window has no free slot (housekeeping requests bypass the window limit);
        ``PduEncodeError`` leaves nothing behind.
        """
        if not _allowed(self.state, pdu.command_id, self.role):
            raise NotBoundError(self.state, pdu.command_id)
        housekeeping = pdu.command_id in (CommandId.ENQUIRE_LINK, CommandId.UNBIND)
        sequence = self.next_sequence()
        pdu.sequence_number = sequence
        data = encode(pdu)  # before the window: a PduEncodeError must leave no pending entry
        self.window.add(sequence, pdu.command_id, now, context, force=housekeeping)
        self._out.append(data)
        if isinstance(pdu, Bind):
            self.state = State.BINDING
        elif pdu.command_id == CommandId.UNBIND:
            self.state = State.UNBINDING
        if self._last_received is None:
            self._last_received = now
        return sequence

    def send_encoded(self, frame: bytes, now: float, context: Any = None) -> int:
        """Queue a request encoded beforehand with sequence number 0; returns the sequence
        number it goes out with. The same checks and window entry as ``send_request``,
        without encoding it again (a message encoded once at accept, sent much later).
        Binds, unbind and enquire_link change session state: use ``send_request``."""
        command_id: int = _U32.unpack_from(frame, 4)[0]
        if command_id in _BIND_STATE or command_id in _ALWAYS:
            raise ValueError("session requests go through send_request")
        if not _allowed(self.state, command_id, self.role):
            raise NotBoundError(self.state, command_id)
        sequence = self.next_sequence()
        self.window.add(sequence, command_id, now, context)
        self._out.append(frame[:12] + _U32.pack(sequence) + frame[16:])
        if self._last_received is None:
            self._last_received = now
        return sequence

    def bind(self, pdu: BindTransmitter | BindReceiver | BindTransceiver, now: float) -> int:
        return self.send_request(pdu, now)

    def unbind(self, now: float) -> int:
        return self.send_request(Unbind(), now)

    def respond(self, request: Pdu | RawRequestReceived, response: Pdu) -> None:
        """Answer a request from the peer (same sequence number)."""
        response.sequence_number = request.sequence_number
        self._out.append(encode(response))
        if (
            self.role is Role.SMSC
            and request.command_id in _BIND_STATE
            and response.command_status == Status.ESME_ROK
        ):
            self.state = _BIND_STATE[request.command_id]
            if isinstance(request, Bind):
                self.system_id = request.system_id

    def send_raw(self, data: bytes) -> None:
        """Queue pre-encoded PDUs (a fast path for simulators and load generators)."""
        self._out.append(data)

    # -- input --

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the peer; returns what happened, in order."""
        self._buffer += data
        events: list[Event] = []
        buf = self._buffer
        offset = 0
        try:
            while True:
                header = peek_header(buf, offset)
                if (header is not None and header[1] in self._lazy
                        and header[0] <= self.max_pdu_length):
                    length = header[0]
                    if len(buf) - offset < length:
                        break
                    if length >= 16 and self.state.bound:
                        events.append(RawRequestReceived(header[1], header[3],
                                                         bytes(buf[offset:offset + length])))
                        offset += length
                        self._last_received = now
                        continue
                try:
                    pdu, consumed = decode(buf, offset, self.max_pdu_length)
                except InvalidCommandLengthError as exc:
                    events.append(ProtocolError(exc))
                    self._out.append(generic_nack(0, exc.command_status))
                    events.append(self._close("framing_error"))
                    offset = len(buf)
                    break
                except PduDecodeError as exc:
                    offset += exc.consumed
                    self._last_received = now
                    events.append(ProtocolError(exc))
                    self._answer_error(exc)
                    continue
                if pdu is None:
                    break
                offset += consumed
                self._last_received = now
                self._handle(pdu, now, events)
                if self.state is State.CLOSED:
                    break
        finally:
            del buf[:offset]
        return events

    def _answer_error(self, exc: PduDecodeError) -> None:
        command_id = exc.command_id
        sequence = exc.sequence_number or 0
        if command_id is not None and command_id & RESPONSE_BIT:
            return  # never answer a response; a broken one simply matches nothing
        self._out.append(generic_nack(sequence, exc.command_status))

    def _handle(self, pdu: Pdu, now: float, events: list[Event]) -> None:
        command_id = pdu.command_id
        if command_id & RESPONSE_BIT:
            self._handle_response(pdu, events)
            return
        if command_id == CommandId.ENQUIRE_LINK:
            self._out.append(encode(pdu.response()))
            return
        if command_id == CommandId.UNBIND:
            self._out.append(encode(pdu.response()))
            events.append(self._close("peer_unbound"))
            return
        peer = Role.SMSC if self.role is Role.ESME else Role.ESME
        if not _allowed(self.state, command_id, peer):
            # A second bind on a bound session is "already bound", anything else "wrong state".
            status = (Status.ESME_RALYBND if command_id in _BIND_STATE and self.state.bound
                      and self.role is Role.SMSC
                      else Status.ESME_RINVBNDSTS)
            self._out.append(encode(pdu.response(status)) if pdu.response_class
                             else generic_nack(pdu.sequence_number, status))
            return
        events.append(RequestReceived(pdu))

    def _handle_response(self, pdu: Pdu, events: list[Event]) -> None:
        pending = self.window.complete(pdu.sequence_number)
        if pending is None:
            events.append(UnexpectedResponse(pdu))
            return
        if pending.command_id == CommandId.ENQUIRE_LINK:
            self._probe_outstanding = False
        if pdu.command_id in _BIND_RESP_STATE or (
            isinstance(pdu, GenericNack) and pending.command_id in _BIND_STATE
        ):
            if pdu.command_status == Status.ESME_ROK and not isinstance(pdu, GenericNack):
                self.state = _BIND_RESP_STATE[pdu.command_id]
                self.system_id = getattr(pdu, "system_id", "")
                events.append(ResponseReceived(pending, pdu))
                events.append(Bound(self.state, self.system_id))
                return
            self.state = State.OPEN
            events.append(ResponseReceived(pending, pdu))
            events.append(BindRefused(pdu.command_status))
            return
        events.append(ResponseReceived(pending, pdu))
        if pending.command_id == CommandId.UNBIND:
            events.append(self._close("unbound"))

    # -- timers --

    def tick(self, now: float) -> list[Event]:
        """Run the timers: expire requests, probe an idle peer, declare a dead one."""
        events: list[Event] = [RequestExpired(p) for p in self.window.expire(now)]
        for event in events:
            assert isinstance(event, RequestExpired)
            if event.pending.command_id == CommandId.ENQUIRE_LINK:
                self._probe_outstanding = False
            elif event.pending.command_id == CommandId.UNBIND:
                events.append(self._close("unbind_timeout"))
                return events
        if self.state is State.CLOSED or self._last_received is None:
            return events
        idle = now - self._last_received
        if idle >= 2 * self.enquire_link_interval:
            events.append(self._close("dead_peer"))
        elif idle >= self.enquire_link_interval and not self._probe_outstanding and (
            self.state.bound or self.state is State.UNBINDING
        ):
            self._probe_outstanding = True
            self.send_request(EnquireLink(), now)
        return events

    def next_deadline(self) -> float | None:
        """When ``tick`` next has something to do."""
        deadlines = [d for d in (self.window.next_deadline(),) if d is not None]
        if self._last_received is not None and self.state is not State.CLOSED:
            if self._probe_outstanding:
                deadlines.append(self._last_received + 2 * self.enquire_link_interval)
            else:
                deadlines.append(self._last_received + self.enquire_link_interval)
        return min(deadlines) if deadlines else None

    def _close(self, reason: str) -> Closed:
        self.state = State.CLOSED
        return Closed(reason, self.window.drain())

    def connection_lost(self) -> Closed:
        """The transport went away; what was outstanding is abandoned."""
        return self._close("connection_lost")
