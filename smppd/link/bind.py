"""One bind of an operator: connect, bind, send, keep alive, fail over and back.

Hosts are tried in order (primary first); a failed connect or bind moves to the
next host after an exponential back-off with full jitter. While bound to a backup,
the primary is probed with a bare TCP connect every ``primary_probe_interval`` and,
once it answers, this bind drains its window, unbinds and rebinds on the primary,
so the operator never holds more binds than configured.

A bind whose submit_sm_resp is overdue (no answer within ``response_timeout``) is
*stalled*: it writes nothing more into that connection, waits one more
``response_timeout`` for late answers, then closes it and binds again (on the next
host, as after a lost session). Submits written on a session that ended without
their answer are *in doubt*: each is sent again once, and ends UNKNOWN if it is in
doubt a second time (docs/reliability.md).

A failure (connect, bind refusal, lost session, stall) is kept as the bind's
``last_error`` with a short ``error_reason`` and the time it began, and logged at
WARNING once per change of reason; each retry is logged at INFO. A TLS failure
(the SMSC's certificate not trusted, a client certificate refused) is ``tls_failed``.

Each bind has its type (``OperatorConfig.bind_plan``): a receiver never takes parts
from the queue; it only answers what the SMSC delivers (receipts, MO).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from smppd.link.connection import (
    BaseHandler,
    ConnectionClosedError,
    ResponseTimeoutError,
    SmppConnection,
    SmppError,
)
from smppd.link.dialer import Dialer, Probe, tls_failure
from smppd.link.gate import Gate
from smppd.link.parts import OutboundPart, PartQueue
from smppd.protocol.constants import CommandId, Status, status_name
from smppd.protocol.pdu import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DataSm,
    DeliverSm,
    Pdu,
)
from smppd.protocol.session import (
    Closed,
    Event,
    ProtocolError,
    Role,
    Session,
    UnexpectedResponse,
)
from smppd.protocol.window import Pending
from throttling import AdaptiveRate, Backoff

if TYPE_CHECKING:
    from smppd.config import OperatorConfig

log = logging.getLogger("smppd.bind")

BIND_CLASSES: dict[str, type[BindTransmitter | BindReceiver | BindTransceiver]] = {
    "transmitter": BindTransmitter,
    "receiver": BindReceiver,
    "transceiver": BindTransceiver,
}
CONNECT_TIMEOUT = 10.0
# Bind refusals that another host of the same MNO would give too: retry the same host.
REFUSED_HERE = frozenset({Status.ESME_RALYBND, Status.ESME_RINVPASWD, Status.ESME_RBINDFAIL})
# How often a submit in doubt (written, its session ended unanswered) is written
# again before it ends UNKNOWN.
IN_DOUBT_RESENDS = 1


class NoCredentialsError(Exception):
    """The operator's credentials were never read (e.g. Vault down since start)."""


class NotLeaderError(Exception):
    """Active/standby: this replica no longer owns the operator's lease (smppd.cluster.leader)."""


class BindRefusedError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused: {status_name(status)}")
        self.status = status


class BindOwner(Protocol):
    """What a bind needs of its operator (``smppd.link.operator.Operator``): its settings,
    the queue and bucket it shares with the other binds, and where to report."""

    # its settings, read at each use (a reload changes them)
    @property
    def id(self) -> str: ...
    @property
    def config(self) -> OperatorConfig: ...
    @property
    def window(self) -> int: ...
    @property
    def dialer(self) -> Dialer: ...

    # what every bind of the operator shares: the parts, the bucket, pause and hold-back
    @property
    def queue(self) -> PartQueue: ...
    @property
    def limiter(self) -> AdaptiveRate: ...
    @property
    def pause_gate(self) -> Gate: ...
    @property
    def hold_gate(self) -> Gate: ...
    def requeue(self, part: OutboundPart) -> None: ...

    # binding: the password, the fencing check (active/standby), a refusal's report
    @property
    def bind_guard(self) -> Callable[[], Awaitable[bool]] | None: ...
    def password(self) -> str | None: ...
    def credentials_refused(self, status: int) -> None: ...
    def credentials_status(self) -> str: ...

    # what comes back, for the dispatcher (the operator passes it on to its events)
    def bind_changed(self) -> None: ...
    def submit_answered(self, part: OutboundPart, pdu: Pdu) -> None: ...
    def submit_unknown(self, part: OutboundPart, reason: str) -> None: ...
    def deliver_received(self, conn: SmppConnection, pdu: DeliverSm) -> None: ...


