"""The embedded correlation store: one SQLite file, written by one thread, group commit.

Every call from the event loop queues an operation and awaits a future. A single
writer thread takes everything queued so far as one batch and runs it in one
transaction, so the loop never blocks on SQLite and a burst of N accepts costs one
commit, not N. Calls return after the commit that includes them; operations run
in the order they were called (reads included, so a read sees earlier writes).

WAL with synchronous=NORMAL: a commit appends to the WAL file (the write() reaches
the OS page cache) but is only fsynced at checkpoints. A kill -9 of the process
therefore loses nothing that was committed; only an OS crash or power loss can drop
the last transactions. That is the trade the embedded mode makes for throughput.

Checkpoints (copying the WAL back into the database file, with its fsyncs) run on a
connection and thread of their own, after every ``checkpoint_every`` commits: left
to SQLite, the commit that crosses 1,000 WAL pages runs one itself, and every write
queued behind it waited 10-50 ms (end to end +6 % without them, measured).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from correlation import sqlite_ops as ops
from correlation.batching import ReceiptRow
from correlation.hot_index import HotIndex
from correlation.sqlite_sql import (
    _ADDED_COLUMNS,
    _SCHEMA,
    _WEBHOOK_DEAD,
    _WEBHOOK_DEPTH,
    _WEBHOOK_KILL,
    _WEBHOOK_RELEASE,
    _WEBHOOK_REPLAY,
    _WEBHOOK_RETRY,
)
from correlation.store import (
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

MIN_SQLITE = (3, 38, 0)

_Op = ops._Op

log = logging.getLogger(__name__)


class SqliteStore:
    """CorrelationStore over one SQLite file (see the module docstring)."""

    backlog_is_private = True  # one daemon per file: only it sends the ACCEPTED messages

    def __init__(
        self,
        path: str,
        *,
        clock: Callable[[], float] = time.time,
        hot_index_size: int = 100_000,
        max_batch: int = 4096,
        checkpoint_every: int = 32,
    ) -> None:
        self._path = path
        self.directory = os.path.dirname(os.path.abspath(path))  # for the spill files
        self._clock = clock
        self._max_batch = max_batch
        # Recent submits: most receipts arrive within seconds, so they never touch the table.
        self._hot = HotIndex(hot_index_size)
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        # Backlog reads (accepted_after) on a connection and thread of their own, opened
        # at the first: they see what is committed without waiting behind the writes.
        self._reader: ThreadPoolExecutor | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: list[tuple[_Op, tuple[Any, ...], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._checkpoint_every = checkpoint_every
        self._commits = 0  # since the last checkpoint started
        self._checkpointer: ThreadPoolExecutor | None = None
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._checkpointing: asyncio.Future[tuple[int, int, int]] | None = None
        # Orphan receipts that may be in the table (counted up when queued): while zero, a
        # submit skips the orphan query, which would otherwise cost one SELECT per submit.
        self._orphans = 0

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        await self._loop.run_in_executor(self._executor, self._connect)

    def _connect(self) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:  # json_each, RETURNING, ->>
            raise RuntimeError(f"SQLite {sqlite3.sqlite_version} is too old: smppd needs "
                               f"{'.'.join(map(str, MIN_SQLITE))} or newer")
        if self._path != ":memory:" and not os.path.exists(self._path):
            # For its owner only: SQLite gives the -wal and -shm files the same mode.
            os.close(os.open(self._path, os.O_CREAT | os.O_WRONLY, 0o600))
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per batch.
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoint() runs them, beside the writer
        conn.executescript(_SCHEMA)
        for table, column, declaration in _ADDED_COLUMNS:
            have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        self._orphans = conn.execute("SELECT count(*) FROM orphan_receipts").fetchone()[0]
        self._conn = conn

    async def close(self) -> None:
        if self._loop is None or self._executor is None:
            return
        while self._flusher is not None:
            await asyncio.shield(self._flusher)
        if self._checkpointer is not None:
            if self._checkpointing is not None:
                await asyncio.gather(self._checkpointing, return_exceptions=True)
            await self._loop.run_in_executor(self._checkpointer, self._disconnect_checkpointer)
            self._checkpointer.shutdown(wait=True)
            self._checkpointer = None
        if self._reader is not None:
            await self._loop.run_in_executor(self._reader, self._disconnect_reader)
            self._reader.shutdown(wait=True)
            self._reader = None
        await self._loop.run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=True)
        self._executor = None
        self._loop = None

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _disconnect_checkpointer(self) -> None:
        if self._checkpoint_conn is not None:
            self._checkpoint_conn.close()
            self._checkpoint_conn = None

    def _disconnect_reader(self) -> None:
        if self._read_conn is not None:
            self._read_conn.close()
            self._read_conn = None

    async def _read(self, op: _Op, *args: Any) -> Any:
        """``op(conn, *args)`` on the reader connection: it sees every committed write,
        and none still queued (it does not wait for them)."""
        if self._loop is None:
            raise RuntimeError("store is not open")
        if self._reader is None:
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-reader")
        return await self._loop.run_in_executor(self._reader, self._run_read, op, args)

    def _run_read(self, op: _Op, args: tuple[Any, ...]) -> Any:
        if self._read_conn is None:
            self._read_conn = sqlite3.connect(self._path, isolation_level=None,
                                              check_same_thread=False)
            self._read_conn.execute("PRAGMA query_only=ON")
        return op(self._read_conn, *args)

    # -- group commit --------------------------------------------------------------------

    def _call(self, op: _Op, *args: Any) -> asyncio.Future[Any]:
        """Queue ``op(conn, *args)`` for the writer thread; the future resolves after commit."""
        if self._loop is None:
            raise RuntimeError("store is not open")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.append((op, args, future))
        if self._flusher is None:
            self._flusher = self._loop.create_task(self._flush())
        return future

    async def _flush(self) -> None:
        assert self._loop is not None and self._executor is not None
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                calls = [(op, args) for op, args, _ in batch]
                try:
                    results = await self._loop.run_in_executor(
                        self._executor, self._run_batch, calls)
                except Exception as exc:  # the connection itself failed: fail the whole batch
                    results = [(False, exc)] * len(batch)
                self._committed()
                for (_, _, future), (ok, value) in zip(batch, results, strict=True):
                    if future.cancelled():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._flusher = None

    # -- checkpoints -----------------------------------------------------------------

    def _committed(self) -> None:
        """After a batch: start a checkpoint every ``checkpoint_every`` commits, unless
        one is still running (the writer does not wait for it)."""
        self._commits += 1
        if self._commits >= self._checkpoint_every and self._checkpointing is None:
            self.checkpoint()

    def checkpoint(self) -> asyncio.Future[tuple[int, int, int]]:
        """Copy what the WAL holds into the database file, beside the writer (a
        PASSIVE checkpoint: it never blocks a write). Resolves to SQLite's answer:
        (busy, WAL frames, frames copied)."""
        if self._loop is None:
            raise RuntimeError("store is not open")
        if self._checkpointing is not None:
            return self._checkpointing
        if self._checkpointer is None:
            self._checkpointer = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="sqlite-checkpoint")
        self._commits = 0
        running = self._loop.run_in_executor(self._checkpointer, self._run_checkpoint)
        self._checkpointing = running
        running.add_done_callback(self._checkpoint_done)
        return running

    def _run_checkpoint(self) -> tuple[int, int, int]:
        if self._checkpoint_conn is None:
            self._checkpoint_conn = sqlite3.connect(self._path, isolation_level=None,
                                                    check_same_thread=False)
        busy, frames, copied = self._checkpoint_conn.execute(
            "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return busy, frames, copied

    def _checkpoint_done(self, done: asyncio.Future[tuple[int, int, int]]) -> None:
        self._checkpointing = None
        if not done.cancelled() and done.exception() is not None:
            # The WAL only grows meanwhile; the next checkpoint tries again.
            log.warning("sqlite checkpoint failed: %r", done.exception(),
                        extra={"event": "sqlite_checkpoint_failed"})

    def _run_batch(self, calls: list[tuple[_Op, tuple[Any, ...]]]) -> list[tuple[bool, Any]]:
        """Run the batch in one transaction; if any op fails, rerun each on its own so
        one bad call does not fail the others."""
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = ops._run_ops(conn, calls)
            conn.execute("COMMIT")
            return results
        except Exception:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        return [self._run_one(conn, op, args) for op, args in calls]

    @staticmethod
    def _run_one(conn: sqlite3.Connection, op: _Op, args: tuple[Any, ...]) -> tuple[bool, Any]:
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = op(conn, *args)
            conn.execute("COMMIT")
            return True, result
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return False, exc

    # -- messages ------------------------------------------------------------------------

    async def accept(self, messages: Sequence[MessageRecord]) -> None:
        await self._call(ops._accept, [ops._message_row(m) for m in messages])

    async def accept_new(self, messages: Sequence[MessageRecord]) -> list[str]:
        rows = [ops._message_row(m) for m in messages]
        stored: list[str] = await self._call(ops._accept_new, rows)
        return stored

    async def pending_messages(self) -> list[MessageRecord]:
        rows: list[tuple[Any, ...]] = await self._call(ops._pending)
        return [ops._message_record(row) for row in rows]

    async def accepted_after(
        self, operator_id: str | None, after: tuple[float, str] | None, limit: int
    ) -> list[tuple[MessageRecord, frozenset[int]]]:
        # On the reader connection: committed messages only, without waiting for the
        # writes queued meanwhile (a refill must not wait for a lagging writer).
        cursor = after if after is not None else (float("-inf"), "")
        page: str = await self._read(ops._accepted_after, operator_id, *cursor, limit)
        found = [ops._backlog_item(item) for item in json.loads(page)]
        found.sort(key=lambda item: (item[0].created_at, item[0].message_id))
        return found

    async def accepted_backlog(self) -> dict[str | None, float]:
        rows: list[tuple[str | None, float]] = await self._call(ops._accepted_backlog)
        return dict(rows)

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
        await self._call(ops._set_state, message_id, state, at, reason, command_status, attempts)

    async def get_message(self, message_id: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self._call(ops._get_message, message_id)
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
        self._remember(operator_id, smsc_key, PartRef(message_id, part, total))
        await self._call(ops._submitted, message_id, part, total, operator_id, smsc_id,
                         smsc_key, at)

    async def record_submitted_many(
        self, rows: Sequence[tuple[str, int, int, str, str, str, float]]
    ) -> None:
        """``record_submitted`` for many parts in one write: each row is
        (message_id, part, total, operator_id, smsc_id, smsc_key, at)."""
        put = self._hot.put_part
        for message_id, part, total, operator_id, _, smsc_key, _ in rows:
            put(operator_id, smsc_key, message_id, part, total)
        await self._call(ops._submitted_rows, rows)

    def _remember(self, operator_id: str, smsc_key: str, ref: PartRef) -> None:
        self._hot.put(operator_id, smsc_key, ref)

    async def lookup_part(self, operator_id: str, smsc_key: str, *more_keys: str) -> PartRef | None:
        # Only the preferred key may answer from the hot index: with "auto" ids, a recent
        # submit whose id equals another reading of this receipt's id must not win over
        # the preferred reading. One queued read then tries every key in order; it runs
        # after every write queued before it, so the table is complete for it, and the
        # matcher relies on there being exactly one await here.
        ref = self._hot.get(operator_id, smsc_key)
        if ref is not None:
            return ref
        found: tuple[str, PartRef] | None = await self._call(
            ops._lookup, operator_id, (smsc_key, *more_keys))
        if found is None:
            return None
        key, ref = found
        self._remember(operator_id, key, ref)
        return ref

    async def lookup_parts(
        self, operator_id: str, key_sets: Sequence[Sequence[str]]
    ) -> list[PartRef | None]:
        # As lookup_part, per key set: the hot index for the preferred key, then one
        # queued read for every key set it did not answer.
        answers: list[PartRef | None] = [None] * len(key_sets)
        unanswered: list[int] = []
        for i, keys in enumerate(key_sets):
            if not keys:
                continue
            answers[i] = self._hot.get(operator_id, keys[0])
            if answers[i] is None:
                unanswered.append(i)
        if not unanswered:
            return answers
        found: list[tuple[str, PartRef] | None] = await self._call(
            ops._lookup_many, operator_id, [tuple(key_sets[i]) for i in unanswered]
        )
        for i, hit in zip(unanswered, found, strict=True):
            if hit is not None:
                key, ref = hit
                self._remember(operator_id, key, ref)
                answers[i] = ref
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
        result: str | None = await self._call(ops._receipt, message_id, part, state, stat, err, at)
        return result

    async def record_receipts(self, rows: Sequence[ReceiptRow]) -> list[str | None]:
        if not rows:
            return []
        result: list[str | None] = await self._call(ops._receipts, list(rows))
        return result

    async def put_orphan(
        self, operator_id: str, smsc_keys: Sequence[str], receipt: dict[str, Any], at: float
    ) -> None:
        await self.put_orphans(operator_id, [(smsc_keys, receipt, at)])

    async def put_orphans(
        self, operator_id: str, orphans: Sequence[tuple[Sequence[str], dict[str, Any], float]]
    ) -> None:
        self._orphans += len(orphans)
        await asyncio.gather(*[
            self._call(ops._put_orphan, operator_id, tuple(keys), json.dumps(receipt), at)
            for keys, receipt, at in orphans])

    async def drop_orphan(self, operator_id: str, smsc_key: str, hold_id: str) -> None:
        dropped: int = await self._call(ops._drop_orphan, operator_id, smsc_key, hold_id)
        self._orphans = max(0, self._orphans - dropped)

    async def widen_orphan(
        self, operator_id: str, smsc_key: str, hold_id: str, more_keys: Sequence[str]
    ) -> None:
        await self._call(ops._widen_orphan, operator_id, smsc_key, hold_id, tuple(more_keys))

    async def take_orphans(self, operator_id: str, smsc_key: str) -> list[dict[str, Any]]:
        if not self._orphans:
            return []
        rows: list[str] = await self._call(ops._take_orphans, operator_id, smsc_key)
        self._orphans = max(0, self._orphans - len(rows))
        return [json.loads(row) for row in rows]

    async def take_orphans_many(
        self, operator_id: str, smsc_keys: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        if not self._orphans:  # the usual case: no receipt is waiting in the table
            return {}
        found: dict[str, list[str]] = await self._call(
            ops._take_orphans_many, operator_id, list(smsc_keys))
        self._orphans = max(0, self._orphans - sum(len(rows) for rows in found.values()))
        return {key: [json.loads(row) for row in rows] for key, rows in found.items()}

    # -- MO parts --------------------------------------------------------------------------

    async def put_mo_parts(self, parts: Sequence[MoPartRecord]) -> None:
        if parts:
            await self._call(ops._put_mo_parts, list(parts))

    async def drop_mo_parts(self, keys: Sequence[tuple[str, str, int]]) -> None:
        if keys:
            await self._call(ops._drop_mo_parts, list(keys))

    async def load_mo_parts(self) -> list[MoPartRecord]:
        rows: list[tuple[Any, ...]] = await self._call(ops._load_mo_parts)
        return [MoPartRecord(*row) for row in rows]

    # -- idempotency and events ----------------------------------------------------------

    async def ping(self) -> None:
        # On the reader connection: a ping does not wait behind the queued writes.
        await self._read(ops._ping)

    async def find_messages(self, message_ids: Sequence[str]) -> dict[str, MessageRecord]:
        if not message_ids:
            return {}
        rows: list[tuple[Any, ...]] = await self._call(ops._find_messages, list(message_ids))
        return {row[0]: ops._message_record(row) for row in rows}

    async def idempotency_claim(self, scope: str, key: str, fingerprint: str,
                                window: float = IDEMPOTENCY_WINDOW) -> IdempotencyRecord:
        now = self._clock()
        found: tuple[str, str | None, float] = await self._call(
            ops._idem_claim, scope, key, fingerprint, now, now - window)
        held, response, created_at = found
        return IdempotencyRecord(held, None if response is None else json.loads(response),
                                 created_at)

    async def idempotency_complete(self, scope: str, key: str, fingerprint: str,
                                   response: list[dict[str, Any]]) -> None:
        await self._call(ops._idem_complete, scope, key, fingerprint, json.dumps(response))

    async def idempotency_release(self, scope: str, key: str, fingerprint: str) -> None:
        await self._call(ops._idem_release, scope, key, fingerprint)

    async def store_event(self, kind: str, payload: dict[str, Any]) -> int:
        result: int = await self._call(ops._store_event, kind, json.dumps(payload), self._clock())
        return result

    async def store_events(self, kind: str, payloads: Sequence[dict[str, Any]]) -> list[int]:
        if not payloads:
            return []
        # One JSON array for the lot: json_each hands SQLite each object's text.
        array = json.dumps(list(payloads))
        result: list[int] = await self._call(
            ops._store_events, kind, array, len(payloads), self._clock())
        return result

    async def list_events(
        self, kind: str | None = None, after_id: int = 0, limit: int = 100, *,
        tenants: Sequence[str] | None = None,
    ) -> list[EventRecord]:
        rows: list[tuple[int, str, str, float]] = await self._call(
            ops._list_events, kind, after_id, limit,
            None if tenants is None else json.dumps(list(tenants)),
        )
        return [
            EventRecord(id=i, kind=k, payload=json.loads(p), created_at=c) for i, k, p, c in rows
        ]

    async def accepted_ids(
        self, operator_id: str, created_before: float, limit: int
    ) -> list[tuple[str, float]]:
        rows: list[tuple[str, float]] = await self._call(
            ops._accepted_ids, operator_id, created_before, limit
        )
        return [(message_id, created_at) for message_id, created_at in rows]

    # -- the webhook outbox --------------------------------------------------------------

    async def store_events_with_webhooks(
        self, kind: str, payloads: Sequence[dict[str, Any]], targets: WebhookTargets
    ) -> list[int]:
        if not payloads:
            return []
        array = json.dumps(list(payloads))
        result: list[int] = await self._call(
            ops._store_events_with_webhooks, kind, array, len(payloads), self._clock(),
            ops._outbox_args(targets))
        return result

    async def webhook_enqueue(
        self, kind: str, payloads: Sequence[dict[str, Any]], targets: WebhookTargets
    ) -> int:
        if not payloads:
            return 0
        count: int = await self._call(ops._webhook_enqueue, kind, json.dumps(list(payloads)),
                                      self._clock(), ops._outbox_args(targets))
        return count

    async def webhook_claim(self, now: float, limit: int, lease: float) -> list[WebhookRecord]:
        due: str = await self._call(ops._webhook_claim, now, limit, now + lease)
        rows = json.loads(due)
        return sorted((ops._webhook_record((*row, None)) for row in rows), key=lambda r: r.id)

    async def webhook_delivered(self, ids: Sequence[int]) -> None:
        if ids:
            await self._call(ops._webhook_delivered, list(ids))

    async def webhook_retry(self, delivery_id: int, next_at: float, error: str) -> None:
        await self._call(ops._execute, _WEBHOOK_RETRY, (next_at, error, delivery_id))

    async def webhook_kill(self, delivery_id: int, at: float, error: str) -> None:
        await self._call(ops._execute, _WEBHOOK_KILL, (at, error, delivery_id))

    async def webhook_release(self, ids: Sequence[int], now: float) -> None:
        if ids:
            await self._call(ops._execute, _WEBHOOK_RELEASE, (now, json.dumps(list(ids))))

    async def webhook_dead(self, after_id: int = 0, limit: int = 100, *,
                           tenants: Sequence[str] | None = None) -> list[WebhookRecord]:
        rows: list[tuple[Any, ...]] = await self._call(
            ops._fetchall, _WEBHOOK_DEAD,
            (after_id, limit, None if tenants is None else json.dumps(list(tenants))))
        return [ops._webhook_record(row) for row in rows]

    async def webhook_replay(self, delivery_id: int, now: float) -> bool:
        changed: int = await self._call(ops._rowcount, _WEBHOOK_REPLAY, (now, now, delivery_id))
        return changed > 0

    async def webhook_depth(self) -> OutboxDepth:
        rows: list[tuple[Any, ...]] = await self._call(ops._fetchall, _WEBHOOK_DEPTH, ())
        waiting, oldest, dead = rows[0]
        return OutboxDepth(waiting or 0, oldest, dead or 0)
