"""The sans-IO session: bytes and fake ``now`` values in, events and bytes out."""

from __future__ import annotations

import pytest

from smppd.protocol import pdu as p
from smppd.protocol.constants import MAX_SEQUENCE, CommandId, Status
from smppd.protocol.errors import (
    InvalidCommandLengthError,
    MalformedPduError,
    PduEncodeError,
    UnknownCommandError,
)
from smppd.protocol.session import (
    BindRefused,
    Bound,
    Closed,
    Event,
    NotBoundError,
    ProtocolError,
    RawRequestReceived,
    RequestExpired,
    RequestReceived,
    ResponseReceived,
    Role,
    Session,
    State,
    UnexpectedResponse,
)
from smppd.protocol.window import Pending, WindowFullError

E = p.encode


def esme(**kwargs: float | int) -> Session:
    return Session(Role.ESME, **kwargs)  # type: ignore[arg-type]


def bound_esme(now: float = 0.0, bind: type[p.Bind] = p.BindTransceiver,
               **kwargs: float | int) -> Session:
    session = esme(**kwargs)
    session.bind(bind(system_id="esme", password="pw"), now)  # type: ignore[arg-type]
    session.receive_data(E(bind(sequence_number=1).response(system_id="SMSC")), now)
    session.data_to_send()
    return session


def state(session: Session) -> State:
    """The current state, read through a call so mypy does not keep an earlier narrowing."""
    return session.state


def closing(events: list[Event], reason: str, *before: type[Event]) -> Closed:
    """Check that ``events`` are ``before`` (by type), then a Closed for ``reason``."""
    assert [type(e) for e in events] == [*before, Closed], events
    closed = events[-1]
    assert isinstance(closed, Closed) and closed.reason == reason, closed
    return closed


def submit(**fields: object) -> p.SubmitSm:
    return p.SubmitSm(destination_addr="93700123456", short_message=b"hi", **fields)  # type: ignore[arg-type]


# --- binding ------------------------------------------------------------------------


def test_esme_bind_transceiver() -> None:
    session = esme()
    bind = p.BindTransceiver(system_id="esme", password="pw")
    assert session.bind(bind, 0.0) == 1
    assert session.state == State.BINDING
    assert session.data_to_send() == E(p.BindTransceiver(sequence_number=1, system_id="esme",
                                                         password="pw"))
    assert session.data_to_send() == b""
    events = session.receive_data(E(p.BindTransceiverResp(sequence_number=1, system_id="SMSC")),
                                  0.5)
    pending = Pending(1, CommandId.BIND_TRANSCEIVER, 0.0, 30.0, None)
    assert events == [
        ResponseReceived(pending, p.BindTransceiverResp(sequence_number=1, system_id="SMSC")),
        Bound(State.BOUND_TRX, "SMSC"),
    ]
    assert state(session) is State.BOUND_TRX and session.state.bound
    assert session.system_id == "SMSC"


@pytest.mark.parametrize(("bind", "state"), [(p.BindTransmitter, State.BOUND_TX),
                                             (p.BindReceiver, State.BOUND_RX)])
def test_esme_bind_other_modes(bind: type[p.Bind], state: State) -> None:
    assert bound_esme(bind=bind).state is state


def test_bind_refused() -> None:
    session = esme()
    session.bind(p.BindTransmitter(system_id="esme", password="bad"), 0.0)
    # error responses may come without a body
    wire = bytes.fromhex("00000010 80000002 0000000e 00000001".replace(" ", ""))
    events = session.receive_data(wire, 0.1)
    assert [type(e) for e in events] == [ResponseReceived, BindRefused]
    assert events[1] == BindRefused(Status.ESME_RINVPASWD)
    assert session.state is State.OPEN
    assert len(session.window) == 0


def test_bind_answered_by_generic_nack_is_refused() -> None:
    session = esme()
    session.bind(p.BindTransceiver(), 0.0)
    events = session.receive_data(
        E(p.GenericNack(sequence_number=1, command_status=Status.ESME_RINVCMDID)), 0.1)
    assert events[-1] == BindRefused(Status.ESME_RINVCMDID)
    assert session.state is State.OPEN


def test_smsc_accepts_a_bind() -> None:
    smsc = Session(Role.SMSC)
    bind = p.BindTransceiver(sequence_number=5, system_id="esme", password="pw")
    events = smsc.receive_data(E(bind), 0.0)
    assert events == [RequestReceived(bind)]
    assert smsc.state == State.OPEN  # policy decides; nothing changes before the answer
    smsc.respond(bind, bind.response(system_id="SMSC"))
    assert smsc.data_to_send() == E(p.BindTransceiverResp(sequence_number=5, system_id="SMSC"))
    assert state(smsc) is State.BOUND_TRX
    assert smsc.system_id == "esme"


