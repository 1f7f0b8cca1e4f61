"""The correlation store written once: group commit and the CorrelationStore methods.

``GroupCommitStore`` is what SQLite (``correlation.sqlite_store``) and PostgreSQL
(``correlation.pg_store``) share. Every call but the lookups and the reads beside the
writer queues an operation and awaits a future. One flusher task takes everything
queued so far as one batch and has the backend run it in one transaction, so a burst
of N accepts costs one commit, not N. Calls return after the commit that includes
them (so a kill -9 loses nothing a call acknowledged) and run in the order they were
called (reads too, so a read sees earlier writes). If one operation fails, the
backend reruns the batch one operation per transaction, so only the bad call fails.

A backend is a subclass. It supplies the connections (``_connect``, ``_disconnect``),
how a batch runs (``_run_calls``, ``_after_batch``), where a read beside the writer
runs (``_beside``), the tiers of its part lookups (``_submitting``, ``_recent``,
``_find_parts``), and its operations (``_ops``, a module of its SQL: ``sqlite_ops``,
``pg_ops``). An operation is ``fn(conn, *args)`` on the backend's connection; the
arguments are plain Python values (JSON texts where the value is JSON), and it
returns records (``correlation.store``), or rows the methods here decode.

Receipt lookups skip the queue: the memory of submits (``_recent``, preferred key
only) answers in the caller's step; the rest go to ``_find_parts`` together.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

from correlation.batching import ReceiptRow
from correlation.store import (
    IDEMPOTENCY_WINDOW,
    MESSAGE_FIELDS,
    EventRecord,
    IdempotencyRecord,
    MessageRecord,
    MoPartRecord,
    OutboxDepth,
    PartRef,
    Queued,
    WebhookRecord,
    WebhookTargets,
)

Op = Callable[..., Any]  # fn(conn, *args): sync for SQLite, a coroutine for PostgreSQL
Call = tuple[Op, tuple[Any, ...]]
Result = tuple[bool, Any]  # (True, its value) or (False, the exception it raised)
# (message_id, part, total, operator_id, smsc_id, smsc_key, at): one submitted part.
SubmitRow = tuple[str, int, int, str, str, str, float]


class StoreOps(Protocol):
    """The operations of a backend's module, by the methods that queue them."""

    accept: Op  # (rows of MESSAGE_FIELDS)
    accept_new: Op  # (rows) -> the ids stored, in order
    pending: Op  # () -> [MessageRecord]
    accepted_after: Op  # (operator_id, created_at, message_id, limit) -> [(record, parts)]
    accepted_backlog: Op  # () -> [(operator_id, created_at)]
    accepted_ids: Op  # (operator_id, created_before, limit) -> [(message_id, created_at)]
    set_state: Op  # (message_id, state, at, reason, command_status, attempts)
    get_message: Op  # (message_id) -> dict | None
    find_messages: Op  # ([message_id]) -> [MessageRecord]
    submitted: Op  # ([SubmitRow])
    receipt: Op  # (message_id, part, state, stat, err, at) -> state | None
    receipts: Op  # ([ReceiptRow]) -> [state | None]
    count_orphans: Op  # () -> int
    put_orphan: Op  # (operator_id, [key], receipt JSON, at)
    drop_orphan: Op  # (operator_id, key, hold_id) -> how many were dropped
    widen_orphan: Op  # (operator_id, key, hold_id, [more keys])
    take_orphans: Op  # (operator_id, key) -> [receipt JSON], oldest first
    take_orphans_many: Op  # (operator_id, [key]) -> {key: [receipt JSON]}
    put_mo_parts: Op  # ([MoPartRecord])
    drop_mo_parts: Op  # ([(operator_id, source, reference)])
    load_mo_parts: Op  # () -> rows of MoPartRecord's fields, oldest first
    ping: Op  # ()
    idem_claim: Op  # (scope, key, fingerprint, at, expired_before) -> (fp, JSON | None, at)
    idem_complete: Op  # (scope, key, fingerprint, response JSON)
    idem_release: Op  # (scope, key, fingerprint)
    store_event: Op  # (kind, payload JSON, at) -> id
    store_events: Op  # (kind, [payload JSON], at) -> [id]
    list_events: Op  # (kind, after_id, limit, [tenant] | None) -> [(id, kind, JSON, at)]
    # (kind, [payload JSON], at, WebhookTargets, lease until | None) -> Queued
    store_events_with_webhooks: Op
    webhook_enqueue: Op  # (kind, [payload JSON], at, WebhookTargets, until | None) -> Queued
    webhook_claim: Op  # (now, limit, until) -> [WebhookRecord]
    webhook_delivered: Op  # ([id])
    webhook_retry: Op  # (id, next_at, error)
    webhook_kill: Op  # (id, at, error)
    webhook_release: Op  # ([id], now)
    webhook_dead: Op  # (after_id, limit, [tenant] | None) -> [WebhookRecord]
    webhook_replay: Op  # (id, now) -> bool
    webhook_purge_dead: Op  # (died before, limit) -> how many deleted
    webhook_depth: Op  # () -> (waiting, oldest, dead)


