"""Accepted messages not in an operator's queue: queued when there is room.

Embedded mode (a store whose backlog is this process's alone): an operator's queue
holds at most its queue_limit parts; messages accepted beyond (durable in the
store) wait in a spill file and join the queue as it drains. After a restart what
was accepted and not yet submitted is read back from the store; with active/standby
the lease holder takes over what a peer accepted (``queue_stored``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, Protocol

from correlation.store import ACCEPTED, FAILED, CorrelationStore, MessageRecord
from smppd.link.operator import Operator
from smppd.link.parts import OutboundPart
from smppd.link.spill import SpillFile
from smppd.metric_children import MetricChildren
from smppd.metrics import Metrics
from smppd.protocol.split import Part, SplitError

# Messages of the previous run read from the store at once (each read waits for the
# GIL a few times, ~5 ms each while the loop is busy: few large reads), and parts
# queued between two looks at the sockets.
REFILL_PAGE = 5000
REFILL_CHUNK = 500


class Queueing(Protocol):
    """What the backlog asks of the dispatcher: stored messages made into queued parts."""

    def split(self, op: Operator, body: bytes, data_coding: int) -> list[Part]: ...

    def encode(self, record: MessageRecord, op: Operator, parts: Iterable[Part],
               skip: frozenset[int] = ...) -> list[OutboundPart] | None: ...

    def queue(self, record: MessageRecord, op: Operator, parts: Iterable[Part],
              skip: frozenset[int] = ...) -> None: ...

    async def finish(self, op: Operator, message_id: str, state: str, reason: str,
                     status: int | None) -> None: ...

    def accept_after(self, at: float) -> None: ...


class Backlog:
    def __init__(self, queueing: Queueing, store: CorrelationStore, metrics: Metrics,
                 children: MetricChildren, clock: Callable[[], float], *,
                 operators: Callable[[], Mapping[str, Operator]],
                 spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]) -> None:
        self.queueing = queueing
        self.store = store
        self.metrics = metrics
        self.children = children
        self.clock = clock
        self.operators = operators
        self._spawn = spawn
        self.spill_backlog = bool(getattr(store, "backlog_is_private", False))
        self.spill_directory: str | None = getattr(store, "directory", None)  # spill files
        self._refilling: set[Operator] = set()

    def queue_or_spill(self, batch: list[tuple[MessageRecord, Operator, list[Part]]]) -> None:
        """Queue an accept batch; in embedded mode an operator's share of it (all of
        it) waits outside the queue, encoded in the operator's spill file, while
        others wait there (or in the store, after a restart), or when it would take
        the queue past queue_limit. Only here and in ``_refill`` do parts go into the
        spill file or from it to the queue, each time without an await in between: so
        nothing is taken twice or left behind, and the order is kept."""
        queue = self.queueing.queue
        if not self.spill_backlog:
            for record, op, parts in batch:
                queue(record, op, parts)
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
                    queue(record, op, parts)
                continue
            assert op.spill_file is not None
            for record, _, parts in share:
                encoded = self.queueing.encode(record, op, parts)
                if encoded is not None:
                    op.spill_file.append(encoded)
                    self.children.get(self.metrics.accepted, op.id).inc()
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
            while op.spilled and self.operators().get(op.id) is op:
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
                self.queueing.queue(record, op, unsent)
            op.backlog_cursor = (record.created_at, record.message_id)
        if len(rows) < wanted:
            op.backlog_end = None
        return len(rows)

    def _stored_parts(self, record: MessageRecord, op: Operator) -> list[Part] | None:
        """A stored message's parts, or None (and the message FAILED) if the
        operator's settings can no longer split it."""
        try:
            return self.queueing.split(op, record.body, record.data_coding)
        except SplitError as exc:
            self._spawn(self.queueing.finish(op, record.message_id, FAILED, str(exc), None))
            return None

    async def resume_pending(self) -> int:
        """After a restart: queue again what was accepted and not yet submitted; in
        embedded mode up to each operator's queue limit, the rest by refills. Returns
        how many messages were queued."""
        if not self.spill_backlog or any(op.queued_ids is not None
                                         for op in self.operators().values()):
            return await self._resume_all()
        count = 0
        for operator_id, newest in (await self.store.accepted_backlog()).items():
            # Messages accepted from now on must come after the backlog, even if the
            # clock stepped back across the restart.
            self.queueing.accept_after(newest)
            op = self.operators().get(operator_id or "")
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
            op = self.operators().get(record.operator_id or "")
            if op is None:
                await self.store.set_message_state(record.message_id, "FAILED",
                                                   reason="operator no longer configured",
                                                   at=self.clock())
                continue
            stored = await self.store.get_message(record.message_id) or {}
            submitted = frozenset(p["part"] for p in stored.get("parts", ())
                                  if p.get("smsc_id"))
            parts = self.queueing.split(op, record.body, record.data_coding)
            self.queueing.queue(record, op, parts, skip=submitted)
            count += 1
        return count

    # -- active/standby (smppd.cluster.leader) --

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
            parts = self.queueing.split(op, record.body, record.data_coding)
            self.queueing.queue(record, op, parts, skip=submitted)
            count += 1
        return count
