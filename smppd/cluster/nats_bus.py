"""NATS JetStream: dispatch commands in, delivery receipts and MO messages out.

- Streams are created if missing: dispatch commands on ``smpp.operator.{operatorId}``
  (plus ``smpp.dispatch.invalid``), receipts on ``sms.dlr.inbound``, MO on
  ``sms.mo.inbound``; the receipt and MO streams dedupe on ``Nats-Msg-Id``.
- Durable pull consumers feed the dispatcher (``PullConsumer``). Active/active: one,
  ``{consumer}`` on ``{dispatch_subject}.*``, shared by every replica. Active/standby:
  each operator has its own, ``{consumer}-{operatorId}`` on its subject, run only by
  the replica holding the operator's lease; the shared one stays on every replica as
  the catch-all for what no operator consumer covers (an operator this config does
  not know, commands older than the operator's consumer) and acks the rest unread.
- A command is acked only once its message is durable in the store (accepted and
  stored for sending, or already known: a redelivery). An invalid command is
  terminated, with the reason published on ``smpp.dispatch.invalid``: never retried
  forever, never dropped silently. A store failure naks it for a later retry.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy, StreamConfig
from nats.js.errors import APIError, NotFoundError

from smppd.cluster.nats_publish import AckedPublisher
from smppd.intake.message import MessageError, Outbound
from smppd.seams import Commands

if TYPE_CHECKING:
    from smppd.config import NatsSection
    from smppd.link.operator import Operator

log = logging.getLogger("smppd.nats")

DISPATCH_SCHEMA = "smppd.dispatch.v1"
INVALID_SCHEMA = "smppd.dispatch.invalid.v1"
DEDUPE_WINDOW = 120.0  # seconds JetStream remembers a Nats-Msg-Id
FETCH_BATCH = 256
BATCHES_IN_FLIGHT = 4  # fetched batches being stored at once
ROOM_POLL = 0.05  # seconds between looks at the queues while intake is paused
FETCH_WAIT = 1.0  # seconds a fetch waits for commands (a stop waits for it to return)
RETRY_PAUSE = 1.0  # seconds before binding a consumer again after an error
PUBLISH_TIMEOUT = 10.0  # seconds to wait for JetStream's acks of a batch of events
DRAIN_TIMEOUT = 2.0  # seconds the connection may take to drain at shutdown


class InvalidCommand(Exception):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = problems


def parse_command(data: bytes, subject: str, prefix: str) -> dict[str, Any]:
    """A dispatch command body as a message dict for the dispatcher; InvalidCommand if not."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCommand([("body", f"not valid JSON: {exc}")]) from None
    if not isinstance(body, dict):
        raise InvalidCommand([("body", "must be a JSON object")])
    if body.get("schema") != DISPATCH_SCHEMA:
        raise InvalidCommand([("schema", f"must be {DISPATCH_SCHEMA!r}")])
    message = body.get("message")
    if not isinstance(message, dict):
        raise InvalidCommand([("message", "must be an object")])
    if not message.get("message_id"):
        raise InvalidCommand([("message.message_id", "is required in a dispatch command "
                                                     "(it dedupes redeliveries)")])
    operator_id = subject[len(prefix) + 1:]
    if not operator_id or "." in operator_id:
        raise InvalidCommand([("subject", f"must be {prefix}.{{operatorId}}")])
    named = message.get("operator_id")
    if named is not None and named != operator_id:
        raise InvalidCommand([("message.operator_id", "differs from the subject's operator")])
    return {**message, "operator_id": operator_id}