def message_row(message: MessageRecord) -> tuple[Any, ...]:
    """The message's values in the tables' column order (MESSAGE_FIELDS)."""
    return tuple(getattr(message, f) for f in MESSAGE_FIELDS)


def _texts(payloads: Sequence[dict[str, Any]]) -> list[str]:
    return [json.dumps(payload) for payload in payloads]


class GroupCommitStore(ABC):
    """A CorrelationStore over a backend's operations, with group commit (see the
    module docstring)."""

    # Also says this process is the store's only writer: it then counts the orphan
    # receipts stored, and while there are none a submit skips the orphan query.
    backlog_is_private: bool
    _ops: ClassVar[StoreOps]

    def __init__(self, *, clock: Callable[[], float], max_batch: int) -> None:
        self._clock = clock
        self._max_batch = max_batch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: list[tuple[Op, tuple[Any, ...], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._orphans: int | None = None  # orphans stored, if only this process writes

    # -- the backend -------------------------------------------------------------------

    @abstractmethod
    async def _connect(self) -> None:
        """Open the connections, the schema created or migrated."""

    @abstractmethod
    async def _disconnect(self) -> None:
        """Release the connections (nothing is queued any more)."""

    @abstractmethod
    async def _run_calls(self, calls: list[Call]) -> list[Result]:
        """Run the calls in order in one transaction; if one fails, each in its own, so
        only the bad ones fail. Raises only if the connection itself failed."""

    @abstractmethod
    async def _after_batch(self, calls: list[Call], results: list[Result]) -> None:
        """After each batch, before its callers resume."""

    @abstractmethod
    async def _beside(self, op: Op, args: tuple[Any, ...]) -> Any:
        """``op`` beside the writer: it sees what is committed, without waiting for
        the queued writes."""

    @abstractmethod
    def _submitting(self, rows: Sequence[SubmitRow]) -> None:
        """Parts queued for the writer this step: ``_recent`` finds them from now on."""

    @abstractmethod
    def _recent(self, operator_id: str, smsc_key: str) -> PartRef | None:
        """The part submitted under the key, if the memory of submits holds it."""

    @abstractmethod
    async def _find_parts(
        self, operator_id: str, key_sets: list[Sequence[str]]
    ) -> list[PartRef | None]:
        """Per key set, the newest part submitted under its first key that has one."""

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        await self._connect()
        self._loop = asyncio.get_running_loop()
        if self.backlog_is_private:  # beside the writer: no commit for it
            self._orphans = await self._read(self._ops.count_orphans)

    async def close(self) -> None:
        if self._loop is None:
            return
        while self._flusher is not None:
            await asyncio.shield(self._flusher)
        self._loop = None
        await self._disconnect()

    # -- group commit ------------------------------------------------------------------

    def _call(self, op: Op, *args: Any) -> asyncio.Future[Any]:
        """Queue ``op(conn, *args)`` for the writer; the future resolves after commit."""
        if self._loop is None:
            raise RuntimeError("store is not open")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.append((op, args, future))
        if self._flusher is None:
            self._flusher = self._loop.create_task(self._flush())
        return future

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                calls = [(op, args) for op, args, _ in batch]
                try:
                    results = await self._run_calls(calls)
                except Exception as exc:  # the connection itself failed: fail the whole batch
                    results = [(False, exc)] * len(batch)
                await self._after_batch(calls, results)
                for (_, _, future), (ok, value) in zip(batch, results, strict=True):
                    if future.cancelled():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._flusher = None

    async def _read(self, op: Op, *args: Any) -> Any:
        if self._loop is None:
            raise RuntimeError("store is not open")
        return await self._beside(op, args)

    # -- messages ----------------------------------------------------------------------

    async def accept(self, messages: Sequence[MessageRecord]) -> None:
        await self._call(self._ops.accept, [message_row(m) for m in messages])

    async def accept_new(self, messages: Sequence[MessageRecord]) -> list[str]:
        stored: list[str] = await self._call(
            self._ops.accept_new, [message_row(m) for m in messages])
        return stored

    async def pending_messages(self) -> list[MessageRecord]:
        found: list[MessageRecord] = await self._call(self._ops.pending)
        return found

    async def accepted_after(
        self, operator_id: str | None, after: tuple[float, str] | None, limit: int
    ) -> list[tuple[MessageRecord, frozenset[int]]]:
        # Beside the writer: committed messages only, without waiting for the writes
        # queued meanwhile (a refill must not wait for a lagging writer).
        cursor = after if after is not None else (float("-inf"), "")
        found: list[tuple[MessageRecord, frozenset[int]]] = await self._read(
            self._ops.accepted_after, operator_id, *cursor, limit)
        return found

    async def accepted_backlog(self) -> dict[str | None, float]:
        rows: list[tuple[str | None, float]] = await self._call(self._ops.accepted_backlog)
        return dict(rows)

    async def accepted_ids(
        self, operator_id: str, created_before: float, limit: int
    ) -> list[tuple[str, float]]:
        rows: list[tuple[str, float]] = await self._call(
            self._ops.accepted_ids, operator_id, created_before, limit)
        return rows

    async def set_message_state(
        self, message_id: str, state: str, *, at: float, reason: str | None = None,
        command_status: int | None = None, attempts: int | None = None,
    ) -> None:
        await self._call(self._ops.set_state, message_id, state, at, reason, command_status,
                         attempts)

    async def get_message(self, message_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self._call(self._ops.get_message, message_id)
        return found

    async def find_messages(self, message_ids: Sequence[str]) -> dict[str, MessageRecord]:
        if not message_ids:
            return {}
        found: list[MessageRecord] = await self._call(self._ops.find_messages,
                                                      list(message_ids))
        return {record.message_id: record for record in found}

    # -- parts and receipts ------------------------------------------------------------

    async def record_submitted(self, message_id: str, part: int, total: int,
                               operator_id: str, smsc_id: str, smsc_key: str,
                               at: float) -> None:
        await self.record_submitted_many(
            [(message_id, part, total, operator_id, smsc_id, smsc_key, at)])

    async def record_submitted_many(self, rows: Sequence[SubmitRow]) -> None:
        future = self._call(self._ops.submitted, list(rows))
        self._submitting(rows)  # findable before this returns, as the protocol asks
        await future

    async def lookup_part(self, operator_id: str, smsc_key: str, *more_keys: str) -> PartRef | None:
        return (await self.lookup_parts(operator_id, [(smsc_key, *more_keys)]))[0]

    async def lookup_parts(
        self, operator_id: str, key_sets: Sequence[Sequence[str]]
    ) -> list[PartRef | None]:
        # Only the preferred key may answer from memory: with "auto" ids, a recent
        # submit whose id equals another reading of this receipt's id must not win
        # over the preferred reading stored already.
        answers = [self._recent(operator_id, keys[0]) if keys else None for keys in key_sets]
        unanswered = [i for i, ref in enumerate(answers) if ref is None and key_sets[i]]
        if unanswered:
            found = await self._find_parts(operator_id, [key_sets[i] for i in unanswered])
            for i, ref in zip(unanswered, found, strict=True):
                answers[i] = ref
        return answers

    async def record_receipt(self, message_id: str, part: int, state: str, stat: str | None,
                             err: str | None, at: float) -> str | None:
        result: str | None = await self._call(
            self._ops.receipt, message_id, part, state, stat, err, at)
        return result

    async def record_receipts(self, rows: Sequence[ReceiptRow]) -> list[str | None]:
        if not rows:
            return []
        result: list[str | None] = await self._call(self._ops.receipts, list(rows))
        return result

    # -- orphan receipts ---------------------------------------------------------------

    async def put_orphan(
        self, operator_id: str, smsc_keys: Sequence[str], receipt: dict[str, Any], at: float
    ) -> None:
        await self.put_orphans(operator_id, [(smsc_keys, receipt, at)])

    async def put_orphans(
        self, operator_id: str, orphans: Sequence[tuple[Sequence[str], dict[str, Any], float]]
    ) -> None:
        if self._orphans is not None:  # counted when queued, so a submit from now on looks
            self._orphans += len(orphans)
        await asyncio.gather(*[
            self._call(self._ops.put_orphan, operator_id, list(keys), json.dumps(receipt), at)
            for keys, receipt, at in orphans])

    def _taken(self, count: int) -> None:
        if self._orphans is not None:
            self._orphans = max(0, self._orphans - count)

    async def drop_orphan(self, operator_id: str, smsc_key: str, hold_id: str) -> None:
        self._taken(await self._call(self._ops.drop_orphan, operator_id, smsc_key, hold_id))

    async def widen_orphan(
        self, operator_id: str, smsc_key: str, hold_id: str, more_keys: Sequence[str]
    ) -> None:
        await self._call(self._ops.widen_orphan, operator_id, smsc_key, hold_id,
                         list(more_keys))

    async def take_orphans(self, operator_id: str, smsc_key: str) -> list[dict[str, Any]]:
        if self._orphans == 0:
            return []
        texts: list[str] = await self._call(self._ops.take_orphans, operator_id, smsc_key)
        self._taken(len(texts))
        return [json.loads(text) for text in texts]

    async def take_orphans_many(
        self, operator_id: str, smsc_keys: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        if self._orphans == 0:  # the usual case: no receipt is waiting in the table
            return {}
        found: dict[str, list[str]] = await self._call(
            self._ops.take_orphans_many, operator_id, list(smsc_keys))
        self._taken(sum(len(texts) for texts in found.values()))
        return {key: [json.loads(text) for text in texts] for key, texts in found.items()}

    # -- MO parts ----------------------------------------------------------------------

    async def put_mo_parts(self, parts: Sequence[MoPartRecord]) -> None:
        if parts:
            await self._call(self._ops.put_mo_parts, list(parts))

    async def drop_mo_parts(self, keys: Sequence[tuple[str, str, int]]) -> None:
        if keys:
            await self._call(self._ops.drop_mo_parts, list(keys))

    async def load_mo_parts(self) -> list[MoPartRecord]:
        rows: list[Sequence[Any]] = await self._call(self._ops.load_mo_parts)
        return [MoPartRecord(*row) for row in rows]

    # -- idempotency and events --------------------------------------------------------

    async def ping(self) -> None:
        await self._read(self._ops.ping)  # beside the writer: not behind the queued writes

    async def idempotency_claim(self, scope: str, key: str, fingerprint: str,
                                window: float = IDEMPOTENCY_WINDOW) -> IdempotencyRecord:
        now = self._clock()
        found: tuple[str, str | None, float] = await self._call(
            self._ops.idem_claim, scope, key, fingerprint, now, now - window)
        held, response, created_at = found
        return IdempotencyRecord(held, None if response is None else json.loads(response),
                                 created_at)

    async def idempotency_complete(self, scope: str, key: str, fingerprint: str,
                                   response: list[dict[str, Any]]) -> None:
        await self._call(self._ops.idem_complete, scope, key, fingerprint, json.dumps(response))

    async def idempotency_release(self, scope: str, key: str, fingerprint: str) -> None:
        await self._call(self._ops.idem_release, scope, key, fingerprint)

    async def store_event(self, kind: str, payload: dict[str, Any]) -> int:
        event_id: int = await self._call(
            self._ops.store_event, kind, json.dumps(payload), self._clock())
        return event_id

    async def store_events(self, kind: str, payloads: Sequence[dict[str, Any]]) -> list[int]:
        if not payloads:
            return []
        ids: list[int] = await self._call(
            self._ops.store_events, kind, _texts(payloads), self._clock())
        return ids

    async def list_events(
        self, kind: str | None = None, after_id: int = 0, limit: int = 100, *,
        tenants: Sequence[str] | None = None,
    ) -> list[EventRecord]:
        rows: list[tuple[int, str, str, float]] = await self._call(
            self._ops.list_events, kind, after_id, limit,
            None if tenants is None else list(tenants))
        return [
            EventRecord(id=i, kind=k, payload=json.loads(p), created_at=c) for i, k, p, c in rows
        ]

    # -- the webhook outbox ------------------------------------------------------------

    async def store_events_with_webhooks(
        self, kind: str, payloads: Sequence[dict[str, Any]], targets: WebhookTargets, *,
        lease: float | None = None,
    ) -> Queued:
        return await self._outbox_write(self._ops.store_events_with_webhooks, kind, payloads,
                                        targets, lease)

    async def webhook_enqueue(
        self, kind: str, payloads: Sequence[dict[str, Any]], targets: WebhookTargets, *,
        lease: float | None = None,
    ) -> Queued:
        return await self._outbox_write(self._ops.webhook_enqueue, kind, payloads, targets,
                                        lease)

    async def _outbox_write(
        self, op: Callable[..., Queued], kind: str, payloads: Sequence[dict[str, Any]],
        targets: WebhookTargets, lease: float | None,
    ) -> Queued:
        """One outbox write; rows taken for this process's lease when ``lease`` is set."""
        if not payloads:
            return Queued(0, [], [])
        now = self._clock()
        queued: Queued = await self._call(op, kind, _texts(payloads), now, targets,
                                          None if lease is None else now + lease)
        return queued

    async def webhook_claim(self, now: float, limit: int, lease: float) -> list[WebhookRecord]:
        due: list[WebhookRecord] = await self._call(
            self._ops.webhook_claim, now, limit, now + lease)
        return sorted(due, key=lambda record: record.id)

    async def webhook_delivered(self, ids: Sequence[int]) -> None:
        if ids:
            await self._call(self._ops.webhook_delivered, list(ids))

    async def webhook_retry(self, delivery_id: int, next_at: float, error: str) -> None:
        await self._call(self._ops.webhook_retry, delivery_id, next_at, error)

    async def webhook_kill(self, delivery_id: int, at: float, error: str) -> None:
        await self._call(self._ops.webhook_kill, delivery_id, at, error)

    async def webhook_release(self, ids: Sequence[int], now: float) -> None:
        if ids:
            await self._call(self._ops.webhook_release, list(ids), now)

    async def webhook_dead(self, after_id: int = 0, limit: int = 100, *,
                           tenants: Sequence[str] | None = None) -> list[WebhookRecord]:
        dead: list[WebhookRecord] = await self._call(
            self._ops.webhook_dead, after_id, limit, None if tenants is None else list(tenants))
        return dead

    async def webhook_replay(self, delivery_id: int, now: float) -> bool:
        replayed: bool = await self._call(self._ops.webhook_replay, delivery_id, now)
        return replayed

    async def webhook_purge_dead(self, before: float, limit: int = 10_000) -> int:
        deleted: int = await self._call(self._ops.webhook_purge_dead, before, limit)
        return deleted

    async def webhook_depth(self) -> OutboxDepth:
        waiting, oldest, dead = await self._call(self._ops.webhook_depth)
        return OutboxDepth(waiting or 0, oldest, dead or 0)
