"""What the operator delivers (deliver_sm): delivery receipts and MO messages.

A receipt is matched to its submit and published as a DLR event; one that comes
before its submit_sm_resp (or on another bind) is stored as an orphan, and its
deliver_sm answered once that is durable: some SMSCs send the submit_sm_resp only
after the receipt is acknowledged. An MO message (its parts joined first) is
published as an MO event. deliver_sm are handled in batches: one lookup, one
receipt write and one event write for many.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from correlation.matcher import MatchResult
from correlation.receipts import Receipt, ReceiptError, parse_receipt
from correlation.store import CorrelationStore, MoPartRecord
from smppd.intake.batcher import Batcher
from smppd.intake.events import DLR_SCHEMA, MO_SCHEMA, EventSink
from smppd.intake.mo_parts import Key, MoParts
from smppd.link.connection import SmppConnection
from smppd.link.operator import Operator
from smppd.metric_children import MetricChildren
from smppd.metrics import Metrics
from smppd.protocol.constants import (
    ESM_DELIVERY_RECEIPT,
    ESM_INTERMEDIATE_NOTIFICATION,
    Status,
)
from smppd.protocol.encoding import decode_text
from smppd.protocol.pdu import DeliverSm
from smppd.seams import Matcher

log = logging.getLogger("smppd.dispatch")  # its records keep the name they had
UNPARSEABLE_LOG_PERIOD = 60.0  # seconds between two WARNINGs per operator


class Inbound:
    def __init__(self, store: CorrelationStore, matcher: Matcher, sink: EventSink, metrics: Metrics,
                 children: MetricChildren, clock: Callable[[], float], *,
                 operators: Callable[[], Mapping[str, Operator]],
                 spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
                 workers: int) -> None:
        self.store = store
        self.matcher = matcher
        self.sink = sink
        self.metrics = metrics
        self.children = children
        self.clock = clock
        self.operators = operators
        self._spawn = spawn
        self.mo_parts = MoParts()
        # operator -> (when an unparseable receipt was last logged, how many since)
        self._unparseable_logged: dict[str, tuple[float, int]] = {}
        self._delivered: Batcher[tuple[Operator, SmppConnection, DeliverSm]] = Batcher(
            self._deliver_batches, workers=workers, spawn=spawn)

    async def late_match(self, operator_id: str, result: MatchResult) -> None:
        """A held receipt matched at expiry (its submit was stored by another replica)."""
        op = self.operators().get(operator_id)
        if op is not None:
            await self.receipts_matched(op, [result])

    def deliver_received(self, op: Operator, conn: SmppConnection, pdu: DeliverSm) -> None:
        self._delivered.add((op, conn, pdu))

    async def _deliver_batches(self, batch: list[tuple[Operator, SmppConnection, DeliverSm]],
                               ) -> None:
        """Handle a batch of deliver_sm, per operator: one lookup, one receipt write
        and one event write, then all the responses."""
        by_operator: dict[str, tuple[Operator, list[tuple[SmppConnection, DeliverSm]]]] = {}
        for op, conn, pdu in batch:
            by_operator.setdefault(op.id, (op, []))[1].append((conn, pdu))
        for op, items in by_operator.values():
            await self._deliver_batch(op, items)

    async def _deliver_batch(self, op: Operator,
                             items: list[tuple[SmppConnection, DeliverSm]]) -> None:
        receipts: list[tuple[SmppConnection, DeliverSm, Receipt]] = []
        mos: list[tuple[SmppConnection, DeliverSm]] = []
        for conn, pdu in items:
            if not pdu.esm_class & (ESM_DELIVERY_RECEIPT | ESM_INTERMEDIATE_NOTIFICATION):
                mos.append((conn, pdu))
                continue
            try:
                receipts.append((conn, pdu, parse_receipt(pdu.short_message, pdu.tlvs)))
            except ReceiptError as exc:
                self._unparseable(op.id, exc.field)
                self.metrics.unmatched.labels(op.id).inc()
                conn.respond(pdu, pdu.response(Status.ESME_ROK))
        # Both writes queued together: one group commit (or concurrent publishes).
        await asyncio.gather(self._mos(op, mos), self._receipts(op, receipts))

    def _unparseable(self, operator_id: str, field: str) -> None:
        """One WARNING per operator per UNPARSEABLE_LOG_PERIOD, with how many were not
        logged since: a hostile SMSC must not flood the log."""
        now = self.clock()
        last, suppressed = self._unparseable_logged.get(operator_id, (None, 0))
        if last is not None and now - last < UNPARSEABLE_LOG_PERIOD:
            self._unparseable_logged[operator_id] = (last, suppressed + 1)
            return
        self._unparseable_logged[operator_id] = (now, 0)
        log.warning("unparseable receipt", extra={
            "event": "receipt_unparseable", "operator": operator_id, "field": field,
            "suppressed": suppressed})

    async def _mos(self, op: Operator, mos: list[tuple[SmppConnection, DeliverSm]]) -> None:
        """MO messages of a batch: the parts of incomplete ones written to the store,
        one event write for every message that is whole, then every deliver_sm
        answered (a transient error if a write failed: the SMSC sends them again)."""
        if not mos:
            return
        now = self.clock()
        events: list[dict[str, Any]] = []
        whole: list[Key] = []  # keys of the concatenated messages among them
        parts: list[MoPartRecord] = []  # parts of messages still incomplete
        dropped: list[Key] = []
        for _, pdu in mos:
            added = self.mo_parts.add(op.id, pdu, now)
            dropped += added.dropped
            if added.body is None:
                if added.part is not None:
                    parts.append(added.part)
                continue
            if added.key is not None:
                whole.append(added.key)
            events.append(self._mo_event(op.id, pdu.source_addr, pdu.destination_addr,
                                         pdu.data_coding, added.body, now))
        status = Status.ESME_ROK
        try:
            # A part is durable before its deliver_sm_resp: the SMSC will not resend it.
            await self.store.put_mo_parts(parts)
            if events:
                await self.sink.publish_many("mo", events)
        except Exception:
            log.exception("MO handling failed", extra={"event": "deliver_failed",
                                                        "operator": op.id})
            status = Status.ESME_RX_T_APPN
        else:
            await self._forget_mo(whole, dropped)
            if events:
                self.children.get(self.metrics.mo, op.id).inc(len(events))
        for conn, pdu in mos:
            conn.respond(pdu, pdu.response(status))

    async def restore_mo_parts(self) -> int:
        """At start: put back the stored parts of incomplete MO messages, and publish
        those a crash left whole (their last part was stored, its event not out).
        Returns how many parts were restored."""
        stored = await self.store.load_mo_parts()
        events: list[tuple[str, dict[str, Any]]] = []
        whole: list[Key] = []
        dropped: list[Key] = []
        for part in stored:
            key, body, pushed_out = self.mo_parts.restore(part)
            dropped += pushed_out
            if body is not None:
                whole.append(key)
                events.append((part.operator_id, self._mo_event(
                    part.operator_id, part.source, part.destination, part.data_coding, body,
                    part.at)))
        if events:  # one write for all of them
            await self.sink.publish_many("mo", [event for _, event in events])
        for operator_id, _ in events:
            self.children.get(self.metrics.mo, operator_id).inc()
        await self._forget_mo(whole, dropped)
        return len(stored)

    async def _forget_mo(self, whole: list[Key], dropped: list[Key]) -> None:
        for key in whole:
            self.mo_parts.forget(key)
        if whole or dropped:
            try:
                await self.store.drop_mo_parts(whole + dropped)
            except Exception:  # left in the table: restored (and published once more) later
                log.exception("MO parts not forgotten", extra={"event": "mo_parts_drop_failed"})

    def _mo_event(self, operator_id: str, source: str, destination: str, data_coding: int,
                  body: bytes, at: float) -> dict[str, Any]:
        return {
            "schema": MO_SCHEMA, "operator_id": operator_id, "source": source,
            "destination": destination, "data_coding": data_coding,
            "text": decode_text(body, data_coding), "at": at,
        }

    async def _receipts(self, op: Operator,
                        receipts: list[tuple[SmppConnection, DeliverSm, Receipt]]) -> None:
        """Receipts of a batch: matched, or durable in the orphan table (a receipt that
        came before its submit_sm_resp, or on another bind), then every deliver_sm
        answered: OK, or a transient error if a write failed (the SMSC redelivers)."""
        if not receipts:
            return
        status = Status.ESME_ROK
        try:
            results = await self.matcher.on_receipts(op.id, [r for _, _, r in receipts],
                                                     op.config.receipt_id)
            matched = [result for result in results if result is not None]
            if len(matched) < len(results):
                self.metrics.unmatched.labels(op.id).inc(len(results) - len(matched))
            await self.receipts_matched(op, matched)
        except Exception:
            log.exception("receipt handling failed", extra={"event": "deliver_failed",
                                                            "operator": op.id})
            status = Status.ESME_RX_T_APPN  # the SMSC will redeliver
        for conn, pdu, _ in receipts:
            conn.respond(pdu, pdu.response(status))

    async def receipts_matched(self, op: Operator, results: Sequence[MatchResult]) -> None:
        """Count and publish matched receipts: those of deliver_sm just received, and
        held ones whose submit_sm_resp has now been recorded."""
        if not results:
            return
        now = self.clock()
        events = []
        by_part_state: Counter[str] = Counter()
        by_final_state: Counter[str] = Counter()
        for result in results:
            # Labelled with the part's state (DELIVERED, UNDELIVERABLE, ...): the words the
            # API, the events and smppd_messages_final use, not the SMSC's stat (DELIVRD).
            by_part_state[result.part_state] += 1
            if result.final:
                by_final_state[result.message_state] += 1
            event = {
                "schema": DLR_SCHEMA, "message_id": result.message_id, "operator_id": op.id,
                "part": result.part, "parts": result.total, "state": result.message_state,
                "final": result.final, "stat": result.stat, "err": result.err, "at": now,
            }
            network_error = result.receipt.network_error_fields
            if network_error is not None:
                event["network_error"] = network_error
            events.append(event)
        for state, count in by_part_state.items():  # per batch: an inc() takes a lock
            self.children.get(self.metrics.receipts, op.id, state).inc(count)
        for state, count in by_final_state.items():
            self.children.get(self.metrics.final_states, op.id, state).inc(count)
        op.counters["receipts"] += len(results)
        await self.sink.publish_many("dlr", events)
