"""The dispatch pipeline: accept, store, route, split, queue; then act on what comes back.

Accept: validate, pick the operator, write to the store (durable before the caller
gets its 202 or its NATS ack), split and queue on the operator. Back from the
operator: submit_sm_resp (record the SMSC id, retry a transient status per the
status table, end the message on a permanent one), expiry (outcome unknown),
deliver_sm (match a receipt, or pass an MO message on).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from correlation.receipts import Receipt, ReceiptError, parse_receipt
from correlation.store import ACCEPTED, FAILED, REJECTED, MessageRecord
from smppd.batcher import Batcher
from smppd.events import DLR_SCHEMA, MO_SCHEMA, EventSink
from smppd.message import MessageError, Outbound, relative_validity, ton_npi, validate_message
from smppd.metrics import Metrics
from smppd.operator import Operator, OutboundPart
from smppd.protocol.constants import (
    ESM_DELIVERY_RECEIPT,
    ESM_INTERMEDIATE_NOTIFICATION,
    ESM_UDHI,
    Status,
    status_name,
)
from smppd.protocol.encoding import decode_text
from smppd.protocol.errors import PduEncodeError
from smppd.protocol.pdu import DeliverSm, Pdu, SubmitSm, encode
from smppd.protocol.split import Part, SplitError, parse_udh, split_message
from smppd.spill import SpillFile

log = logging.getLogger("smppd.dispatch")

THROTTLING = frozenset({Status.ESME_RTHROTTLED, Status.ESME_RMSGQFUL})
# Batches of submit responses (and of deliver_sm) in the works at once: while one
# waits for its store commit the next can be queued behind it.
BATCHES_AT_ONCE = 4
# Embedded mode: messages of the previous run read from the store at once (each read
# waits for the GIL a few times, ~5 ms each while the loop is busy: few large reads),
# and parts queued between two looks at the sockets.
REFILL_PAGE = 5000
REFILL_CHUNK = 500
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
    def __init__(self, store: Any, matcher: Any, sink: EventSink, metrics: Metrics,
                 clock: Callable[[], float] = time.time, *,
                 max_unrecorded: int = 10_000) -> None:
        self.store = store
        self.matcher = matcher
        self.sink = sink
        self.metrics = metrics
        self.clock = clock
        self.operators: dict[str, Operator] = {}
        self.accepting = True
        # Embedded mode (a store whose backlog is this process's alone): an operator's
        # queue holds at most its queue_limit parts; messages accepted beyond (durable
        # in the store) wait in a spill file and join the queue as it drains
        # (``_queue_or_spill``).
        self.spill_backlog = bool(getattr(store, "backlog_is_private", False))
        self.spill_directory: str | None = getattr(store, "directory", None)  # spill files
        self._last_accept = 0.0  # accept timestamps only increase (see _accept_time)
        self._refilling: set[Operator] = set()
        # (source, source_ton, source_npi) -> the submit_sm's source fields
        self._sources: dict[tuple[str, str, str], tuple[str, int, int]] = {}
        self._references: dict[str, int] = {}
        self._mo_parts: dict[tuple[str, str, int], dict[int, bytes]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
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
        # deliver_sm received, handled in batches (one lookup, one receipt write, one
        # event write for many).
        self._delivered: Batcher[tuple[Operator, Any, DeliverSm]] = Batcher(
            self._deliver_batches, workers=BATCHES_AT_ONCE, spawn=self._spawn)
        self._response_metrics: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._children: dict[tuple[Any, ...], Any] = {}
        self.selector: Callable[[Outbound], str | None] | None = None  # SelectOperator seam
        # ValidateLease seam: (sender, tenant) -> (allowed, reason code); None = no check
        self.lease_check: Callable[[str, str], Awaitable[tuple[bool, str]]] | None = None
        # circuit breaker seam: (operator, submit went well) after each response
        self.circuit: Callable[[str, bool], None] | None = None

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
        return msg, self.route(msg)

    async def accept(self, items: Sequence[tuple[Outbound, Operator]],
                     idempotency_key: str | None = None, *,
                     dedupe: bool = False) -> list[Accepted]:
        """Store (durably) and queue validated messages. With ``dedupe`` a message
        whose id is already stored (a redelivered command) is answered as a
        duplicate and neither stored nor queued again."""
        if not self.accepting:
            raise RuntimeError("not accepting messages: shutting down")
        if idempotency_key is not None:
            existing = await self.store.idempotency_get(idempotency_key)
            if existing is not None:
                return [Accepted(existing, "", 0, duplicate=True)]
        denied = await self._lease_verdicts(items)
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
                    accepted.append(Accepted(record.message_id, op.id, 0, duplicate=True))
                    continue
                stored.discard(record.message_id)  # the same id twice in one batch
            if record.reason is not None:
                rejected.append((op, record.message_id, record.reason))
                accepted.append(Accepted(record.message_id, op.id, len(parts),
                                         rejected=record.reason))
                continue
            sendable.append((record, op, parts))
            accepted.append(Accepted(record.message_id, op.id, len(parts)))
        self._queue_or_spill(sendable)  # right after the store write: in accept order
        if idempotency_key is not None and planned:
            await self.store.idempotency_put(idempotency_key, planned[0][0].message_id)
        for op, message_id, reason in rejected:
            await self._finish(op, message_id, REJECTED, reason, None)
        return accepted

    def _accept_time(self, count: int) -> float:
        """The first of ``count`` accept times a TICK apart: now, but after every
        earlier one (even if the clock stepped back). The store reads a spilled
        backlog in this order."""
        start = max(self.clock(), self._last_accept + TICK)
        self._last_accept = start + (count - 1) * TICK
        return start

    async def _lease_verdicts(self, items: Sequence[tuple[Outbound, Operator]],
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
            return split_message(msg.body, msg.data_coding, op.config.long_message,
                                 self._next_ref(op))
        except SplitError as exc:
            raise MessageError([("text", str(exc))]) from None

    def _queue(self, record: MessageRecord, op: Operator, parts: Iterable[Part],
               skip: frozenset[int] = frozenset()) -> None:
        outbound = self._encode(record, op, parts, skip)
        if outbound is None:
            return
        for item in outbound:
            op.enqueue(item)
        self._labelled(self.metrics.accepted, op.id).inc()
        op.counters["accepted"] += 1

    def _encode(self, record: MessageRecord, op: Operator, parts: Iterable[Part],
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
            self._spawn(self._finish(op, record.message_id, "FAILED", str(exc), None))
            return None
        return outbound

    def _source(self, source: str, cfg: Any) -> tuple[str, int, int]:
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
    def _address(source: str, cfg: Any) -> tuple[str, int, int]:
        addr, ton, npi = ton_npi(source)
        if cfg.source_ton != "auto":
            ton = int(cfg.source_ton)
        if cfg.source_npi != "auto":
            npi = int(cfg.source_npi)
        return addr, ton, npi

    # -- a backlog beyond the queue limit (embedded mode) --

    def _queue_or_spill(self, batch: list[tuple[MessageRecord, Operator, list[Part]]]) -> None:
        """Queue an accept batch; in embedded mode an operator's share of it (all of
        it) waits outside the queue, encoded in the operator's spill file, while
        others wait there (or in the store, after a restart), or when it would take
        the queue past queue_limit. Only here and in ``_refill`` do parts go into the
        spill file or from it to the queue, each time without an await in between: so
        nothing is taken twice or left behind, and the order is kept."""
        if not self.spill_backlog:
            for record, op, parts in batch:
                self._queue(record, op, parts)
            return
        shares: dict[Operator, list[tuple[MessageRecord, Operator, list[Part]]]] = {}
        for item in batch:
            shares.setdefault(item[1], []).append(item)
        for op, share in shares.items():
            # (An active/standby operator never spills: its lease holder's sweep reads
            # the store's backlog instead.)
            if not op.spilled and op.queued_ids is None:
                count = sum(len(parts) for _, _, parts in share)
                if len(op.queue) + count > op.config.queue_limit:
                    self._spill(op)
            if not op.spilled:
                for record, _, parts in share:
                    self._queue(record, op, parts)
                continue
            assert op.spill_file is not None
            for record, _, parts in share:
                encoded = self._encode(record, op, parts)
                if encoded is not None:
                    op.spill_file.append(encoded)
                    self._labelled(self.metrics.accepted, op.id).inc()
                    op.counters["accepted"] += 1
            self._refill_soon(op)  # the queue may be low already

    def _spill(self, op: Operator) -> None:
        if op.spill_file is None:
            op.spill_file = SpillFile(self.spill_directory)
        op.spill(lambda: self._refill_soon(op))

    def _refill_soon(self, op: Operator) -> None:
        """Start a refill, unless one runs or the queue is more than half full."""
        if op not in self._refilling and len(op.queue) <= op.config.queue_limit // 2:
            self._refilling.add(op)
            self._spawn(self._refill(op))

    async def _refill(self, op: Operator) -> int:
        """Fill the operator's queue up to its limit: first from the previous run's
        backlog in the store, then from the spill file; once both are empty, accepted
        messages join the queue directly again. The caller has put ``op`` in
        ``_refilling``. Returns how many messages came from the store."""
        from_store = 0
        try:
            while op.spilled and self.operators.get(op.id) is op:
                room = op.config.queue_limit - len(op.queue)
                if room <= 0:
                    break
                if op.backlog_end is not None:
                    queued = await self._refill_from_store(op, min(room, REFILL_PAGE))
                    from_store += queued
                    if not queued and op.backlog_end is not None:
                        break  # the next message does not fit yet
                    continue
                assert op.spill_file is not None
                parts = op.spill_file.take(min(room, REFILL_CHUNK))
                if not parts:
                    op.unspill()
                    break
                for part in parts:
                    op.enqueue(part)
                await asyncio.sleep(0)  # let the binds send between chunks
        finally:
            self._refilling.discard(op)
        return from_store

    async def _refill_from_store(self, op: Operator, wanted: int) -> int:
        """Queue up to ``wanted`` messages of the previous run's backlog, oldest first,
        skipping parts sent already; a message always fits an empty queue. Returns
        how many were queued; ``op.backlog_end`` is None once all are."""
        assert op.backlog_end is not None
        rows = await self.store.accepted_after(op.id, op.backlog_cursor, wanted)
        for taken, (record, submitted) in enumerate(rows):
            if record.created_at > op.backlog_end:  # accepted since: in the spill file
                op.backlog_end = None
                return taken
            if taken % REFILL_CHUNK == REFILL_CHUNK - 1:
                await asyncio.sleep(0)  # let the binds send between chunks
            parts = self._stored_parts(record, op)
            if parts is not None:
                unsent = [part for part in parts if part.number not in submitted]
                if op.queue and len(op.queue) + len(unsent) > op.config.queue_limit:
                    return taken
                self._queue(record, op, unsent)
            op.backlog_cursor = (record.created_at, record.message_id)
        if len(rows) < wanted:
            op.backlog_end = None
        return len(rows)

    def _stored_parts(self, record: MessageRecord, op: Operator) -> list[Part] | None:
        """A stored message's parts, or None (and the message FAILED) if the
        operator's settings can no longer split it."""
        try:
            return split_message(record.body, record.data_coding, op.config.long_message,
                                 self._next_ref(op))
        except SplitError as exc:
            self._spawn(self._finish(op, record.message_id, FAILED, str(exc), None))
            return None

    async def resume_pending(self) -> int:
        """After a restart: queue again what was accepted and not yet submitted; in
        embedded mode up to each operator's queue limit, the rest by refills. Returns
        how many messages were queued."""
        if not self.spill_backlog or any(op.queued_ids is not None
                                         for op in self.operators.values()):
            return await self._resume_all()
        count = 0
        for operator_id, newest in (await self.store.accepted_backlog()).items():
            # Messages accepted from now on must come after the backlog, even if the
            # clock stepped back across the restart.
            self._last_accept = max(self._last_accept, newest)
            op = self.operators.get(operator_id or "")
            if op is None:
                await self._fail_unconfigured(operator_id)
                continue
            op.backlog_cursor, op.backlog_end = None, newest
            self._spill(op)
            self._refilling.add(op)
            count += await self._refill(op)
        return count

    async def _fail_unconfigured(self, operator_id: str | None) -> None:
        after: tuple[float, str] | None = None
        while rows := await self.store.accepted_after(operator_id, after, REFILL_PAGE):
            await asyncio.gather(*(
                self.store.set_message_state(record.message_id, FAILED,
                                             reason="operator no longer configured",
                                             at=self.clock())
                for record, _ in rows))
            after = (rows[-1][0].created_at, rows[-1][0].message_id)

    async def _resume_all(self) -> int:
        count = 0
        for record in await self.store.pending_messages():
            op = self.operators.get(record.operator_id or "")
            if op is None:
                await self.store.set_message_state(record.message_id, "FAILED",
                                                   reason="operator no longer configured",
                                                   at=self.clock())
                continue
            stored = await self.store.get_message(record.message_id) or {}
            submitted = frozenset(p["part"] for p in stored.get("parts", ())
                                  if p.get("smsc_id"))
            parts = split_message(record.body, record.data_coding, op.config.long_message,
                                  self._next_ref(op))
            self._queue(record, op, parts, skip=submitted)
            count += 1
        return count

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
        responses.inc()
        latencies.observe(latency)
        op.latencies.append(latency)
        op.counters["submit_ok" if status == Status.ESME_ROK else "submit_error"] += 1
        if status == Status.ESME_ROK:
            op.limiter.not_throttled()
            self._answered.add((op, (part.message_id, part.part, part.total,
                                     getattr(pdu, "message_id", ""))))
            if self._answered.pending >= self.max_unrecorded and not self._holding_back:
                self._hold_back(True)
            return
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
        self._spawn(self._finish(op, part.message_id, state, status_name(status), status))

    def submit_unknown(self, op: Operator, part: OutboundPart, reason: str) -> None:
        if self.circuit is not None:
            self.circuit(op.id, False)
        self._spawn(self._finish(op, part.message_id, "UNKNOWN", reason, None))

    def bind_changed(self, op: Operator) -> None:
        for bind in op.binds:
            self.metrics.bind_up.labels(op.id, bind.name).set(1 if bind.bound else 0)

    def _metrics_for(self, operator_id: str, status: int) -> tuple[Any, Any]:
        """The labelled children for a response (a labels() lookup costs more than inc())."""
        key = (operator_id, status)
        found = self._response_metrics.get(key)
        if found is None:
            found = (self.metrics.responses.labels(operator_id, status_name(status)),
                     self.metrics.submit_latency.labels(operator_id))
            self._response_metrics[key] = found
        return found

    def _labelled(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: receipts are counted per receipt."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _maybe_release(self) -> None:
        if self._holding_back and self._answered.pending <= self.max_unrecorded // 2:
            self._hold_back(False)

    def _hold_back(self, hold: bool) -> None:
        self._holding_back = hold
        for op in self.operators.values():
            if hold:
                op.hold_back()
            else:
                op.release()

    async def _record_answered(self, batch: list[tuple[Operator, tuple[str, int, int, str]]],
                               ) -> None:
        """Record the SMSC ids of a batch of answered submits, one write per operator."""
        by_operator: dict[str, tuple[Operator, list[tuple[str, int, int, str]]]] = {}
        for op, submit in batch:
            by_operator.setdefault(op.id, (op, []))[1].append(submit)
        for op, submits in by_operator.values():
            try:
                results = await self.matcher.on_submitted_many(
                    op.id, submits, op.config.submit_resp_id)
                await self._receipts_matched(op, results)
            except Exception:  # log and go on: the next batch may well succeed
                log.exception("recording submits failed",
                              extra={"event": "record_submitted_failed",
                                     "operator": op.id, "count": len(submits)})

    async def _finish(self, op: Operator, message_id: str, state: str, reason: str,
                      status: int | None) -> None:
        await self.store.set_message_state(message_id, state, reason=reason,
                                           command_status=status, at=self.clock())
        self.metrics.final_states.labels(op.id, state).inc()
        await self._publish("dlr", {
            "schema": DLR_SCHEMA, "message_id": message_id, "operator_id": op.id,
            "state": state, "final": True, "reason": reason,
            "command_status": status, "at": self.clock(),
        })

    async def late_match(self, operator_id: str, result: Any) -> None:
        """A held receipt matched at expiry (its submit was stored by another replica)."""
        op = self.operators.get(operator_id)
        if op is not None:
            await self._receipts_matched(op, [result])

    def deliver_received(self, op: Operator, conn: Any, pdu: DeliverSm) -> None:
        self._delivered.add((op, conn, pdu))

    async def _deliver_batches(self, batch: list[tuple[Operator, Any, DeliverSm]]) -> None:
        """Handle a batch of deliver_sm, per operator: one lookup, one receipt write
        and one event write, then all the responses."""
        by_operator: dict[str, tuple[Operator, list[tuple[Any, DeliverSm]]]] = {}
        for op, conn, pdu in batch:
            by_operator.setdefault(op.id, (op, []))[1].append((conn, pdu))
        for op, items in by_operator.values():
            await self._deliver_batch(op, items)

    async def _deliver_batch(self, op: Operator, items: list[tuple[Any, DeliverSm]]) -> None:
        receipts: list[tuple[Any, DeliverSm, Receipt]] = []
        for conn, pdu in items:
            if not pdu.esm_class & (ESM_DELIVERY_RECEIPT | ESM_INTERMEDIATE_NOTIFICATION):
                await self._answer(conn, pdu, self._mo(op, pdu))
                continue
            try:
                receipts.append((conn, pdu, parse_receipt(pdu.short_message, pdu.tlvs)))
            except ReceiptError as exc:
                log.warning("unparseable receipt", extra={"event": "receipt_unparseable",
                                                          "operator": op.id, "field": exc.field})
                self.metrics.unmatched.labels(op.id).inc()
                conn.respond(pdu, pdu.response(Status.ESME_ROK))
        if receipts:
            await self._receipts(op, receipts)

    async def _receipts(self, op: Operator, receipts: list[tuple[Any, DeliverSm, Receipt]],
                        ) -> None:
        status = Status.ESME_ROK
        held = []
        try:
            results = await self.matcher.on_receipts(op.id, [r for _, _, r in receipts],
                                                     op.config.receipt_id)
            matched = []
            for (conn, pdu, receipt), result in zip(receipts, results, strict=True):
                if result is None:
                    held.append((conn, pdu, self.matcher.settled(receipt)))
                else:
                    matched.append(result)
            await self._receipts_matched(op, matched)
        except Exception:
            log.exception("receipt handling failed", extra={"event": "deliver_failed",
                                                            "operator": op.id})
            status = Status.ESME_RX_T_APPN  # the SMSC will redeliver
        waiting = {id(pdu) for _, pdu, _ in held} if status == Status.ESME_ROK else set()
        for conn, pdu, _ in receipts:
            if id(pdu) not in waiting:
                conn.respond(pdu, pdu.response(status))
        if status != Status.ESME_ROK:
            return
        for conn, pdu, settled in held:
            # Held for its submit_sm_resp: answer the deliver_sm only once the receipt
            # is matched or in the orphan table, so a crash meanwhile cannot lose it
            # (the SMSC redelivers an unanswered deliver_sm).
            self.metrics.unmatched.labels(op.id).inc()
            self._spawn(self._answer(conn, pdu, settled))

    async def _answer(self, conn: Any, pdu: DeliverSm, handling: Awaitable[None]) -> None:
        """Answer a deliver_sm once its handling is done: OK, or a transient error
        (the SMSC redelivers) if it failed."""
        status = Status.ESME_ROK
        try:
            await handling
        except Exception:
            log.exception("deliver_sm handling failed", extra={"event": "deliver_failed"})
            status = Status.ESME_RX_T_APPN
        conn.respond(pdu, pdu.response(status))

    async def _receipts_matched(self, op: Operator, results: Sequence[Any]) -> None:
        if not results:
            return
        now = self.clock()
        events = []
        for result in results:
            self._labelled(self.metrics.receipts, op.id, result.stat).inc()
            if result.final:
                self._labelled(self.metrics.final_states, op.id, result.message_state).inc()
            events.append({
                "schema": DLR_SCHEMA, "message_id": result.message_id, "operator_id": op.id,
                "part": result.part, "parts": result.total, "state": result.message_state,
                "final": result.final, "stat": result.stat, "err": result.err, "at": now,
            })
        op.counters["receipts"] += len(results)
        await self.sink.publish_many("dlr", events)

    async def _mo(self, op: Operator, pdu: DeliverSm) -> None:
        body = pdu.short_message or pdu.tlvs.get(0x0424, b"")
        if pdu.esm_class & ESM_UDHI:
            concat = parse_udh(body)
            if concat is not None:
                key = (op.id, pdu.source_addr, concat.reference)
                parts = self._mo_parts.setdefault(key, {})
                parts[concat.seq] = concat.body
                if len(parts) < concat.total:
                    return
                del self._mo_parts[key]
                body = b"".join(parts[i] for i in sorted(parts))
        self.metrics.mo.labels(op.id).inc()
        await self._publish("mo", {
            "schema": MO_SCHEMA, "operator_id": op.id, "source": pdu.source_addr,
            "destination": pdu.destination_addr, "data_coding": pdu.data_coding,
            "text": decode_text(body, pdu.data_coding), "at": self.clock(),
        })

    async def _publish(self, kind: str, event: dict[str, Any]) -> None:
        await self.sink.publish(kind, event)

    # -- housekeeping --

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
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

    # -- active/standby (smppd.leader) --

    async def queue_stored(self, op: Operator, message_ids: Iterable[str]) -> int:
        """Queue on ``op`` stored messages that are still ACCEPTED and not queued here
        (the lease holder takes over what a peer accepted or a dead leader held).
        Parts that have an SMSC id already are not sent again. Returns how many."""
        count = 0
        for message_id in message_ids:
            stored = await self.store.get_message(message_id)
            if stored is None or stored["state"] != ACCEPTED or op.holds(message_id):
                continue  # finished meanwhile, or accepted here meanwhile
            submitted = frozenset(p["part"] for p in stored.pop("parts") if p.get("smsc_id"))
            record = MessageRecord(**stored)
            parts = split_message(record.body, record.data_coding, op.config.long_message,
                                  self._next_ref(op))
            self._queue(record, op, parts, skip=submitted)
            count += 1
        return count
