"""The distributed correlation store: PostgreSQL (the truth) + a Redis hot index.

Same promises as ``SqliteStore`` (see ``correlation.store``), shared by every replica:

* Every call but the lookups queues an operation and awaits a future. One writer
  task takes everything queued so far as one batch and runs it on one connection in
  one transaction (a run of calls of one kind goes through one statement over
  ``unnest``-ed arrays, or ``executemany``), so a burst of N accepts costs one commit
  and one statement, not N. Calls return after the commit that includes them
  and run in the order they were called (reads too, so a read sees earlier writes).
  If one operation fails, the batch is rolled back and rerun one operation per
  transaction, so only the bad call fails.
* ``lookup_part`` and ``lookup_parts`` are the receipt hot path and skip the queue:
  parts queued but not yet committed (in this process) -> Redis -> an index lookup on
  ``smpp.message_correlations (operator_id, smsc_key)``. Committed submits are SET in
  Redis in one pipeline per batch, before their callers resume. Redis down: lookups
  go to PostgreSQL.
* Idempotency keys live in PostgreSQL only: a claim is a write (first writer wins,
  across replicas), so a cache in front of it would save nothing.

The schema comes from ``correlation.migrations`` (``open`` runs the migrations, which
is idempotent and safe from several replicas). ``purge_older_than`` is the retention
job. Timestamps are epoch seconds in Python and timestamptz in the tables.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from correlation.batching import ReceiptRow
from correlation.migrate import migrate
from correlation.pg_ops import (
    _LOAD_MO_PARTS,
    _accept,
    _accept_new,
    _drop_mo_parts,
    _execute,
    _fetch,
    _get_message,
    _idem_claim,
    _idem_complete,
    _idem_release,
    _list_events,
    _message_row,
    _Op,
    _put_mo_parts,
    _put_orphan,
    _receipt,
    _receipts,
    _run_one,
    _run_ops,
    _set_state,
    _store_event,
    _store_events,
    _store_events_with_webhooks,
    _Submit,
    _submits_of,
    _submitted,
    _submitted_rows,
    _webhook_delivered,
    _webhook_enqueue,
)
from correlation.pg_retention import (
    purge_older_than,
)
from correlation.pg_sql import (
    _DROP_ORPHAN,
    _MESSAGE_FIELDS,
    _SELECT_MESSAGES,
    _SELECT_PENDING,
    _TAKE_ORPHANS,
    _TAKE_ORPHANS_MANY,
    _WEBHOOK_CLAIM,
    _WEBHOOK_DEAD,
    _WEBHOOK_DEPTH,
    _WEBHOOK_KILL,
    _WEBHOOK_RELEASE,
    _WEBHOOK_REPLAY,
    _WEBHOOK_RETRY,
    _WIDEN_ORPHAN,
    LOOKUP_MANY_SQL,
    LOOKUP_SQL,
    _select_list,
)
from correlation.redis_index import DEFAULT_PREFIX, DEFAULT_TTL_SECONDS, RedisIndex
from correlation.store import (
    ACCEPTED,
    IDEMPOTENCY_WINDOW,
    EventRecord,
    IdempotencyRecord,
    MessageRecord,
    MoPartRecord,
    OutboxDepth,
    PartRef,
    WebhookRecord,
    WebhookTargets,
)

log = logging.getLogger(__name__)


class PgStore:
    """CorrelationStore over PostgreSQL with an optional Redis hot index (see the
    module docstring)."""

    backlog_is_private = False  # replicas share the tables: nothing is left unqueued

    def __init__(
        self,
        dsn: str,
        redis_url: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        redis_prefix: str = DEFAULT_PREFIX,
        redis_ttl_seconds: int = DEFAULT_TTL_SECONDS,
        pool_size: int = 8,
        max_batch: int = 2048,
        migrate_on_open: bool = True,
    ) -> None:
        self._dsn = dsn
        self._clock = clock
        self._pool_size = pool_size
        self._max_batch = max_batch
        self._migrate_on_open = migrate_on_open
        self._redis = (
            RedisIndex(redis_url, prefix=redis_prefix, ttl_seconds=redis_ttl_seconds)
            if redis_url is not None
            else None
        )
        self._pool: asyncpg.Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: list[tuple[_Op, tuple[Any, ...], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # Submits queued but not committed yet: findable at once, as the protocol asks.
        self._inflight: dict[tuple[str, str], PartRef] = {}

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._migrate_on_open:
            await migrate(self._dsn)
        self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self._pool_size)
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        if self._loop is None:
            return
        while self._flusher is not None:
            await asyncio.shield(self._flusher)
        self._loop = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._redis is not None:
            await self._redis.close()

    async def purge_older_than(self, days: float) -> dict[str, int]:
        """The retention job on this store's pool (see ``purge_older_than``)."""
        return await purge_older_than(self.pool, days, now=self._clock())

    # -- group commit --------------------------------------------------------------------

    def _call(self, op: _Op, *args: Any) -> asyncio.Future[Any]:
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
                    results = await self._run_batch(calls)
                except Exception as exc:  # the connection itself failed: fail the whole batch
                    results = [(False, exc)] * len(batch)
                # Index before answering: once record_submitted returns, every replica
                # finds the part in Redis (when it is up).
                await self._index_submits(calls, results)
                for (_, _, future), (ok, value) in zip(batch, results, strict=True):
                    if future.cancelled():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._flusher = None

    async def _run_batch(self, calls: list[tuple[_Op, tuple[Any, ...]]]) -> list[tuple[bool, Any]]:
        async with self.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    return await _run_ops(conn, calls)
            except Exception:
                log.debug("batch rolled back; rerunning its operations one by one")
            return [await _run_one(conn, op, args) for op, args in calls]

    async def _index_submits(
        self, calls: list[tuple[_Op, tuple[Any, ...]]], results: list[tuple[bool, Any]]
    ) -> None:
        """Committed submits go to Redis, then leave the in-flight map (PostgreSQL has them)."""
        committed: list[_Submit] = []
        for (op, args), (ok, _) in zip(calls, results, strict=True):
            submits = _submits_of(op, args)
            if ok:
                committed += submits
            for operator_id, smsc_key, ref in submits:
                if self._inflight.get((operator_id, smsc_key)) == ref:
                    del self._inflight[(operator_id, smsc_key)]
        if self._redis is not None:
            await self._redis.put_many(committed)

    # -- messages ------------------------------------------------------------------------

    async def accept(self, messages: Sequence[MessageRecord]) -> None:
        await self._call(_accept, [_message_row(m) for m in messages])

    async def accept_new(self, messages: Sequence[MessageRecord]) -> list[str]:
        stored: list[str] = await self._call(_accept_new, [_message_row(m) for m in messages])
        return stored

    async def pending_messages(self) -> list[MessageRecord]:
        rows: list[asyncpg.Record] = await self._call(_fetch, _SELECT_PENDING, ACCEPTED)
        return [MessageRecord(**dict(row)) for row in rows]

    async def set_message_state(
        self,
        message_id: str,
        state: str,
        *,
        at: float,
        reason: str | None = None,
        command_status: int | None = None,
        attempts: int | None = None,
    ) -> None:
        await self._call(_set_state, message_id, state, at, reason, command_status, attempts)

    async def get_message(self, message_id: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self._call(_get_message, message_id)
        return result

    # -- parts and receipts --------------------------------------------------------------

    async def record_submitted(
        self,
        message_id: str,
        part: int,
        total: int,
        operator_id: str,
        smsc_id: str,
        smsc_key: str,
        at: float,
    ) -> None:
        future = self._call(_submitted, message_id, part, total, operator_id, smsc_id, smsc_key, at)
        self._inflight[(operator_id, smsc_key)] = PartRef(message_id, part, total)
        await future

    async def record_submitted_many(
        self, rows: Sequence[tuple[str, int, int, str, str, str, float]]
    ) -> None:
        """``record_submitted`` for many parts in one write: each row is
        (message_id, part, total, operator_id, smsc_id, smsc_key, at)."""
        future = self._call(_submitted_rows, list(rows))
        for message_id, part, total, operator_id, _, smsc_key, _ in rows:
            self._inflight[(operator_id, smsc_key)] = PartRef(message_id, part, total)
        await future

    def _in_flight(self, operator_id: str, keys: Sequence[str]) -> PartRef | None:
        # Only the preferred key: with "auto" ids a submit in flight whose key is another
        # reading of this receipt's id must not win over the preferred reading stored in
        # Redis or PostgreSQL (it would when receipts lag behind submits by thousands).
        return self._inflight.get((operator_id, keys[0])) if keys else None

    async def lookup_part(self, operator_id: str, smsc_key: str, *more_keys: str) -> PartRef | None:
        keys = (smsc_key, *more_keys)
        ref = self._in_flight(operator_id, keys)
        if ref is not None:
            return ref
        if self._redis is not None:
            ref = await self._redis.get(operator_id, keys)
            if ref is not None:
                return ref
        row = await self.pool.fetchrow(LOOKUP_SQL, operator_id, list(keys))
        if row is None:
            return None
        ref = PartRef(row["message_id"], row["part"], row["total"])
        if self._redis is not None:  # a miss there (evicted, or Redis was down): refill
            await self._redis.put_many([(operator_id, row["key"], ref)])
        return ref

    async def lookup_parts(
        self, operator_id: str, key_sets: Sequence[Sequence[str]]
    ) -> list[PartRef | None]:
        # lookup_part's tiers, each asked once for every key set still unanswered.
        answers = [self._in_flight(operator_id, keys) for keys in key_sets]
        unanswered = [i for i, ref in enumerate(answers) if ref is None and key_sets[i]]
        if unanswered and self._redis is not None:
            cached = await self._redis.get_many(operator_id, [key_sets[i] for i in unanswered])
            for i, ref in zip(unanswered, cached, strict=True):
                answers[i] = ref
            unanswered = [i for i in unanswered if answers[i] is None]
        if not unanswered:
            return answers
        probes = [(i, key, ord_) for i in unanswered for ord_, key in enumerate(key_sets[i])]
        indices, keys, ords = (list(column) for column in zip(*probes, strict=True))
        rows = await self.pool.fetch(LOOKUP_MANY_SQL, operator_id, indices, keys, ords)
        refill: list[_Submit] = []
        for row in rows:
            ref = PartRef(row["message_id"], row["part"], row["total"])
            answers[row["i"]] = ref
            refill.append((operator_id, row["key"], ref))
        if self._redis is not None:  # misses there (evicted, or Redis was down): refill
            await self._redis.put_many(refill)
        return answers

    async def record_receipt(
        self,
        message_id: str,
        part: int,
        state: str,
        stat: str | None,
        err: str | None,
        at: float,
    ) -> str | None:
        result: str | None = await self._call(_receipt, message_id, part, state, stat, err, at)
        return result

    async def record_receipts(self, rows: Sequence[ReceiptRow]) -> list[str | None]:
        if not rows:
            return []
        result: list[str | None] = await self._call(_receipts, list(rows))
        return result

    async def put_orphan(
        self, operator_id: str, smsc_keys: Sequence[str], receipt: dict[str, Any], at: float
    ) -> None:
        await self.put_orphans(operator_id, [(smsc_keys, receipt, at)])

    async def put_orphans(
        self, operator_id: str, orphans: Sequence[tuple[Sequence[str], dict[str, Any], float]]
    ) -> None:
        await asyncio.gather(*[
            self._call(_put_orphan, operator_id, list(keys), json.dumps(receipt), at)
            for keys, receipt, at in orphans])

    async def drop_orphan(self, operator_id: str, smsc_key: str, hold_id: str) -> None:
        await self._call(_execute, _DROP_ORPHAN, operator_id, smsc_key, hold_id)

    async def widen_orphan(
        self, operator_id: str, smsc_key: str, hold_id: str, more_keys: Sequence[str]
    ) -> None:
        await self._call(_execute, _WIDEN_ORPHAN, operator_id, smsc_key, hold_id,
                         list(more_keys))

    async def take_orphans(self, operator_id: str, smsc_key: str) -> list[dict[str, Any]]:
        rows: list[asyncpg.Record] = await self._call(_fetch, _TAKE_ORPHANS, operator_id, smsc_key)
        return [json.loads(row[1]) for row in sorted(rows, key=lambda r: int(r[0]))]

    async def take_orphans_many(
        self, operator_id: str, smsc_keys: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        rows: list[asyncpg.Record] = await self._call(
            _fetch, _TAKE_ORPHANS_MANY, operator_id, list(dict.fromkeys(smsc_keys)))
        found: dict[str, list[dict[str, Any]]] = {}
        for _, key, receipt in sorted(rows, key=lambda r: int(r[0])):
            found.setdefault(key, []).append(json.loads(receipt))
        return found

    # -- MO parts --------------------------------------------------------------------------

    async def put_mo_parts(self, parts: Sequence[MoPartRecord]) -> None:
        if parts:
            await self._call(_put_mo_parts, list(parts))

    async def drop_mo_parts(self, keys: Sequence[tuple[str, str, int]]) -> None:
        if keys:
            await self._call(_drop_mo_parts, list(keys))

    async def load_mo_parts(self) -> list[MoPartRecord]:
        rows: list[asyncpg.Record] = await self._call(_fetch, _LOAD_MO_PARTS)
        return [MoPartRecord(*row) for row in rows]

    # -- idempotency and events ----------------------------------------------------------

    async def ping(self) -> None:
        # Beside the writer, on a connection of the pool: a ping does not wait behind it.
        async with self.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    async def find_messages(self, message_ids: Sequence[str]) -> dict[str, MessageRecord]:
        if not message_ids:
            return {}
        rows: list[asyncpg.Record] = await self._call(
            _fetch, _SELECT_MESSAGES + " WHERE message_id = ANY($1::text[])", list(message_ids))
        return {row["message_id"]: MessageRecord(**dict(row)) for row in rows}

    async def idempotency_claim(self, scope: str, key: str, fingerprint: str,
                                window: float = IDEMPOTENCY_WINDOW) -> IdempotencyRecord:
        now = self._clock()
        row: asyncpg.Record = await self._call(
            _idem_claim, scope, key, fingerprint, now, now - window)
        response = row["response"]
        return IdempotencyRecord(row["fingerprint"],
                                 None if response is None else json.loads(response),
                                 row["created_at"])

    async def idempotency_complete(self, scope: str, key: str, fingerprint: str,
                                   response: list[dict[str, Any]]) -> None:
        await self._call(_idem_complete, scope, key, fingerprint, json.dumps(response))

    async def idempotency_release(self, scope: str, key: str, fingerprint: str) -> None:
        await self._call(_idem_release, scope, key, fingerprint)

    async def store_event(self, kind: str, payload: dict[str, Any]) -> int:
        result: int = await self._call(_store_event, kind, json.dumps(payload), self._clock())
        return result

    async def store_events(self, kind: str, payloads: Sequence[dict[str, Any]]) -> list[int]:
        if not payloads:
            return []
        rows = [(kind, json.dumps(payload), self._clock()) for payload in payloads]
        result: list[int] = await self._call(_store_events, rows)
        return result

    async def list_events(
        self, kind: str | None = None, after_id: int = 0, limit: int = 100, *,
        tenants: Sequence[str] | None = None,
    ) -> list[EventRecord]:
        rows: list[asyncpg.Record] = await self._call(
            _list_events, kind, after_id, limit, None if tenants is None else list(tenants))
        return [
            EventRecord(id=i, kind=k, payload=json.loads(p), created_at=c) for i, k, p, c in rows
        ]

    # The state is spelled out, not a parameter, so the partial index messages_accepted serves it.
    _ACCEPTED_IDS = (
        "SELECT message_id, extract(epoch FROM created_at)::float8 FROM smpp.messages"
        " WHERE state = 'ACCEPTED' AND operator_id = $1 AND created_at < to_timestamp($2)"
        " ORDER BY created_at, message_id LIMIT $3"
    )

    async def accepted_ids(
        self, operator_id: str, created_before: float, limit: int
    ) -> list[tuple[str, float]]:
        rows: list[asyncpg.Record] = await self._call(
            _fetch, self._ACCEPTED_IDS, operator_id, created_before, limit
        )
        return [(row[0], row[1]) for row in rows]

    _ACCEPTED_AFTER = (
        f"SELECT {_select_list(_MESSAGE_FIELDS)}, ARRAY(SELECT c.part"  # noqa: S608
        " FROM smpp.message_correlations c WHERE c.message_id = m.message_id"
        " AND c.smsc_id IS NOT NULL) AS submitted_parts FROM smpp.messages m"
        " WHERE state = 'ACCEPTED' AND operator_id IS NOT DISTINCT FROM $1"
        " AND (created_at, message_id) > (to_timestamp($2), $3)"
        " ORDER BY created_at, message_id LIMIT $4"
    )

    async def accepted_after(
        self, operator_id: str | None, after: tuple[float, str] | None, limit: int
    ) -> list[tuple[MessageRecord, frozenset[int]]]:
        created_at, message_id = after if after is not None else (float("-inf"), "")
        rows: list[asyncpg.Record] = await self._call(
            _fetch, self._ACCEPTED_AFTER, operator_id, created_at, message_id, limit
        )
        return [
            (MessageRecord(**{f: row[f] for f in _MESSAGE_FIELDS}),
             frozenset(row["submitted_parts"]))
            for row in rows
        ]

    async def accepted_backlog(self) -> dict[str | None, float]:
        rows: list[asyncpg.Record] = await self._call(
            _fetch,
            "SELECT operator_id, extract(epoch FROM max(created_at))::float8"
            " FROM smpp.messages WHERE state = 'ACCEPTED' GROUP BY operator_id",
        )
        return {row[0]: row[1] for row in rows}

    # -- the webhook outbox --------------------------------------------------------------

    async def store_events_with_webhooks(
        self, kind: str, payloads: Sequence[dict[str, Any]], targets: WebhookTargets
    ) -> list[int]:
        if not payloads:
            return []
        texts = [json.dumps(payload) for payload in payloads]
        now = self._clock()
        result: list[int] = await self._call(
            _store_events_with_webhooks, kind, texts, now, targets)
        return result

    async def webhook_enqueue(
        self, kind: str, payloads: Sequence[dict[str, Any]], targets: WebhookTargets
    ) -> int:
        if not payloads:
            return 0
        texts = [json.dumps(payload) for payload in payloads]
        count: int = await self._call(_webhook_enqueue, kind, texts, self._clock(), targets)
        return count

    async def webhook_claim(self, now: float, limit: int, lease: float) -> list[WebhookRecord]:
        rows: list[asyncpg.Record] = await self._call(
            _fetch, _WEBHOOK_CLAIM, now, limit, now + lease)
        return sorted((WebhookRecord(**dict(row)) for row in rows), key=lambda r: r.id)

    async def webhook_delivered(self, ids: Sequence[int]) -> None:
        if ids:
            await self._call(_webhook_delivered, list(ids))

    async def webhook_retry(self, delivery_id: int, next_at: float, error: str) -> None:
        await self._call(_execute, _WEBHOOK_RETRY, next_at, error, delivery_id)

    async def webhook_kill(self, delivery_id: int, at: float, error: str) -> None:
        await self._call(_execute, _WEBHOOK_KILL, at, error, delivery_id)

    async def webhook_release(self, ids: Sequence[int], now: float) -> None:
        if ids:
            await self._call(_execute, _WEBHOOK_RELEASE, now, list(ids))

    async def webhook_dead(self, after_id: int = 0, limit: int = 100, *,
                           tenants: Sequence[str] | None = None) -> list[WebhookRecord]:
        rows: list[asyncpg.Record] = await self._call(
            _fetch, _WEBHOOK_DEAD, after_id, limit, None if tenants is None else list(tenants))
        return [WebhookRecord(**dict(row)) for row in rows]

    async def webhook_replay(self, delivery_id: int, now: float) -> bool:
        rows: list[asyncpg.Record] = await self._call(_fetch, _WEBHOOK_REPLAY, now, delivery_id)
        return bool(rows)

    async def webhook_depth(self) -> OutboxDepth:
        rows: list[asyncpg.Record] = await self._call(_fetch, _WEBHOOK_DEPTH)
        waiting, oldest, dead = rows[0]
        return OutboxDepth(waiting, oldest, dead)
