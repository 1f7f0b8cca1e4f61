"""An operator (MNO): its binds, its shared token bucket and its queue of parts.

Each operator keeps its configured number of binds up (``BindWorker``), all of
them drawing parts from one queue and tokens from one bucket, so the operator's
TPS is never exceeded whichever bind sends. What a response, an expiry or a
deliver_sm means for a message is the dispatcher's business (``OperatorEvents``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Container
from typing import TYPE_CHECKING, Any, Protocol

from smppd.link.bind import BindWorker
from smppd.link.dialer import Dialer, NetworkDialer
from smppd.link.gate import Gate
from smppd.link.parts import OutboundPart, PartQueue
from smppd.protocol.pdu import DeliverSm, Pdu
from throttling import AdaptiveRate, Sleep, TokenBucket

if TYPE_CHECKING:
    from smppd.config import OperatorConfig
    from smppd.link.connection import SmppConnection
    from smppd.link.spill import SpillFile

log = logging.getLogger("smppd.operator")


class OperatorEvents(Protocol):
    """What the dispatcher does with what comes back from the operator."""

    def submit_answered(self, op: Operator, part: OutboundPart, pdu: Pdu) -> None: ...

    def submit_unknown(self, op: Operator, part: OutboundPart, reason: str) -> None: ...

    def deliver_received(self, op: Operator, conn: SmppConnection, pdu: DeliverSm) -> None: ...

    def bind_changed(self, op: Operator) -> None: ...


class Operator:
    def __init__(
        self,
        config: OperatorConfig,
        events: OperatorEvents,
        *,
        password: Callable[[], str | None],
        limiter: Any = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        dialer: Dialer | None = None,
    ) -> None:
        self.config = config
        self._dialer = dialer  # None: TCP or TLS as the (current) config says
        self.id: str = config.id
        self.events = events
        self.password = password
        self.queue = PartQueue()
        # The margin (tps_margin) keeps jitter between our write and the SMSC's clock
        # from bunching one send too many into one of its one-second windows.
        self.bucket = limiter if limiter is not None else TokenBucket(
            config.tps, headroom=config.tps_margin, clock=clock, sleep=sleep)
        self.limiter = AdaptiveRate(self.bucket, clock=clock, sleep=sleep)
        self.window = config.window
        # Sending stops while either gate is shut; binds stay up, receipts keep flowing.
        self.pause_gate = Gate()  # an operator's pause (control API, smppctl)
        # Not a pause an operator sees: the dispatcher holds sending back while too
        # many submits wait to be recorded (the store is behind).
        self.hold_gate = Gate()
        self.binds = [BindWorker(self, index) for index in range(config.binds)]
        # Set by the daemon when credentials come from Vault.
        self.on_credentials_refused: Callable[[Operator, int], None] | None = None
        self.describe_credentials: Callable[[], str] | None = None
        # Set by the daemon in active/standby mode: the fencing check before a bind.
        self.bind_guard: Callable[[], Awaitable[bool]] | None = None
        self.counters: collections.Counter[str] = collections.Counter()
        # Active/standby only (``track_queued``): message id -> wall-clock time it was
        # first queued here, so the lease holder's sweep (smppd.cluster.leader.BacklogSweep)
        # knows which ACCEPTED messages it holds already. Pruned by that sweep.
        self.queued_ids: dict[str, float] | None = None
        self._wall: Callable[[], float] = time.time
        # Embedded mode (smppd.intake.dispatch): while ``spilled``, accepted messages do not
        # join the queue but wait for room, first the previous run's backlog in the
        # store, read from ``backlog_cursor`` (created_at, message_id) on up to
        # ``backlog_end`` (created_at; None once read), then the parts in ``spill_file``.
        self.spilled = False
        self.spill_file: SpillFile | None = None  # made at the first spill
        self.backlog_cursor: tuple[float, str] | None = None
        self.backlog_end: float | None = None
        # submit_sm -> submit_sm_resp seconds of the most recent responses (status, demo)
        self.latencies: collections.deque[float] = collections.deque(maxlen=10_000)

    @property
    def dialer(self) -> Dialer:
        """How the binds connect; read at each connect, so a reload's TLS settings
        apply at the next one (the SSLContext is the config's, built at load)."""
        return self._dialer or NetworkDialer.for_operator(self.config)

    # -- lifecycle --

    def start(self) -> None:
        for bind in self.binds:
            bind.start()

    async def stop(self, drain_timeout: float) -> None:
        """Stop taking parts, let windows drain (bounded), unbind every session."""
        await asyncio.gather(*(bind.stop(drain_timeout) for bind in self.binds))

    # -- sending --

    def enqueue(self, part: OutboundPart) -> None:
        self._remember(part)
        self.queue.put(part)

    def requeue(self, part: OutboundPart) -> None:
        self._remember(part)  # e.g. a retry due after the queue was dropped
        self.queue.put_front(part)

    def _remember(self, part: OutboundPart) -> None:
        queued = self.queued_ids
        if queued is not None and part.message_id not in queued:
            queued[part.message_id] = self._wall()

    # -- a backlog beyond the queue limit (embedded mode) --

    def spill(self, refill: Callable[[], None]) -> None:
        """From now on accepted messages wait outside the queue; ``refill`` is called
        whenever a part is taken and half of ``queue_limit`` or fewer are left."""
        self.spilled = True
        self.queue.low_water = self.config.queue_limit // 2
        self.queue.on_low = refill

    def unspill(self) -> None:
        """Nothing waits outside the queue any more: accepted messages join it again."""
        self.spilled = False
        self.queue.on_low = None

    # -- what is queued here (active/standby) --

    def track_queued(self, clock: Callable[[], float] = time.time) -> None:
        """Remember the ids of the messages queued here (see ``queued_ids``)."""
        self.queued_ids = {}
        self._wall = clock

    def holds(self, message_id: str) -> bool:
        """The message was queued here and not yet forgotten: queued, in flight, or
        finished since the last sweep."""
        return self.queued_ids is not None and message_id in self.queued_ids

    def forget_finished(self, still_accepted: Container[str], before: float) -> int:
        """Forget the messages first queued before ``before`` that the store no longer
        lists as ACCEPTED (it listed every ACCEPTED one created before then). A
        message never goes back to ACCEPTED, so none of them will be sent again."""
        if self.queued_ids is None:
            return 0
        done = [message_id for message_id, at in self.queued_ids.items()
                if at < before and message_id not in still_accepted]
        for message_id in done:
            del self.queued_ids[message_id]
        return len(done)

    def drop_queue(self) -> int:
        """Empty the queue: this replica no longer sends for the operator. The
        messages stay ACCEPTED in the store for the lease holder; returns how many."""
        dropped = {part.message_id for part in self.queue.drain()}
        if self.queued_ids is not None:
            for message_id in dropped:
                self.queued_ids.pop(message_id, None)
        return len(dropped)

    def set_tps(self, tps: float) -> None:
        self.limiter.set_limit(tps)

    def set_tps_margin(self, margin: float) -> None:
        self.bucket.set_headroom(margin)

    def set_window(self, window: int) -> None:
        self.window = window
        for bind in self.binds:
            bind.resize_window(window)

    async def rebind(self, timeout: float = 30.0) -> bool:
        """Make-before-break, one bind at a time: a bind drains its window, unbinds
        (so the quota is never exceeded) and binds again with the current
        credentials; the next one goes only once it is bound, so the others keep
        sending meanwhile. False if a bind did not come back within ``timeout``."""
        ok = True
        for bind in self.binds:
            await bind.rebind()
            ok = await bind.wait_bound(timeout) and ok
        return ok

    def credentials_refused(self, status: int) -> None:
        """A bind was refused for its credentials (hook for the Vault fall-back)."""
        if self.on_credentials_refused is not None:
            self.on_credentials_refused(self, status)

    def credentials_status(self) -> str:
        if self.describe_credentials is not None:
            return self.describe_credentials()
        return "no credentials configured"

    # -- what the binds report (smppd.link.bind.BindOwner), passed on to the events --

    def bind_changed(self) -> None:
        self.events.bind_changed(self)

    def submit_answered(self, part: OutboundPart, pdu: Pdu) -> None:
        self.events.submit_answered(self, part, pdu)

    def submit_unknown(self, part: OutboundPart, reason: str) -> None:
        self.events.submit_unknown(self, part, reason)

    def deliver_received(self, conn: SmppConnection, pdu: DeliverSm) -> None:
        self.events.deliver_received(self, conn, pdu)

    # -- state --

    def _latency_summary(self) -> dict[str, float] | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)

        def pick(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

        return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99)}

    @property
    def bound_count(self) -> int:
        return sum(1 for bind in self.binds if bind.bound)

    @property
    def healthy(self) -> bool:
        """A bind that can submit is bound (a receiver alone sends nothing)."""
        return any(bind.bound and bind.bind_type != "receiver" for bind in self.binds)

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.config.name,
            "state": "paused" if self.pause_gate.shut else ("bound" if self.healthy else "unbound"),
            "binds_configured": len(self.binds),
            "binds_up": self.bound_count,
            "tps_limit": self.limiter.limit,
            "tps_current": round(self.limiter.rate, 2),
            "window": self.window,
            "queued": len(self.queue),
            "spilled": len(self.spill_file) if self.spill_file is not None else 0,
            "in_flight": sum(bind.window_in_use for bind in self.binds),
            "submit_latency_ms": self._latency_summary(),
            "counters": dict(self.counters),
            "binds": [bind.status() for bind in self.binds],
        }