def test_smsc_refuses_a_bind() -> None:
    smsc = Session(Role.SMSC)
    bind = p.BindTransmitter(sequence_number=1, system_id="esme", password="bad")
    smsc.receive_data(E(bind), 0.0)
    smsc.respond(bind, bind.response(Status.ESME_RINVPASWD))
    assert smsc.state is State.OPEN
    assert smsc.data_to_send() == E(p.BindTransmitterResp(sequence_number=1,
                                                          command_status=Status.ESME_RINVPASWD))


def test_smsc_rejects_submit_before_bind() -> None:
    smsc = Session(Role.SMSC)
    events = smsc.receive_data(E(submit(sequence_number=9)), 0.0)
    assert events == []
    assert smsc.data_to_send() == E(p.SubmitSmResp(sequence_number=9,
                                                   command_status=Status.ESME_RINVBNDSTS))


def test_smsc_then_receives_submit_and_sends_deliver() -> None:
    smsc = Session(Role.SMSC)
    bind = p.BindTransceiver(sequence_number=1)
    smsc.receive_data(E(bind), 0.0)
    smsc.respond(bind, bind.response())
    msg = submit(sequence_number=2)
    assert smsc.receive_data(E(msg), 0.0) == [RequestReceived(msg)]
    assert smsc.send_request(p.DeliverSm(short_message=b"mo"), 0.0) == 1
    with pytest.raises(NotBoundError):
        smsc.send_request(submit(), 0.0)  # an SMSC does not submit


# --- sequence numbers -----------------------------------------------------------------


def test_sequence_numbers_start_at_one_and_increase() -> None:
    session = bound_esme()
    assert [session.send_request(submit(), 0.0) for _ in range(3)] == [2, 3, 4]


def test_sequence_numbers_wrap_to_one_skipping_outstanding() -> None:
    session = bound_esme(window_size=10)
    session.send_request(submit(), 0.0)  # 2 stays outstanding
    session._sequence = MAX_SEQUENCE - 2  # fast-forward: 2**31 sends would take too long
    assert session.send_request(submit(), 0.0) == MAX_SEQUENCE - 1
    assert session.send_request(submit(), 0.0) == MAX_SEQUENCE
    assert session.next_sequence() == 1
    assert session.send_request(submit(), 0.0) == 3  # 2 is still outstanding


# --- the window through the session -------------------------------------------------


def test_window_full() -> None:
    session = bound_esme(window_size=2)
    session.send_request(submit(), 0.0)
    session.send_request(submit(), 0.0)
    with pytest.raises(WindowFullError):
        session.send_request(submit(), 0.0)
    probe = session.send_request(p.EnquireLink(), 0.0)  # housekeeping still gets through
    session.receive_data(E(p.SubmitSmResp(sequence_number=2, message_id="a")), 0.1)
    with pytest.raises(WindowFullError):  # the probe holds a slot until answered
        session.send_request(submit(), 0.1)
    session.receive_data(E(p.EnquireLinkResp(sequence_number=probe)), 0.2)
    session.send_request(submit(), 0.2)
    assert session.window.free == 0


def test_response_expiry() -> None:
    session = bound_esme(response_timeout=5.0, enquire_link_interval=100.0)
    session.send_request(submit(), 10.0, context="msg-1")
    assert session.next_deadline() == 15.0
    assert session.tick(14.9) == []
    events = session.tick(15.0)
    assert events == [RequestExpired(Pending(2, CommandId.SUBMIT_SM, 10.0, 15.0, "msg-1"))]
    # the late answer is then an unexpected response
    late = p.SubmitSmResp(sequence_number=2, message_id="x")
    assert session.receive_data(E(late), 16.0) == [UnexpectedResponse(late)]


def test_response_carries_context() -> None:
    session = bound_esme()
    session.send_request(submit(), 1.0, context={"id": "m1"})
    resp = p.SubmitSmResp(sequence_number=2, message_id="abc")
    (event,) = session.receive_data(E(resp), 2.0)
    assert isinstance(event, ResponseReceived)
    assert event.pending.context == {"id": "m1"} and event.pdu == resp