class BindWorker(BaseHandler):
    def __init__(self, operator: BindOwner, index: int) -> None:
        self.operator = operator
        self.index = index
        self.name = f"{operator.id}#{index}"
        cfg = operator.config
        self.backoff = Backoff(cfg.reconnect_min, cfg.reconnect_max)
        self.conn: SmppConnection | None = None
        self.host_index = 0
        self.state = "idle"
        self.last_error: str | None = None
        self.error_reason: str | None = None  # short and bounded: a metric label
        self.error_since: float | None = None  # wall clock, when this reason began
        self.attempts = 0
        self.sent = 0  # submit_sm written; the daemon exports it as a metric, off this path
        self.stalls = 0  # sessions given up for an overdue submit_sm_resp (exported too)
        # This session's expired submits, kept for a late answer until it ends.
        self._overdue: dict[int, Pending] = {}
        self._stall = asyncio.Event()  # set once this session is stalled
        self._protocol_error: str | None = None  # the last undecodable PDU's error
        self._tls_error: str | None = None  # the TLS alert or error that ended the session
        # The reason last logged at WARNING, and since when (monotonic) the current
        # session is bound: a reason is warned again only after a stable session.
        self._warned: str | None = None
        self._bound_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._retire = asyncio.Event()  # set to leave the current session (failback, rebind)
        self._failback = False
        self._bound_event = asyncio.Event()  # set while a session is bound

    # -- public --

    @property
    def bound(self) -> bool:
        return (self.conn is not None and self.conn.is_open and self.conn.state.bound
                and not self._stall.is_set())

    @property
    def window_in_use(self) -> int:
        return len(self.conn.session.window) if self.conn is not None else 0

    @property
    def bind_type(self) -> str:
        plan = self.operator.config.bind_plan
        # A bind past the plan (being removed by a reload) keeps the last type.
        return plan[min(self.index, len(plan) - 1)]

    @property
    def host(self) -> str:
        host, port = self.operator.config.hosts[self.host_index]
        return f"{host}:{port}"

    def start(self) -> None:
        self._stopping = False  # a standby replica starts its binds again after a stop
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"bind {self.name}")

    async def stop(self, drain_timeout: float) -> None:
        self._stopping = True
        self._retire.set()
        if self._task is None:
            return
        if self.state in ("connecting", "binding"):
            # Nothing sent yet to drain: do not wait for a connect or a bind_resp
            # that may take a response timeout (or never come).
            self._task.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), drain_timeout + 5.0)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not self._task.cancelled() or (current is not None and current.cancelling()):
                raise  # this stop was cancelled itself
            # The bind's task, cancelled above while connecting or binding: it is stopped.

    async def rebind(self) -> None:
        """Leave the current session gracefully (drain, unbind) and bind again."""
        self._bound_event.clear()
        self._retire.set()

    async def wait_bound(self, timeout: float) -> bool:
        """Until a session is bound (False if ``timeout`` passes first)."""
        try:
            await asyncio.wait_for(self._bound_event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def resize_window(self, size: int) -> None:
        if self.conn is not None:
            self.conn.session.window.resize(size)

    def status(self) -> dict[str, Any]:
        return {
            "bind": self.name,
            "type": self.bind_type,
            "state": self.state,
            "host": self.host,
            "on_primary": self.host_index == 0,
            "window_in_use": self.window_in_use,
            "attempts": self.attempts,
            "stalls": self.stalls,
            "last_error": self.last_error,
            "last_error_reason": self.error_reason,
            "last_error_since": self.error_since,
        }

    # -- the bind loop --

    async def _run(self) -> None:
        while not self._stopping:
            self._retire.clear()
            self._failback = False
            try:
                outcome = await self._session()
            except (OSError, TimeoutError, ConnectionClosedError, ResponseTimeoutError) as exc:
                self._failed(*self._describe(exc))
                outcome = "failed"
            except NoCredentialsError as exc:
                self._failed("no_credentials", str(exc))
                self.state = "no_credentials"
                outcome = "refused"
            except NotLeaderError as exc:
                self.last_error = str(exc)  # not a failure: another replica sends
                self.state = "standby"
                outcome = "refused"
            except BindRefusedError as exc:
                self._failed(status_name(exc.status), str(exc))
                if exc.status in (Status.ESME_RINVPASWD, Status.ESME_RBINDFAIL):
                    # New credentials refused: the operator falls back to the previous ones.
                    self.operator.credentials_refused(exc.status)
                # ALYBND: the quota is full on the SMSC side; same host, just wait.
                outcome = "refused" if exc.status in REFUSED_HERE else "failed"
            if self._stopping:
                break
            if outcome == "retired":
                self.backoff.reset()
                continue  # failback or rebind: bind again at once
            if outcome in ("lost", "stalled"):
                self.backoff.reset()  # we were bound: start the back-off from its base
            if outcome in ("lost", "stalled", "failed"):
                self._next_host()
            self.state = "backoff"
            self.operator.bind_changed()
            delay = self.backoff.next_delay()
            log.info("bind retry", extra={"event": "bind_retry", "bind": self.name,
                                          "operator": self.operator.id, "delay": round(delay, 3),
                                          "reason": self.error_reason, "error": self.last_error})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wait_stopping(), delay)
        self.state = "stopped"
        self.operator.bind_changed()

    async def _wait_stopping(self) -> None:
        while not self._stopping:
            await self._retire.wait()
            self._retire.clear()

    def _next_host(self) -> None:
        self.host_index = (self.host_index + 1) % len(self.operator.config.hosts)

    # -- failures: what the API, /readyz, the metrics and the log show --

    def _failed(self, reason: str, error: str) -> None:
        """Record why the bind is not working. WARNING when the reason changes; a
        session that flaps (bound briefly, lost for the same reason) is not a change,
        one that stayed bound for ``reconnect_max`` is."""
        bound_since, self._bound_since = self._bound_since, None
        if (bound_since is not None
                and time.monotonic() - bound_since >= self.operator.config.reconnect_max):
            self._warned = None
        if reason != self._warned:
            self._warned = reason
            log.warning("bind failing", extra={
                "event": "bind_failing", "bind": self.name, "operator": self.operator.id,
                "host": self.host, "reason": reason, "error": error})
        if reason != self.error_reason:
            self.error_reason = reason
            self.error_since = time.time()
            self.operator.bind_changed()
        self.last_error = error

    def _recovered(self) -> None:
        self._bound_since = time.monotonic()
        if self.error_reason is not None:
            log.info("bind recovered", extra={"event": "bind_recovered", "bind": self.name,
                                              "operator": self.operator.id,
                                              "reason": self.error_reason})
        self.last_error = self.error_reason = self.error_since = None

    def _describe(self, exc: BaseException) -> tuple[str, str]:
        """(reason, error) for a failed connect or bind."""
        text = f"{type(exc).__name__}: {exc}"
        tls = tls_failure(exc) or (self._tls_error if isinstance(exc, OSError) else None)
        if tls is not None:
            return "tls_failed", f"TLS with {self.host} failed: {tls}"
        if isinstance(exc, ConnectionClosedError):
            closed = str(exc)  # the session's close reason, e.g. "framing_error"
            reason = closed if closed.isidentifier() else "connection_closed"
            if reason == "framing_error" and self._protocol_error:
                text += f" ({self._protocol_error})"
            return reason, text
        if isinstance(exc, TimeoutError | ResponseTimeoutError):
            return "timeout", text
        return "connect_failed", text

    def _session_lost(self, closed: Closed) -> None:
        if self._tls_error is not None:
            self._failed("tls_failed", f"TLS with {self.host} failed: {self._tls_error}")
            return
        why = f"connection closed: {closed.reason}"
        if closed.reason == "framing_error" and self._protocol_error:
            why += f" ({self._protocol_error})"
        self._failed(closed.reason, why)

    async def _session(self) -> str:
        """One connection from connect to close: "lost" if the peer or the network
        ended it, "stalled" if we gave it up for an overdue answer, "retired" if we
        left on purpose."""
        cfg = self.operator.config
        host, port = cfg.hosts[self.host_index]
        loop = asyncio.get_running_loop()
        self.state = "connecting"
        self.attempts += 1
        self._stall.clear()
        self._protocol_error = None
        self._tls_error = None
        session = Session(
            Role.ESME,
            window_size=self.operator.window,
            response_timeout=cfg.response_timeout,
            enquire_link_interval=cfg.enquire_link_interval,
        )
        conn = await asyncio.wait_for(
            self.operator.dialer.dial(host, port, lambda: SmppConnection(session, self, loop)),
            CONNECT_TIMEOUT,
        )
        if self._stopping:  # stop() cancelled the connect, and wait_for let it finish
            conn.abort()
            return "retired"
        self.conn = conn
        # A paced submit must leave when its token is granted: none may wait behind
        # unwritten bytes and then go out in a burst (see _send_loop).
        conn.pause_on_any_backlog()
        outcome = "failed"
        try:
            await self._bind(conn)
            self.state = "bound"
            self._recovered()
            self._bound_event.set()
            self.operator.bind_changed()
            log.info("bound", extra={"event": "bound", "bind": self.name,
                                     "operator": self.operator.id, "host": self.host})
            outcome = await self._serve(conn)
            return outcome
        finally:
            self._bound_event.clear()
            if conn.is_open:
                conn.abort()
            # What this session wrote and never had answered (its close event may
            # come only after the abort above): resent once, or UNKNOWN.
            self._in_doubt([*self._overdue.values(), *conn.session.window.drain()], outcome)
            self._overdue.clear()
            self.conn = None
            self.operator.bind_changed()

    async def _bind(self, conn: SmppConnection) -> None:
        cfg = self.operator.config
        password = self.operator.password()
        if password is None:
            raise NoCredentialsError(self.operator.credentials_status())
        bind_cls = BIND_CLASSES[self.bind_type]
        guard = self.operator.bind_guard
        if guard is not None and not await guard():  # fencing: the lease is still ours
            raise NotLeaderError("not the leader of this operator's binds")
        self.state = "binding"
        try:
            await asyncio.wait_for(
                conn.request(bind_cls(system_id=cfg.system_id, password=password,
                                      system_type=cfg.system_type)),
                cfg.response_timeout,
            )
        except SmppError as exc:
            raise BindRefusedError(exc.command_status) from None

    async def _serve(self, conn: SmppConnection) -> str:
        """Send while bound, until the connection ends or the bind is retired."""
        sender = asyncio.ensure_future(self._send_loop(conn)) if self._sends() else None
        prober = (asyncio.ensure_future(self._probe_primary())
                  if self.host_index != 0 else None)
        retire = asyncio.ensure_future(self._retire.wait())
        stall = asyncio.ensure_future(self._stall.wait())
        try:
            await asyncio.wait(
                [f for f in (conn.closed, retire, stall, sender) if f is not None],
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for task in (sender, prober, retire, stall):
                if task is not None:
                    task.cancel()
        if self._stall.is_set():
            await self._wait_out_stall(conn)
            return "stalled"
        if not conn.is_open:
            if conn.closed.done():
                self._session_lost(conn.closed.result())
            return "lost"
        # Leaving on purpose: let the window drain (bounded), then unbind.
        self.state = "unbinding"
        await self._drain(conn, self.operator.config.response_timeout)
        await conn.unbind()
        if self._failback:
            self.host_index = 0
        return "retired"

    async def _wait_out_stall(self, conn: SmppConnection) -> None:
        """Stalled: write nothing more; give the overdue answers one more response
        timeout to come (the SMSC may only be slow), then the session is closed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(conn.closed),
                                   self.operator.config.response_timeout)

    def _in_doubt(self, pendings: Iterable[Pending], why: str) -> None:
        """Submits written on a session that ended before their answer: the SMSC may
        or may not have them. Each is sent again once (at the front of the queue, in
        the order first sent); in doubt a second time, it ends UNKNOWN."""
        op = self.operator
        parts: list[OutboundPart] = [p.context for p in pendings
                                     if p.command_id == CommandId.SUBMIT_SM
                                     and p.context is not None]
        for part in reversed(parts):
            if part.in_doubt < IN_DOUBT_RESENDS:
                part.in_doubt += 1
                op.requeue(part)
            else:
                op.submit_unknown(part, (
                    f"no response to submit_sm on {part.in_doubt + 1} sessions "
                    f"(the last one: {why})"))

    def _sends(self) -> bool:
        return self.bind_type != "receiver"

    async def _drain(self, conn: SmppConnection, limit: float) -> None:
        with contextlib.suppress(TimeoutError, ConnectionClosedError):
            await asyncio.wait_for(conn.wait_window_empty(), limit)

    async def _send_loop(self, conn: SmppConnection) -> None:
        op = self.operator
        queue, limiter, window = op.queue, op.limiter, conn.session.window
        pause, hold = op.pause_gate, op.hold_gate
        stalled = self._stall.is_set
        while conn.is_open:
            await conn.wait_for_window()
            if stalled():
                return  # nothing new into a connection with an overdue answer
            if pause.shut:
                await pause.wait_open()
            if hold.shut:
                await hold.wait_open()
            part = await queue.get()
            try:
                await conn.drained()  # nothing of ours unwritten: this one leaves now
                await limiter.acquire()
                if not conn.is_open or not conn.state.bound or stalled():
                    op.requeue(part)
                    return
                self._send(conn, part)
            except BaseException:
                op.requeue(part)
                raise
            # Then as many more as the window, the queue and the bucket allow, without
            # suspending: a burst of responses refills the window in one go. A token is
            # only taken once a part is sure to be there.
            while (window.free and queue and not pause.shut and not hold.shut
                   and not stalled() and limiter.try_acquire() == 0.0):
                more = queue.get_nowait()
                assert more is not None
                try:
                    self._send(conn, more)
                except BaseException:
                    op.requeue(more)
                    raise
            # On the wire at the moment the tokens were granted, not at the end of the
            # loop iteration: the SMSC counts the TPS as they arrive (issue 13.5).
            conn.flush()

    def _send(self, conn: SmppConnection, part: OutboundPart) -> None:
        part.sent_at = time.perf_counter()  # uvloop's loop.time() ticks in ms
        part.bind = self.name
        conn.send_encoded(part.frame, part)
        self.sent += 1

    async def _probe_primary(self) -> None:
        """While on a backup, look for the primary and fail back once it answers (with
        TLS: once its handshake succeeds)."""
        cfg = self.operator.config
        host, port = cfg.hosts[0]
        while True:
            await asyncio.sleep(cfg.primary_probe_interval)
            try:
                probe = await asyncio.wait_for(
                    self.operator.dialer.dial(host, port, Probe), CONNECT_TIMEOUT)
            except (OSError, TimeoutError):
                continue
            probe.close()
            log.info("primary reachable, failing back",
                     extra={"event": "failback", "bind": self.name, "operator": self.operator.id})
            self._failback = True
            self._retire.set()
            return

    # -- ConnectionHandler --

    def request_received(self, conn: SmppConnection, pdu: Pdu) -> None:
        if isinstance(pdu, DeliverSm):
            self.operator.deliver_received(conn, pdu)
        elif isinstance(pdu, DataSm):
            conn.respond(pdu, pdu.response(Status.ESME_RX_P_APPN))
        else:
            super().request_received(conn, pdu)

    def response_received(self, conn: SmppConnection, pending: Pending, pdu: Pdu) -> None:
        if pending.command_id == CommandId.SUBMIT_SM:
            self.operator.submit_answered(pending.context, pdu)

    def request_expired(self, conn: SmppConnection, pending: Pending) -> None:
        if pending.command_id != CommandId.SUBMIT_SM or conn is not self.conn:
            return
        # Overdue: in doubt, settled when the session ends (a late answer still counts).
        self._overdue[pending.sequence_number] = pending
        if self.state != "bound" or self._stall.is_set():
            return  # already stalled, or leaving on purpose (draining)
        self._stall.set()
        self.stalls += 1
        self.state = "stalled"
        in_doubt = len(self._overdue) + len(conn.session.window)
        self._failed("stalled", f"stalled: no submit_sm_resp within "
                                f"{self.operator.config.response_timeout:g} s; "
                                f"{in_doubt} submits in doubt")
        self.operator.bind_changed()

    def session_event(self, conn: SmppConnection, event: Event) -> None:
        if type(event) is UnexpectedResponse:
            # The answer to a submit already overdue: the SMSC has it after all.
            pending = self._overdue.pop(event.pdu.sequence_number, None)
            if pending is not None and conn is self.conn:
                self.response_received(conn, pending, event.pdu)
        elif type(event) is ProtocolError:
            self._protocol_error = f"{type(event.error).__name__}: {event.error}"

    def connection_closed(self, conn: SmppConnection, closed: Closed) -> None:
        if conn is self.conn and conn.lost_error is not None:
            self._tls_error = tls_failure(conn.lost_error)
        # Sent but never answered: in doubt (see _in_doubt). The bind's own session
        # end settles the overdue ones too (_session).
        self._in_doubt(closed.abandoned, closed.reason)
        if closed.reason != "unbound" and self.state == "bound":
            # INFO: the WARNING for a lost session is bind_failing's, once per reason.
            log.info("session closed", extra={"event": "session_closed", "bind": self.name,
                                              "operator": self.operator.id,
                                              "reason": closed.reason})
