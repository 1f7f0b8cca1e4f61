"""The distributed correlation store: PostgreSQL (the truth) + a Redis hot index.

Same promises as ``SqliteStore`` (see ``correlation.store``), shared by every replica.
Group commit as ``correlation.facade`` describes it: one writer task runs each batch
on one connection in one transaction, a run of calls of one kind through one
statement over ``unnest``-ed arrays, or ``executemany``, so a burst of N accepts costs
one commit and one statement, not N.

``lookup_part`` and ``lookup_parts`` are the receipt hot path and skip the queue: parts
queued but not yet committed (in this process) -> Redis -> an index lookup on
``smpp.message_correlations (operator_id, smsc_key)`` on a connection of the pool.
Committed submits are SET in Redis in one pipeline per batch, before their callers
resume. Redis down: lookups go to PostgreSQL. Backlog reads and pings run on the pool
too, beside the writer. Idempotency keys live in PostgreSQL only: a claim is a write
(first writer wins, across replicas), so a cache in front of it would save nothing.

The schema comes from ``correlation.migrations`` (``open`` runs the migrations, which
is idempotent and safe from several replicas). ``purge_older_than`` is the retention
job. Timestamps are epoch seconds in Python and timestamptz in the tables.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import asyncpg

from correlation import pg_ops
from correlation.facade import Call, GroupCommitStore, Op, Result, StoreOps, SubmitRow
from correlation.migrate import migrate
from correlation.pg_retention import purge_older_than
from correlation.pg_sql import LOOKUP_MANY_SQL, LOOKUP_SQL
from correlation.redis_index import DEFAULT_PREFIX, DEFAULT_TTL_SECONDS, RedisIndex
from correlation.store import PartRef

__all__ = ["LOOKUP_MANY_SQL", "LOOKUP_SQL", "PgStore", "purge_older_than"]

log = logging.getLogger(__name__)


class PgStore(GroupCommitStore):
    """CorrelationStore over PostgreSQL with an optional Redis hot index (see the
    module docstring)."""

    backlog_is_private = False  # replicas share the tables: nothing is left unqueued
    _ops: ClassVar[StoreOps] = pg_ops

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
        super().__init__(clock=clock, max_batch=max_batch)
        self._dsn = dsn
        self._pool_size = pool_size
        self._migrate_on_open = migrate_on_open
        self._redis = (
            RedisIndex(redis_url, prefix=redis_prefix, ttl_seconds=redis_ttl_seconds)
            if redis_url is not None
            else None
        )
        self._pool: asyncpg.Pool | None = None
        # Submits queued but not committed yet: findable at once, as the protocol asks.
        self._inflight: dict[tuple[str, str], PartRef] = {}

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    # -- connections -------------------------------------------------------------------

    async def _connect(self) -> None:
        if self._migrate_on_open:
            await migrate(self._dsn)
        self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self._pool_size)

    async def _disconnect(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._redis is not None:
            await self._redis.close()

    async def _beside(self, op: Op, args: tuple[Any, ...]) -> Any:
        async with self.pool.acquire() as conn:
            return await op(conn, *args)

    async def purge_older_than(self, days: float) -> dict[str, int]:
        """The retention job on this store's pool (see ``purge_older_than``)."""
        return await purge_older_than(self.pool, days, now=self._clock())

    # -- batches -----------------------------------------------------------------------

    async def _run_calls(self, calls: list[Call]) -> list[Result]:
        async with self.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    return await pg_ops.run_ops(conn, calls)
            except Exception:
                log.debug("batch rolled back; rerunning its operations one by one")
            return [await pg_ops.run_one(conn, op, args) for op, args in calls]

    async def _after_batch(self, calls: list[Call], results: list[Result]) -> None:
        """Committed submits go to Redis, then leave the in-flight map (PostgreSQL has
        them): once record_submitted returns, every replica finds the part in Redis
        (when it is up)."""
        committed: list[pg_ops.Submit] = []
        for (op, args), (ok, _) in zip(calls, results, strict=True):
            submits = pg_ops.submits_of(op, args)
            if ok:
                committed += submits
            for operator_id, smsc_key, ref in submits:
                if self._inflight.get((operator_id, smsc_key)) == ref:
                    del self._inflight[(operator_id, smsc_key)]
        if self._redis is not None:
            await self._redis.put_many(committed)

    # -- part lookups: in flight, Redis, PostgreSQL ------------------------------------

    def _submitting(self, rows: Sequence[SubmitRow]) -> None:
        for message_id, part, total, operator_id, _, smsc_key, _ in rows:
            self._inflight[(operator_id, smsc_key)] = PartRef(message_id, part, total)

    def _recent(self, operator_id: str, smsc_key: str) -> PartRef | None:
        # The preferred key only (the facade asks no other): with "auto" ids a submit in
        # flight whose key is another reading of this receipt's id must not win over the
        # preferred reading stored in Redis or PostgreSQL (it would when receipts lag
        # behind submits by thousands).
        return self._inflight.get((operator_id, smsc_key))

    async def _find_parts(
        self, operator_id: str, key_sets: list[Sequence[str]]
    ) -> list[PartRef | None]:
        answers: list[PartRef | None] = [None] * len(key_sets)
        unanswered = list(range(len(key_sets)))
        if self._redis is not None:
            answers = await self._redis.get_many(operator_id, key_sets)
            unanswered = [i for i, ref in enumerate(answers) if ref is None]
            if not unanswered:
                return answers
        async with self.pool.acquire() as conn:
            found = await pg_ops.lookup_many(conn, operator_id,
                                             [key_sets[i] for i in unanswered])
        refill: list[pg_ops.Submit] = []
        for i, hit in zip(unanswered, found, strict=True):
            if hit is not None:
                answers[i] = hit[1]
                refill.append((operator_id, *hit))
        if self._redis is not None:  # misses there (evicted, or Redis was down): refill
            await self._redis.put_many(refill)
        return answers