def test_unexpected_response() -> None:
    session = bound_esme()
    nack = p.GenericNack(sequence_number=99, command_status=Status.ESME_RSYSERR)
    assert session.receive_data(E(nack), 0.0) == [UnexpectedResponse(nack)]
    assert session.data_to_send() == b""  # responses are never answered


# --- keep-alive ----------------------------------------------------------------------


def test_enquire_link_after_idle_interval() -> None:
    session = bound_esme(now=0.0, enquire_link_interval=30.0, response_timeout=100.0)
    assert session.next_deadline() == 30.0
    assert session.tick(29.9) == []
    assert session.data_to_send() == b""
    assert session.tick(30.0) == []
    assert session.data_to_send() == E(p.EnquireLink(sequence_number=2))
    assert session.tick(45.0) == []  # one probe at a time
    assert session.data_to_send() == b""
    session.receive_data(E(p.EnquireLinkResp(sequence_number=2)), 46.0)
    assert session.next_deadline() == 76.0


def test_traffic_postpones_the_probe() -> None:
    session = bound_esme(now=0.0, enquire_link_interval=30.0)
    session.receive_data(E(p.EnquireLink(sequence_number=7)), 20.0)
    session.data_to_send()
    session.tick(30.0)
    assert session.data_to_send() == b""
    assert session.next_deadline() == 50.0


def test_dead_peer_after_two_intervals() -> None:
    session = bound_esme(now=0.0, enquire_link_interval=30.0, response_timeout=100.0)
    session.send_request(submit(), 5.0)
    session.tick(30.0)  # probe sent, never answered
    assert session.next_deadline() == 60.0
    closed = closing(session.tick(60.0), "dead_peer")
    assert [p.command_id for p in closed.abandoned] == [CommandId.SUBMIT_SM,
                                                        CommandId.ENQUIRE_LINK]
    assert session.state is State.CLOSED


def test_dead_peer_when_the_probe_expires_first() -> None:
    session = bound_esme(now=0.0, enquire_link_interval=30.0, response_timeout=10.0)
    session.tick(30.0)
    closing(session.tick(60.0), "dead_peer", RequestExpired)


# --- answers the protocol obliges -------------------------------------------------------


def test_automatic_enquire_link_resp() -> None:
    session = bound_esme()
    assert session.receive_data(E(p.EnquireLink(sequence_number=42)), 1.0) == []
    assert session.data_to_send() == E(p.EnquireLinkResp(sequence_number=42))


def test_enquire_link_answered_before_bind() -> None:
    smsc = Session(Role.SMSC)
    assert smsc.receive_data(E(p.EnquireLink(sequence_number=1)), 0.0) == []
    assert smsc.data_to_send() == E(p.EnquireLinkResp(sequence_number=1))


def test_peer_unbind() -> None:
    session = bound_esme()
    session.send_request(submit(), 0.0)
    session.data_to_send()
    events = session.receive_data(E(p.Unbind(sequence_number=8)) + E(p.EnquireLink()), 1.0)
    assert [p.sequence_number for p in closing(events, "peer_unbound").abandoned] == [2]
    assert session.data_to_send() == E(p.UnbindResp(sequence_number=8))
    assert session.state is State.CLOSED


def test_generic_nack_for_undecodable_request() -> None:
    session = bound_esme()
    bad = bytes.fromhex("00000013 00000005 00000000 0000002a 616263".replace(" ", ""))
    events = session.receive_data(bad + E(p.EnquireLink(sequence_number=43)), 1.0)
    assert len(events) == 1 and isinstance(events[0], ProtocolError)
    assert isinstance(events[0].error, MalformedPduError)
    assert session.data_to_send() == (p.generic_nack(42, Status.ESME_RINVCMDLEN)
                                      + E(p.EnquireLinkResp(sequence_number=43)))


def test_generic_nack_for_unknown_command() -> None:
    session = bound_esme()
    unknown = bytes.fromhex("00000010 00000099 00000000 00000007".replace(" ", ""))
    events = session.receive_data(unknown, 1.0)
    assert len(events) == 1 and isinstance(events[0], ProtocolError)
    assert isinstance(events[0].error, UnknownCommandError)
    assert session.data_to_send() == p.generic_nack(7, Status.ESME_RINVCMDID)
    assert session.state is State.BOUND_TRX


def test_undecodable_response_is_not_answered() -> None:
    session = bound_esme()
    session.send_request(submit(), 0.0)
    session.data_to_send()
    bad = bytes.fromhex("00000013 80000004 00000000 00000002 616263".replace(" ", ""))
    events = session.receive_data(bad, 1.0)
    assert [type(e) for e in events] == [ProtocolError]
    assert session.data_to_send() == b""


