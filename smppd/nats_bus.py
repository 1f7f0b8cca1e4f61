"""NATS JetStream: dispatch commands in, delivery receipts and MO messages out.

- Streams are created if missing: dispatch commands on ``smpp.operator.{operatorId}``
  (plus ``smpp.dispatch.invalid``), receipts on ``sms.dlr.inbound``, MO on
  ``sms.mo.inbound``; the receipt and MO streams dedupe on ``Nats-Msg-Id``.
- One durable pull consumer, shared by every replica, feeds the dispatcher. A
  command is acked only once its message is durable in the store (accepted and
  stored for sending, or already known: a redelivery). An invalid command is
  terminated, with the reason published on ``smpp.dispatch.invalid``: never retried
  forever, never dropped silently. A store failure naks it for a later retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.errors import NotFoundError

from smppd.message import MessageError
from smppd.nats_publish import AckedPublisher

log = logging.getLogger("smppd.nats")

DISPATCH_SCHEMA = "smppd.dispatch.v1"
INVALID_SCHEMA = "smppd.dispatch.invalid.v1"
DEDUPE_WINDOW = 120.0  # seconds JetStream remembers a Nats-Msg-Id
FETCH_BATCH = 256
BATCHES_IN_FLIGHT = 4  # fetched batches being stored at once
ROOM_POLL = 0.05  # seconds between looks at the queues while intake is paused
PUBLISH_TIMEOUT = 10.0  # seconds to wait for JetStream's acks of a batch of events


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

    def __init__(self, settings: Any, *, shadow: bool = False) -> None:
        self.settings = settings
        self.shadow = shadow
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.publisher: AckedPublisher | None = None
        self._consumer: asyncio.Task[None] | None = None
        self.published = 0
        self.paused = False  # intake waits for room in the operators' queues
        self.suppressed = 0
        self.invalid = 0

    async def connect(self) -> None:
        s = self.settings
        servers = [u.strip() for u in s.url.get_secret_value().split(",")]
        self.nc = await nats.connect(servers=servers, name="smppd", max_reconnect_attempts=-1)
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

    async def stop_consumer(self) -> None:
        """Stop taking commands (shutdown's first step); unacked ones get redelivered."""
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
            self._consumer = None

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

    # -- dispatch consumer --

    def start_consumer(self, dispatcher: Any) -> None:
        self._consumer = asyncio.ensure_future(self._consume(dispatcher))

    async def _consume(self, dispatcher: Any) -> None:
        assert self.js is not None
        s = self.settings
        sub = await self.js.pull_subscribe(
            f"{s.dispatch_subject}.*", durable=s.consumer, stream=s.dispatch_stream,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=s.ack_wait,
                                  filter_subject=f"{s.dispatch_subject}.*"),
        )
        # Fetch the next batch while earlier ones are being stored: a batch's commit
        # is a round trip or two, and waiting for it before fetching again would pace
        # intake at one batch per commit.
        in_flight = asyncio.Semaphore(BATCHES_IN_FLIGHT)
        handling: set[asyncio.Task[None]] = set()
        try:
            while True:
                await self._wait_for_room(dispatcher)
                await in_flight.acquire()
                try:
                    msgs = await sub.fetch(FETCH_BATCH, timeout=1.0)
                except (NatsTimeoutError, TimeoutError):
                    in_flight.release()
                    continue
                except Exception:
                    in_flight.release()
                    log.exception("fetch failed", extra={"event": "nats_fetch_failed"})
                    await asyncio.sleep(1.0)
                    continue
                task = asyncio.ensure_future(self._handle_batch(dispatcher, msgs))
                handling.add(task)
                task.add_done_callback(handling.discard)
                task.add_done_callback(lambda _: in_flight.release())
        finally:
            # Stopping: let the batches already fetched finish (stored and acked),
            # so a clean shutdown leaves nothing for redelivery.
            if handling:
                await asyncio.gather(*handling, return_exceptions=True)

    async def _wait_for_room(self, dispatcher: Any) -> None:
        """Back-pressure: no fetch while the operators' queues hold ``max_queued``
        parts (e.g. an MNO down or throttled); the commands wait in the stream."""
        limit = self.settings.max_queued
        while sum(len(op.queue) for op in dispatcher.operators.values()) >= limit:
            self.paused = True
            await asyncio.sleep(ROOM_POLL)
        self.paused = False

    async def _handle_batch(self, dispatcher: Any, msgs: list[Msg]) -> None:
        s = self.settings
        valid: list[tuple[Msg, Any]] = []
        for msg in msgs:
            try:
                body = parse_command(msg.data, msg.subject, s.dispatch_subject)
                valid.append((msg, dispatcher.prepare(body)))
            except InvalidCommand as exc:
                await self._reject(msg, exc.problems)
            except MessageError as exc:
                await self._reject(msg, [(f"message.{f}", m) for f, m in exc.problems])
        if not valid:
            return
        try:
            # dedupe: a message id already stored (a redelivery) is acked, not resent.
            await dispatcher.accept([item for _, item in valid], dedupe=True)
        except Exception:
            log.exception("accept failed; commands will be redelivered",
                          extra={"event": "dispatch_accept_failed", "count": len(valid)})
            for msg, _ in valid:
                with contextlib.suppress(Exception):
                    await msg.nak(delay=1.0)
            return
        for msg, _ in valid:
            await msg.ack()

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


def _event_id(kind: str, event: dict[str, Any]) -> str:
    """Nats-Msg-Id: the same receipt published twice (a crash, a retry) dedupes."""
    parts = [kind, str(event.get("message_id", "")), str(event.get("part", "")),
             str(event.get("state", "")), str(event.get("stat", ""))]
    if kind == "mo":
        parts.append(str(event.get("at", "")))
    return ":".join(parts)