class NatsBus:
    """The JetStream side of the daemon: an EventSink plus the dispatch consumer."""

    def __init__(self, settings: NatsSection, *, shadow: bool = False) -> None:
        self.settings = settings
        self.shadow = shadow
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.publisher: AckedPublisher | None = None
        self.intakes: dict[str, PullConsumer] = {}  # durable name -> its running intake
        # Operator id -> first stream sequence its own consumer delivers: the shared
        # consumer acks that operator's commands from there on unread.
        self.covered: dict[str, int] = {}
        self.published = 0
        self.suppressed = 0
        self.invalid = 0
        self.stored: collections.Counter[str] = collections.Counter()  # durable -> acked
        self.skipped = 0  # commands the shared consumer left to an operator's own

    async def connect(self) -> None:
        s = self.settings
        servers = [u.strip() for u in s.url.get_secret_value().split(",")]
        # drain_timeout: at shutdown nothing is left to deliver (consumers stopped, every
        # publish acked), so a drain that hangs must not hold the stop for nats-py's 30 s.
        self.nc = await nats.connect(servers=servers, name="smppd", max_reconnect_attempts=-1,
                                     drain_timeout=DRAIN_TIMEOUT)
        self.js = self.nc.jetstream()
        self.publisher = AckedPublisher(self.nc)
        await self.publisher.start()
        await self._ensure_stream(s.dispatch_stream,
                                  [f"{s.dispatch_subject}.*", s.invalid_subject])
        await self._ensure_stream(s.dlr_stream, [s.dlr_subject])
        await self._ensure_stream(s.mo_stream, [s.mo_subject])

    async def _ensure_stream(self, name: str, subjects: list[str]) -> None:
        assert self.js is not None
        try:
            await self.js.stream_info(name)
        except NotFoundError:
            await self.js.add_stream(StreamConfig(name=name, subjects=subjects,
                                                  duplicate_window=DEDUPE_WINDOW))
            log.info("stream created", extra={"event": "nats_stream_created", "stream": name})

    @property
    def paused(self) -> bool:
        """A pull consumer waits for room in the operators' queues."""
        return any(intake.paused for intake in self.intakes.values())

    async def stop_consumer(self) -> None:
        """Stop taking commands (shutdown's first step): every consumer's batches in
        hand are stored and acked first; the rest waits in the stream."""
        intakes = list(self.intakes.values())
        self.intakes.clear()
        await asyncio.gather(*(intake.stop() for intake in intakes))

    async def close(self) -> None:
        await self.stop_consumer()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    # -- EventSink --

    async def publish(self, kind: str, event: dict[str, Any]) -> None:
        if self.shadow:
            self.suppressed += 1
            return
        assert self.js is not None
        s = self.settings
        subject = s.dlr_subject if kind == "dlr" else s.mo_subject
        msg_id = _event_id(kind, event)
        await self.js.publish(subject, json.dumps(event, separators=(",", ":")).encode(),
                              headers={"Nats-Msg-Id": msg_id})
        self.published += 1

    async def publish_many(self, kind: str, events: Sequence[dict[str, Any]]) -> None:
        """Publish every event at once and wait for all the acks (a lost ack raises,
        so the caller's deliver_sm is answered with a transient error and redelivered;
        the republish dedupes on Nats-Msg-Id)."""
        if self.shadow:
            self.suppressed += len(events)
            return
        assert self.publisher is not None
        subject = self.settings.dlr_subject if kind == "dlr" else self.settings.mo_subject
        await self.publisher.publish_all(subject, [
            (json.dumps(event, separators=(",", ":")).encode(),
             {"Nats-Msg-Id": _event_id(kind, event)})
            for event in events
        ], timeout=PUBLISH_TIMEOUT)
        self.published += len(events)

    # -- dispatch consumers --

    def operator_consumer(self, op_id: str) -> str:
        return f"{self.settings.consumer}-{op_id}"

    def start_consumer(self, dispatcher: Commands) -> None:
        """The shared consumer on ``{dispatch_subject}.*``: every command in
        active/active mode, what no operator's own consumer covers in active/standby."""
        self._start_intake(self.settings.consumer, self._bind_shared,
                           lambda msgs: self._take_shared(dispatcher, msgs), dispatcher)

    def start_operator(self, op_id: str, dispatcher: Commands) -> None:
        """Take the operator's commands through its own consumer (its lease is ours)."""
        durable = self.operator_consumer(op_id)
        self._start_intake(durable, lambda: self._bind_operator(op_id),
                           lambda msgs: self._take(dispatcher, durable, msgs), dispatcher)

    async def stop_operator(self, op_id: str) -> None:
        """Stop the operator's own consumer (lease lost, shutdown) once its batches
        in hand are stored and acked; its other commands wait for the next leader."""
        intake = self.intakes.pop(self.operator_consumer(op_id), None)
        if intake is not None:
            await intake.stop()

    def _start_intake(self, durable: str, bind: Callable[[], Awaitable[Any]],
                      handle: Callable[[list[Msg]], Awaitable[None]], dispatcher: Commands) -> None:
        if durable in self.intakes:
            return
        limit = int(self.settings.max_queued)

        def has_room() -> bool:
            return sum(len(op.queue) for op in dispatcher.operators.values()) < limit

        intake = PullConsumer(durable, bind, handle, has_room)
        self.intakes[durable] = intake
        intake.start()

    async def cover(self, op_id: str) -> int | None:
        """Make sure the operator's own consumer exists, and let the shared consumer
        leave it the commands it delivers. Returns its first stream sequence (None:
        a consumer made elsewhere from an unknown position, so nothing is left to it).

        A new one starts right after the last command the shared consumer was
        delivered: everything before was the shared consumer's to handle, everything
        after is this one's, so no command is lost or taken twice at the switch."""
        assert self.js is not None
        durable = self.operator_consumer(op_id)
        try:
            info = await self.js.consumer_info(self.settings.dispatch_stream, durable)
        except NotFoundError:
            info = await self._create_operator_consumer(op_id)
        first = _first_sequence(info)
        if first is None:
            self.covered.pop(op_id, None)
        else:
            self.covered[op_id] = first
        return first

    async def _create_operator_consumer(self, op_id: str) -> ConsumerInfo:
        assert self.js is not None
        s = self.settings
        shared = await self._ensure_shared()
        delivered = shared.delivered.stream_seq if shared.delivered is not None else 0
        durable = self.operator_consumer(op_id)
        config = ConsumerConfig(
            name=durable, durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
            ack_wait=s.ack_wait, filter_subject=f"{s.dispatch_subject}.{op_id}",
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=delivered + 1)
        try:
            info = await self.js.add_consumer(s.dispatch_stream, config)
        except APIError:  # a peer made it first (from its own position): use theirs
            theirs: ConsumerInfo = await self.js.consumer_info(s.dispatch_stream, durable)
            return theirs
        log.info("operator consumer created", extra={
            "event": "nats_consumer_created", "consumer": durable, "operator": op_id,
            "first_sequence": delivered + 1})
        return info

    async def _ensure_shared(self) -> ConsumerInfo:
        assert self.js is not None
        s = self.settings
        info: ConsumerInfo
        try:
            info = await self.js.consumer_info(s.dispatch_stream, s.consumer)
        except NotFoundError:
            info = await self.js.add_consumer(s.dispatch_stream, ConsumerConfig(
                name=s.consumer, durable_name=s.consumer, ack_policy=AckPolicy.EXPLICIT,
                ack_wait=s.ack_wait, filter_subject=f"{s.dispatch_subject}.*"))
        return info

    async def _bind_shared(self) -> Any:
        assert self.js is not None
        await self._ensure_shared()
        return await self.js.pull_subscribe_bind(durable=self.settings.consumer,
                                                 stream=self.settings.dispatch_stream)

    async def _bind_operator(self, op_id: str) -> Any:
        assert self.js is not None
        await self.cover(op_id)  # made again if it was deleted under us
        return await self.js.pull_subscribe_bind(durable=self.operator_consumer(op_id),
                                                 stream=self.settings.dispatch_stream)

    async def retire_operator(self, op_id: str, dispatcher: Commands) -> int:
        """Drain the operator's own consumer, then delete it: the operator left the
        config (its commands are refused as unknown now) or the daemon runs
        active/active (they are taken as usual). Only for a replica holding the
        operator's lease, or when no replica runs it: a deleted consumer made again
        later would start after the shared consumer's position, not replay old
        commands. Commands a dead replica fetched without acking go with it."""
        assert self.js is not None
        s = self.settings
        self.covered.pop(op_id, None)  # the shared consumer takes its commands again
        await self.stop_operator(op_id)
        durable = self.operator_consumer(op_id)
        try:
            info = await self.js.consumer_info(s.dispatch_stream, durable)
        except NotFoundError:
            return 0
        waiting = info.num_pending or 0  # newer ones reach the shared consumer too
        drained = 0
        sub = await self.js.pull_subscribe_bind(durable=durable, stream=s.dispatch_stream)
        try:
            while drained < waiting:
                try:
                    msgs = await sub.fetch(min(FETCH_BATCH, waiting - drained),
                                           timeout=FETCH_WAIT)
                except (NatsTimeoutError, TimeoutError):
                    break
                await self._take(dispatcher, durable, msgs)
                drained += len(msgs)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        with contextlib.suppress(NotFoundError):
            await self.js.delete_consumer(s.dispatch_stream, durable)
        log.info("operator consumer deleted", extra={
            "event": "nats_consumer_deleted", "consumer": durable, "operator": op_id,
            "drained": drained})
        return drained

    async def _take_shared(self, dispatcher: Commands, msgs: list[Msg]) -> None:
        if self.covered:
            mine = []
            for msg in msgs:
                if self._covered_elsewhere(msg):
                    await msg.ack()  # its operator's consumer takes it
                    self.skipped += 1
                else:
                    mine.append(msg)
            msgs = mine
        if msgs:
            await self._take(dispatcher, self.settings.consumer, msgs)

    def _covered_elsewhere(self, msg: Msg) -> bool:
        """An operator's own consumer delivers this command too (active/standby)."""
        first = self.covered.get(msg.subject[len(self.settings.dispatch_subject) + 1:])
        return (first is not None and msg.metadata.sequence is not None
                and int(msg.metadata.sequence.stream) >= first)

    async def _take(self, dispatcher: Commands, durable: str, msgs: list[Msg]) -> None:
        acked = await self._handle_batch(dispatcher, msgs)
        if acked:  # (not `+= await`: batches run at once)
            self.stored[durable] += acked

    async def _handle_batch(self, dispatcher: Commands, msgs: list[Msg]) -> int:
        """Store a batch and ack it; returns how many valid commands were acked."""
        s = self.settings
        valid: list[tuple[Msg, tuple[Outbound, Operator]]] = []
        for msg in msgs:
            try:
                body = parse_command(msg.data, msg.subject, s.dispatch_subject)
                valid.append((msg, dispatcher.prepare(body)))
            except InvalidCommand as exc:
                await self._reject(msg, exc.problems)
            except MessageError as exc:
                await self._reject(msg, [(f"message.{f}", m) for f, m in exc.problems])
        if not valid:
            return 0
        try:
            # dedupe: a message id already stored (a redelivery) is acked, not resent.
            await dispatcher.accept([item for _, item in valid], dedupe=True)
        except Exception:
            log.exception("accept failed; commands will be redelivered",
                          extra={"event": "dispatch_accept_failed", "count": len(valid)})
            for msg, _ in valid:
                with contextlib.suppress(Exception):
                    await msg.nak(delay=1.0)
            return 0
        for msg, _ in valid:
            await msg.ack()
        return len(valid)

    async def _reject(self, msg: Msg, problems: list[tuple[str, str]]) -> None:
        assert self.js is not None
        self.invalid += 1
        reason = {
            "schema": INVALID_SCHEMA,
            "subject": msg.subject,
            "errors": [{"field": f, "message": m} for f, m in problems],
            "stream_sequence": msg.metadata.sequence.stream if msg.metadata else None,
        }
        log.warning("invalid dispatch command", extra={"event": "dispatch_invalid",
                                                       "errors": reason["errors"]})
        await self.js.publish(self.settings.invalid_subject, json.dumps(reason).encode())
        await msg.term()


