"""The dispatch pipeline: accept, store, route, split, queue; then act on the answers.

Accept: validate, pick the operator, write to the store (durable before the caller
gets its 202 or its NATS ack), split and queue on the operator (or wait in its
backlog: ``smppd.intake.backlog``). Back from the operator: submit_sm_resp (record the
SMSC id, retry a transient status per the status table, end the message on a
permanent one), expiry (outcome unknown); deliver_sm go to ``smppd.intake.inbound``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from correlation.matcher import MatchResult
from correlation.store import ACCEPTED, REJECTED, CorrelationStore, MessageRecord
from smppd.config import OperatorConfig
from smppd.intake.backlog import Backlog
from smppd.intake.batcher import Batcher
from smppd.intake.durable import until_durable
from smppd.intake.events import DLR_SCHEMA, EventSink
from smppd.intake.inbound import Inbound
from smppd.intake.message import (
    MessageError,
    Outbound,
    relative_validity,
    ton_npi,
    validate_message,
)
from smppd.link.connection import SmppConnection
from smppd.link.operator import Operator
from smppd.link.parts import OutboundPart
from smppd.metric_children import MetricChildren
from smppd.metrics import Metrics
from smppd.protocol.constants import Status, status_name
from smppd.protocol.errors import PduEncodeError
from smppd.protocol.pdu import DeliverSm, Pdu, SubmitSm, encode
from smppd.protocol.split import Part, SplitError, split_message
from smppd.seams import CallbackCheck, CircuitRecord, LeaseCheck, Matcher, Selector

log = logging.getLogger("smppd.dispatch")

THROTTLING = frozenset({Status.ESME_RTHROTTLED, Status.ESME_RMSGQFUL})
# Batches of submit responses (and of deliver_sm) in the works at once: while one
# waits for its store commit the next can be queued behind it.
BATCHES_AT_ONCE = 4
TICK = 1e-6  # seconds between the accept times of two messages of one batch


class RoutingError(MessageError):
    pass


@dataclass(slots=True)
class Accepted:
    message_id: str
    operator_id: str
    parts: int
    duplicate: bool = False
    rejected: str | None = None  # a lease reason code: stored REJECTED, nothing sent


class Dispatcher:
    """The pipeline; ``operators`` is the fleet's own dict (read at each use, so an
    operator a reload adds or removes is seen at once), and the control plane's seams
    come in here: ``selector`` (SelectOperator), ``lease_check`` (ValidateLease; None:
    no check) and ``circuit`` (the breaker, told after each response); with webhooks,
    ``callback_check`` refuses a callback_url the daemon will not POST to."""

    def __init__(self, store: CorrelationStore, matcher: Matcher, sink: EventSink,
                 metrics: Metrics, clock: Callable[[], float] = time.time, *,
                 operators: Mapping[str, Operator] | None = None,
                 selector: Selector | None = None, lease_check: LeaseCheck | None = None,
                 circuit: CircuitRecord | None = None,
                 callback_check: CallbackCheck | None = None,
                 max_unrecorded: int = 10_000) -> None:
        self.store = store
        self.matcher = matcher
        self.sink = sink
        self.metrics = metrics
        self.clock = clock
        self.operators: Mapping[str, Operator] = {} if operators is None else operators
        self.accepting = True
        self._last_accept = 0.0  # accept timestamps only increase (see _accept_time)
        # (source, source_ton, source_npi) -> the submit_sm's source fields
        self._sources: dict[tuple[str, int | str, int | str], tuple[str, int, int]] = {}
        self._references: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.children = MetricChildren()
        self.backlog = Backlog(self, store, metrics, self.children, clock,
                               operators=lambda: self.operators, spawn=self._spawn)
        self.inbound = Inbound(store, matcher, sink, metrics, self.children, clock,
                               operators=lambda: self.operators, spawn=self._spawn,
                               workers=BATCHES_AT_ONCE)
        # submit_sm_resp OKs, recorded in batches (one store write for many), each
        # as (operator, (message_id, part, total, smsc_id)): not the part itself, so
        # its encoded frame is freed at once even when the store lags behind.
        self._answered: Batcher[tuple[Operator, tuple[str, int, int, str]]] = Batcher(
            self._record_answered, workers=BATCHES_AT_ONCE, spawn=self._spawn,
            on_batch_done=self._maybe_release)
        # Sending stops while this many submits wait for their SMSC ids to be stored:
        # they are what a crash would send again, and what memory holds meanwhile.
        self.max_unrecorded = max_unrecorded
        self._holding_back = False
        self._response_metrics: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._failing: dict[str, str] = {}  # bind -> reason of its smppd_bind_failing series
        self.selector = selector
        self.lease_check = lease_check
        self.circuit = circuit
        self.callback_check = callback_check

    # -- intake --

    def route(self, msg: Outbound) -> Operator:
        """The message's operator: named, chosen by the selector, or longest prefix."""
        if msg.operator_id is not None:
            op = self.operators.get(msg.operator_id)
            if op is None:
                raise RoutingError([("operator_id", f"unknown operator {msg.operator_id!r}")])
            return op
        if self.selector is not None:
            chosen = self.selector(msg)
            if chosen is not None and chosen in self.operators:
                return self.operators[chosen]
        best: tuple[int, Operator] | None = None
        for op in self.operators.values():
            for prefix in op.config.prefixes:
                if msg.destination.startswith(prefix) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), op)
        if best is None:
            raise RoutingError([("destination", "no operator serves this destination prefix")])
        return best[1]

    def prepare(self, raw: Any) -> tuple[Outbound, Operator]:
        msg = validate_message(raw)
        if msg.callback_url is not None and self.callback_check is not None:
            self.callback_check(msg)
        return msg, self.route(msg)

    async def accept(self, items: Sequence[tuple[Outbound, Operator]], *,
                     dedupe: bool = False,
                     verdicts: dict[tuple[str, str], str] | None = None) -> list[Accepted]:
        """Store (durably) and queue validated messages. With ``dedupe`` a message
        whose id is already stored (a redelivered command) is answered as a
        duplicate and neither stored nor queued again. ``verdicts``: the lease
        denials of ``lease_verdicts``, when the caller looked them up already."""
        if not self.accepting:
            raise RuntimeError("not accepting messages: shutting down")
        denied = await self.lease_verdicts(items) if verdicts is None else verdicts
        start = self._accept_time(len(items))
        planned: list[tuple[MessageRecord, Operator, list[Part]]] = []
        for n, (msg, op) in enumerate(items):
            parts = self._split(msg, op)
            reason = denied.get((msg.source, msg.tenant_id))
            now = start + n * TICK
            record = MessageRecord(
                message_id=msg.message_id, tenant_id=msg.tenant_id, source=msg.source,
                destination=msg.destination, data_coding=msg.data_coding, body=msg.body,
                operator_id=op.id, registered_delivery=int(msg.registered_delivery),
                validity=relative_validity(msg.validity) if msg.validity else None,
                priority=msg.priority, created_at=now, updated_at=now,
                callback_url=msg.callback_url,
                # Denied: stored REJECTED from the start, never ACCEPTED, so no read of
                # the backlog (refill, restart, the lease holder's sweep) can send it.
                state=ACCEPTED if reason is None else REJECTED, reason=reason,
            )
            planned.append((record, op, parts))
        records = [record for record, _, _ in planned]
        stored: set[str] | None = None
        if dedupe:
            stored = set(await self.store.accept_new(records))
        else:
            await self.store.accept(records)
        accepted = []
        sendable: list[tuple[MessageRecord, Operator, list[Part]]] = []
        rejected: list[tuple[Operator, str, str]] = []
        for record, op, parts in planned:
            if stored is not None:
                if record.message_id not in stored:
                    accepted.append(Accepted(record.message_id, op.id, len(parts),
                                             duplicate=True))
                    continue
                stored.discard(record.message_id)  # the same id twice in one batch
            if record.reason is not None:
                rejected.append((op, record.message_id, record.reason))
                accepted.append(Accepted(record.message_id, op.id, len(parts),
                                         rejected=record.reason))
                continue
            sendable.append((record, op, parts))
            accepted.append(Accepted(record.message_id, op.id, len(parts)))
        self.backlog.queue_or_spill(sendable)  # right after the store write: in accept order
        for op, message_id, reason in rejected:
            await self.finish(op, message_id, REJECTED, reason, None)
        return accepted

    def _accept_time(self, count: int) -> float:
        """The first of ``count`` accept times a TICK apart: now, but after every
        earlier one (even if the clock stepped back). The store reads a spilled
        backlog in this order."""
        start = max(self.clock(), self._last_accept + TICK)
        self._last_accept = start + (count - 1) * TICK
        return start

    def accept_after(self, at: float) -> None:
        """Accept times from now on come after ``at`` (a backlog stored before)."""
        self._last_accept = max(self._last_accept, at)

    async def lease_verdicts(self, items: Sequence[tuple[Outbound, Operator]],
                              ) -> dict[tuple[str, str], str]:
        """(source, tenant) -> reason code of each denied pair, checked once per batch."""
        denied: dict[tuple[str, str], str] = {}
        if self.lease_check is None:
            return denied
        seen: set[tuple[str, str]] = set()
        for msg, _ in items:
            key = (msg.source, msg.tenant_id)
            if key not in seen:
                seen.add(key)
                allowed, reason = await self.lease_check(*key)
                if not allowed:
                    denied[key] = reason
        return denied

    def _split(self, msg: Outbound, op: Operator) -> list[Part]:
        try:
            return self.split(op, msg.body, msg.data_coding)
        except SplitError as exc:
            raise MessageError([("text", str(exc))]) from None

    def split(self, op: Operator, body: bytes, data_coding: int) -> list[Part]:
        """A message's parts as the operator takes them, under a reference of its own."""
        return split_message(body, data_coding, op.config.long_message, self._next_ref(op))

    def queue(self, record: MessageRecord, op: Operator, parts: Iterable[Part],
              skip: frozenset[int] = frozenset()) -> None:
        outbound = self.encode(record, op, parts, skip)
        if outbound is None:
            return
        for item in outbound:
            op.enqueue(item)
        self.children.get(self.metrics.accepted, op.id).inc()
        op.counters["accepted"] += 1

    def encode(self, record: MessageRecord, op: Operator, parts: Iterable[Part],
               skip: frozenset[int] = frozenset()) -> list[OutboundPart] | None:
        """The message's submit_sm frames; None (and the message FAILED) if one
        cannot be encoded."""
        cfg = op.config
        source, src_ton, src_npi = self._source(record.source, cfg)
        validity = record.validity or ""
        outbound = []
        # Encoded once here (the bind only patches in its sequence number): cheaper to
        # send, and a queued part holds ~150 bytes instead of a SubmitSm object.
        try:
            for part in parts:
                if part.number in skip:
                    continue
                frame = encode(SubmitSm(
                    source_addr_ton=src_ton, source_addr_npi=src_npi, source_addr=source,
                    dest_addr_ton=cfg.dest_ton, dest_addr_npi=cfg.dest_npi,
                    destination_addr=record.destination, esm_class=part.esm_class,
                    priority_flag=record.priority, validity_period=validity,
                    registered_delivery=1 if record.registered_delivery else 0,
                    data_coding=record.data_coding, short_message=part.short_message,
                    tlvs=dict(part.tlvs),
                ))
                outbound.append(OutboundPart(record.message_id, part.number, part.total, frame))
        except PduEncodeError as exc:
            self._spawn(self.finish(op, record.message_id, "FAILED", str(exc), None))
            return None
        return outbound

    def _source(self, source: str, cfg: OperatorConfig) -> tuple[str, int, int]:
        """The submit_sm's source address, TON and NPI (cached: a few regular
        expressions per message otherwise, and senders repeat)."""
        key = (source, cfg.source_ton, cfg.source_npi)
        found = self._sources.get(key)
        if found is None:
            if len(self._sources) >= 10_000:
                self._sources.clear()
            found = self._sources[key] = self._address(source, cfg)
        return found

    @staticmethod
    def _address(source: str, cfg: OperatorConfig) -> tuple[str, int, int]:
        addr, ton, npi = ton_npi(source)
        if cfg.source_ton != "auto":
            ton = int(cfg.source_ton)
        if cfg.source_npi != "auto":
            npi = int(cfg.source_npi)
        return addr, ton, npi

    def _next_ref(self, op: Operator) -> int:
        ref = self._references.get(op.id, 0) % 255 + 1
        self._references[op.id] = ref
        return ref

    # -- back from the operator (OperatorEvents) --

    def submit_answered(self, op: Operator, part: OutboundPart, pdu: Pdu) -> None:
        status = pdu.command_status
        latency = max(0.0, time.perf_counter() - part.sent_at)
        if self.circuit is not None:
            self.circuit(op.id, status != Status.ESME_RSYSERR)
        responses, latencies = self._metrics_for(op.id, status)
        latencies.observe(latency)
        op.latencies.append(latency)
        if status == Status.ESME_ROK:
            # Counted, and the limiter told, once per batch in _record_answered; known to
            # the matcher now, so a receipt that beats the record matches it.
            submit = (part.message_id, part.part, part.total, getattr(pdu, "message_id", ""))
            self.matcher.expect_submits(op.id, [submit], op.config.submit_resp_id)
            self._answered.add((op, submit))
            if self._answered.pending >= self.max_unrecorded and not self._holding_back:
                self._hold_back(True)
            return
        responses.inc()
        op.counters["submit_error"] += 1
        if status in THROTTLING:
            op.limiter.throttled()
            self.metrics.throttled.labels(op.id).inc()
        rule = op.config.rule_for(status)
        if rule.transient and part.attempts < rule.retries:
            part.attempts += 1
            loop = asyncio.get_running_loop()
            loop.call_later(rule.delay, op.requeue, part)
            return
        rejected = status in (Status.ESME_RINVDSTADR, Status.ESME_RINVSRCADR)
        state = "REJECTED" if rejected else "FAILED"
        self._spawn(self.finish(op, part.message_id, state, status_name(status), status))

    def submit_unknown(self, op: Operator, part: OutboundPart, reason: str) -> None:
        if self.circuit is not None:
            self.circuit(op.id, False)
        self._spawn(self.finish(op, part.message_id, "UNKNOWN", reason, None))

    def deliver_received(self, op: Operator, conn: SmppConnection, pdu: DeliverSm) -> None:
        self.inbound.deliver_received(op, conn, pdu)

    def bind_changed(self, op: Operator) -> None:
        for bind in op.binds:
            self.metrics.bind_up.labels(op.id, bind.name).set(1 if bind.bound else 0)
            # One series per failing bind, labelled with why; gone once it binds.
            before = self._failing.get(bind.name)
            if before != bind.error_reason:
                if before is not None:
                    self.metrics.bind_failing.remove(op.id, bind.name, before)
                if bind.error_reason is not None:
                    self.metrics.bind_failing.labels(op.id, bind.name, bind.error_reason).set(1)
                    self._failing[bind.name] = bind.error_reason
                else:
                    self._failing.pop(bind.name, None)

    def _metrics_for(self, operator_id: str, status: int) -> tuple[Any, Any]:
        """The labelled children for a response (a labels() lookup costs more than inc())."""
        key = (operator_id, status)
        found = self._response_metrics.get(key)
        if found is None:
            found = (self.metrics.responses.labels(operator_id, status_name(status)),
                     self.metrics.submit_latency.labels(operator_id))
            self._response_metrics[key] = found
        return found

    def _maybe_release(self) -> None:
        if self._holding_back and self._answered.pending <= self.max_unrecorded // 2:
            self._hold_back(False)

    def _hold_back(self, hold: bool) -> None:
        self._holding_back = hold
        for op in self.operators.values():
            if hold:
                op.hold_gate.close()
            else:
                op.hold_gate.open()

    async def _record_answered(self, batch: list[tuple[Operator, tuple[str, int, int, str]]],
                               ) -> None:
        """Record the SMSC ids of a batch of answered submits, one write per operator."""
        by_operator: dict[str, tuple[Operator, list[tuple[str, int, int, str]]]] = {}
        for op, submit in batch:
            by_operator.setdefault(op.id, (op, []))[1].append(submit)
        for op, submits in by_operator.values():
            self._metrics_for(op.id, Status.ESME_ROK)[0].inc(len(submits))
            op.counters["submit_ok"] += len(submits)
            op.limiter.not_throttled()
            # Retried until durable: a part left ACCEPTED although the SMSC has it would
            # be resent by a restart, and its receipts could never match.
            results = await until_durable(
                "submitted", functools.partial(self.matcher.on_submitted_many, op.id, submits,
                                               op.config.submit_resp_id),
                operator=op.id, count=len(submits))
            await until_durable("receipt events",
                                functools.partial(self.inbound.receipts_matched, op, results),
                                operator=op.id)

    async def finish(self, op: Operator, message_id: str, state: str, reason: str,
                     status: int | None) -> None:
        """End a message: store its final state and publish it as a DLR event (each
        retried until durable)."""
        at = self.clock()
        await until_durable("final state", lambda: self.store.set_message_state(
            message_id, state, reason=reason, command_status=status, at=at),
            operator=op.id)
        self.metrics.final_states.labels(op.id, state).inc()
        event = {
            "schema": DLR_SCHEMA, "message_id": message_id, "operator_id": op.id,
            "state": state, "final": True, "reason": reason,
            "command_status": status, "at": at,
        }
        await until_durable("final event", lambda: self.sink.publish("dlr", event),
                            operator=op.id)

    # -- housekeeping --

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("dispatch task failed", exc_info=task.exception(),
                      extra={"event": "dispatch_task_failed"})

    async def settle(self, timeout: float | None = None) -> None:
        """Wait for the store writes already started (shutdown). A deliver_sm whose
        receipt is held waits for a submit that may no longer come: after ``timeout``
        what is left is cancelled (an unanswered deliver_sm is sent again by the SMSC)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._tasks:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            _, pending = await asyncio.wait(list(self._tasks), timeout=left)
            if pending and deadline is not None and loop.time() >= deadline:
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                return

    # -- delegated: stored backlog (smppd.intake.backlog), held receipts (smppd.intake.inbound) --

    async def resume_pending(self) -> int:
        return await self.backlog.resume_pending()

    async def queue_stored(self, op: Operator, message_ids: Iterable[str]) -> int:
        return await self.backlog.queue_stored(op, message_ids)

    async def late_match(self, operator_id: str, result: MatchResult) -> None:
        await self.inbound.late_match(operator_id, result)