def test_invalid_command_length_closes() -> None:
    session = bound_esme()
    session.send_request(submit(), 0.0)
    session.data_to_send()
    events = session.receive_data(bytes.fromhex("00000004 00000015"), 1.0)
    closed = closing(events, "framing_error", ProtocolError)
    assert isinstance(events[0], ProtocolError)
    assert isinstance(events[0].error, InvalidCommandLengthError)
    assert [p.sequence_number for p in closed.abandoned] == [2]
    assert session.data_to_send() == p.generic_nack(0, Status.ESME_RINVCMDLEN)


@pytest.mark.parametrize(
    ("bind", "request_pdu"),
    [
        (p.BindTransmitter, p.DeliverSm(sequence_number=5)),  # transmitter gets no deliver_sm
        (p.BindTransceiver, submit(sequence_number=5)),  # an SMSC does not submit to us
        (p.BindTransceiver, p.BindTransceiver(sequence_number=5)),  # nor bind to us
    ],
)
def test_wrong_state_requests(bind: type[p.Bind], request_pdu: p.Pdu) -> None:
    session = bound_esme(bind=bind)
    assert session.receive_data(E(request_pdu), 1.0) == []
    assert session.data_to_send() == E(request_pdu.response(Status.ESME_RINVBNDSTS))


def test_wrong_state_request_without_response_class_gets_generic_nack() -> None:
    session = bound_esme()
    assert session.receive_data(E(p.Outbind(sequence_number=4)), 1.0) == []
    assert session.data_to_send() == p.generic_nack(4, Status.ESME_RINVBNDSTS)


def test_cannot_send_before_bind() -> None:
    session = esme()
    with pytest.raises(NotBoundError) as info:
        session.send_request(submit(), 0.0)
    assert info.value.state is State.OPEN and info.value.command_id == CommandId.SUBMIT_SM
    with pytest.raises(NotBoundError):
        bound_esme(bind=p.BindReceiver).send_request(submit(), 0.0)


# --- closing -------------------------------------------------------------------------


def test_unbind_then_unbind_resp() -> None:
    session = bound_esme()
    assert session.unbind(5.0) == 2
    assert session.state == State.UNBINDING
    assert session.data_to_send() == E(p.Unbind(sequence_number=2))
    with pytest.raises(NotBoundError):
        session.send_request(submit(), 5.0)
    events = session.receive_data(E(p.UnbindResp(sequence_number=2)), 6.0)
    assert [type(e) for e in events] == [ResponseReceived, Closed]
    assert events[1] == Closed("unbound", [])
    assert state(session) is State.CLOSED


def test_unbind_timeout() -> None:
    session = bound_esme(response_timeout=5.0, enquire_link_interval=100.0)
    session.unbind(10.0)
    closing(session.tick(15.0), "unbind_timeout", RequestExpired)


def test_connection_lost_abandons_pending() -> None:
    session = bound_esme()
    session.send_request(submit(), 0.0, context="m")
    closed = session.connection_lost()
    assert closed.reason == "connection_lost"
    assert [p.context for p in closed.abandoned] == ["m"]
    assert session.next_deadline() is None


# --- lazy requests ----------------------------------------------------------------------


def test_lazy_commands_arrive_undecoded_when_bound() -> None:
    session = bound_esme(lazy_commands=[CommandId.DELIVER_SM])  # type: ignore[arg-type]
    wire = E(p.DeliverSm(sequence_number=11, short_message=b"receipt"))
    events = session.receive_data(wire[:20], 1.0) + session.receive_data(wire[20:], 1.0)
    assert events == [RawRequestReceived(CommandId.DELIVER_SM, 11, wire)]
    session.respond(events[0], p.DeliverSmResp())  # type: ignore[arg-type]
    assert session.data_to_send() == E(p.DeliverSmResp(sequence_number=11))


def test_bad_enquire_link_interval() -> None:
    with pytest.raises(ValueError):
        Session(Role.ESME, enquire_link_interval=0)


def test_unencodable_request_leaves_no_trace() -> None:
    """A PDU that cannot be encoded must not hold a window slot that later 'expires'."""
    session = bound_esme(response_timeout=5.0, enquire_link_interval=100.0)
    with pytest.raises(PduEncodeError):
        session.send_request(submit(source_addr="x" * 30), 0.0)
    assert len(session.window) == 0
    assert session.data_to_send() == b""
    assert session.tick(10.0) == []