class PullConsumer:
    """One durable pull consumer feeding the dispatcher.

    Fetched batches are handled up to ``BATCHES_IN_FLIGHT`` at once: a batch's
    commit is a round trip or two, and waiting for it before fetching again would
    pace intake at one batch per commit. No fetch while ``has_room`` says the
    operators' queues are full (an MNO down or throttled): the commands wait in the
    stream. ``stop`` lets the fetch in progress return and the batches in hand be
    stored and acked, so a clean stop leaves nothing for redelivery.
    """

    def __init__(self, durable: str, bind: Callable[[], Awaitable[Any]],
                 handle: Callable[[list[Msg]], Awaitable[None]],
                 has_room: Callable[[], bool]) -> None:
        self.durable = durable
        self._bind = bind  # -> a pull subscription on the durable
        self._handle = handle
        self._has_room = has_room
        self.paused = False
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        in_flight = asyncio.Semaphore(BATCHES_IN_FLIGHT)
        handling: set[asyncio.Task[None]] = set()
        sub: Any = None
        try:
            while not self._stopping.is_set():
                if sub is None:
                    sub = await self._subscribe()
                    continue
                if not await self._wait_for_room():
                    break
                await in_flight.acquire()
                try:
                    msgs = await sub.fetch(FETCH_BATCH, timeout=FETCH_WAIT)
                except (NatsTimeoutError, TimeoutError):
                    in_flight.release()
                    continue
                except Exception:
                    in_flight.release()
                    log.exception("fetch failed", extra={"event": "nats_fetch_failed",
                                                         "consumer": self.durable})
                    await _unsubscribe(sub)
                    sub = None  # the consumer may be gone: bind (or make) it again
                    await self._pause(RETRY_PAUSE)
                    continue
                task = asyncio.ensure_future(self._handle_logged(msgs))
                handling.add(task)
                task.add_done_callback(handling.discard)
                task.add_done_callback(lambda _: in_flight.release())
        finally:
            # Stopping: let the batches already fetched finish (stored and acked).
            if handling:
                await asyncio.gather(*handling, return_exceptions=True)
            self.paused = False
            if sub is not None:
                await _unsubscribe(sub)

    async def _subscribe(self) -> Any:
        try:
            sub = await self._bind()
        except Exception:
            log.exception("consumer bind failed", extra={"event": "nats_bind_failed",
                                                         "consumer": self.durable})
            await self._pause(RETRY_PAUSE)
            return None
        log.info("taking dispatch commands", extra={"event": "nats_intake_started",
                                                    "consumer": self.durable})
        return sub

    async def _wait_for_room(self) -> bool:
        """Back-pressure; False if asked to stop meanwhile."""
        while not self._has_room():
            self.paused = True
            if self._stopping.is_set():
                return False
            await asyncio.sleep(ROOM_POLL)
        self.paused = False
        return not self._stopping.is_set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _handle_logged(self, msgs: list[Msg]) -> None:
        try:
            await self._handle(msgs)
        except Exception:  # unacked commands are redelivered after ack_wait
            log.exception("dispatch batch failed", extra={"event": "nats_batch_failed",
                                                          "consumer": self.durable})


async def _unsubscribe(sub: Any) -> None:
    with contextlib.suppress(Exception):
        await sub.unsubscribe()


def _first_sequence(info: ConsumerInfo) -> int | None:
    """The first stream sequence a consumer delivers, if known from its config."""
    config = info.config
    if config.deliver_policy == DeliverPolicy.BY_START_SEQUENCE and config.opt_start_seq:
        return int(config.opt_start_seq)
    if config.deliver_policy in (None, DeliverPolicy.ALL):
        return 1
    return None


def _event_id(kind: str, event: dict[str, Any]) -> str:
    """Nats-Msg-Id: the same receipt published twice (a crash, a retry) dedupes."""
    parts = [kind, str(event.get("message_id", "")), str(event.get("part", "")),
             str(event.get("state", "")), str(event.get("stat", ""))]
    if kind == "mo":  # two MO messages of one batch may share a clock reading
        text = str(event.get("text", "")).encode("utf-8", "surrogatepass")
        parts += [str(event.get("source", "")), str(event.get("destination", "")),
                  hashlib.blake2b(text, digest_size=8).hexdigest(), str(event.get("at", ""))]
    return ":".join(parts)


class OperatorIntake:
    """An operator's own consumer as ``smppd.cluster.leader.CommandSource``: run while its lease
    is ours."""

    def __init__(self, bus: NatsBus, op_id: str, dispatcher: Commands) -> None:
        self.bus = bus
        self.op_id = op_id
        self.dispatcher = dispatcher

    def start(self) -> None:
        self.bus.start_operator(self.op_id, self.dispatcher)

    async def stop(self) -> None:
        await self.bus.stop_operator(self.op_id)
