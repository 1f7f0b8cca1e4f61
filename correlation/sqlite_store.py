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

from correlation.batching import ReceiptRow, per_call, rows_of_calls, split_receipts
from correlation.store import (
    ACCEPTED,
    FINAL_STATES,
    IDEMPOTENCY_WINDOW,
    PENDING,
    SUBMITTED,
    EventRecord,
    IdempotencyRecord,
    MessageRecord,
    MoPartRecord,
    OutboxDepth,
    PartRef,
    WebhookRecord,
    WebhookTargets,
    aggregate_state,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    message_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    data_coding INTEGER NOT NULL,
    body BLOB NOT NULL,
    operator_id TEXT,
    registered_delivery INTEGER NOT NULL,
    validity TEXT,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    reason TEXT,
    command_status INTEGER,
    receipt_stat TEXT,
    receipt_err TEXT,
    callback_url TEXT  -- added after the first release: see _connect
) WITHOUT ROWID;
-- Partial index: only ACCEPTED rows, so the backlog reads stay small as the table grows;
-- per operator, oldest first (refills read one operator's backlog from a cursor).
DROP INDEX IF EXISTS messages_accepted;
CREATE INDEX IF NOT EXISTS messages_accepted_by_operator ON messages (operator_id, created_at)
    WHERE state = 'ACCEPTED';
CREATE TABLE IF NOT EXISTS parts (
    message_id TEXT NOT NULL,
    part INTEGER NOT NULL,
    total INTEGER NOT NULL,
    operator_id TEXT NOT NULL,
    smsc_id TEXT,
    smsc_key TEXT,
    state TEXT NOT NULL,
    command_status INTEGER,
    stat TEXT,
    err TEXT,
    submitted_at REAL,
    done_at REAL,
    PRIMARY KEY (message_id, part)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS parts_smsc_key ON parts (operator_id, smsc_key);
CREATE TABLE IF NOT EXISTS orphan_receipts (
    id INTEGER PRIMARY KEY,
    operator_id TEXT NOT NULL,
    receipt TEXT NOT NULL,
    created_at REAL NOT NULL
);
-- A receipt whose id form is unknown is findable under each of its candidate keys.
CREATE TABLE IF NOT EXISTS orphan_keys (
    operator_id TEXT NOT NULL,
    smsc_key TEXT NOT NULL,
    orphan_id INTEGER NOT NULL,
    PRIMARY KEY (operator_id, smsc_key, orphan_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS orphan_keys_orphan ON orphan_keys (orphan_id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: API cursors stay valid
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind ON events (kind, id);
-- Parts of concatenated MO messages whose other parts have not all come yet.
CREATE TABLE IF NOT EXISTS mo_parts (
    operator_id TEXT NOT NULL,
    source TEXT NOT NULL,
    reference INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    total INTEGER NOT NULL,
    destination TEXT NOT NULL,
    data_coding INTEGER NOT NULL,
    body BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (operator_id, source, reference, seq)
) WITHOUT ROWID;
-- Idempotency keys per caller (scope: token and tenants). The global keys of versions
-- before it cannot be given a scope: their table goes.
DROP TABLE IF EXISTS idempotency;
CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,  -- SHA-256 of the request
    response TEXT,  -- the results as JSON; NULL until the first request is done
    created_at REAL NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_keys_created_at ON idempotency_keys (created_at);
-- Events waiting to be POSTed to a webhook (smppd.webhooks), and the dead letters.
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the X-Smppd-Delivery id
    kind TEXT NOT NULL,
    ordering_key TEXT,  -- the message id (its events go out in order); NULL: MO, no order
    tenant_id TEXT NOT NULL,
    url TEXT,  -- the message's callback_url; NULL: the tenant's at delivery
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    next_at REAL NOT NULL,  -- due from then (a claim moves it past its lease)
    attempts INTEGER NOT NULL,
    last_error TEXT,
    dead_at REAL  -- set: a dead letter
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (next_at)
    WHERE dead_at IS NULL;
CREATE INDEX IF NOT EXISTS webhook_outbox_order ON webhook_outbox (ordering_key, id)
    WHERE dead_at IS NULL;
CREATE INDEX IF NOT EXISTS webhook_outbox_dead ON webhook_outbox (id)
    WHERE dead_at IS NOT NULL;
"""
# Columns added to tables of earlier releases (CREATE TABLE IF NOT EXISTS keeps an old
# table as it is): table -> (column, its declaration).
_ADDED_COLUMNS = (("messages", "callback_url", "TEXT"),)

_MESSAGE_COLUMNS = (
    "message_id, tenant_id, source, destination, data_coding, body, operator_id,"
    " registered_delivery, validity, priority, state, attempts, created_at, updated_at,"
    " reason, command_status, receipt_stat, receipt_err, callback_url"
)
_MESSAGE_FIELDS = tuple(c.strip() for c in _MESSAGE_COLUMNS.split(","))
_PART_COLUMNS = (
    "message_id, part, total, operator_id, smsc_id, smsc_key, state, command_status,"
    " stat, err, submitted_at, done_at"
)
_PART_FIELDS = tuple(c.strip() for c in _PART_COLUMNS.split(","))
# Built once from the constant column lists above (no outside input): S608 does not apply.
_MARKS = ", ".join("?" * len(_MESSAGE_FIELDS))
_INSERT_MESSAGE = f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES ({_MARKS})"  # noqa: S608
_INSERT_NEW_MESSAGE = _INSERT_MESSAGE + " ON CONFLICT (message_id) DO NOTHING"
_SELECT_PENDING = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE state = ? ORDER BY created_at"  # noqa: S608
# One operator's ACCEPTED messages after a (created_at, message_id) cursor, oldest first,
# each with the numbers of its parts that have an SMSC id already (comma-separated).
# As one JSON text (one row: sqlite3 takes the GIL back after every row it steps, and
# while the event loop is busy each of those waits for a GIL switch, ~5 ms): body as
# hex, times with all 17 digits (the cursor must read back exactly).
_JSON_MESSAGE = ", ".join(
    "hex(body)" if f == "body" else f"printf('%!.17g', {f})" if f.endswith("_at") else f
    for f in _MESSAGE_FIELDS
)
_SELECT_ACCEPTED_AFTER = (
    f"SELECT json_group_array(json_array({_JSON_MESSAGE},"  # noqa: S608
    " (SELECT group_concat(p.part) FROM parts p"
    " WHERE p.message_id = m.message_id AND p.smsc_id IS NOT NULL)))"
    " FROM (SELECT * FROM messages WHERE state = 'ACCEPTED' AND operator_id IS ?"
    " AND (created_at, message_id) > (?, ?) ORDER BY created_at, message_id LIMIT ?) m"
)
_ACCEPTED_BACKLOG = (
    "SELECT operator_id, max(created_at) FROM messages WHERE state = 'ACCEPTED'"
    " GROUP BY operator_id"
)
_SELECT_MESSAGE = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE message_id = ?"  # noqa: S608
_SELECT_PARTS = f"SELECT {_PART_COLUMNS} FROM parts WHERE message_id = ? ORDER BY part"  # noqa: S608
_SUBMIT_MESSAGE = (
    "UPDATE messages SET state = ?, operator_id = ?, updated_at = ?"
    " WHERE message_id = ? AND state = ?"
)
_ALL_PARTS_SUBMITTED = " AND (SELECT count(*) FROM parts WHERE message_id = ? AND state != ?) >= ?"
_SUBMIT_MESSAGE_ALL_PARTS = _SUBMIT_MESSAGE + _ALL_PARTS_SUBMITTED
_FINALS = ", ".join(f"'{state}'" for state in sorted(FINAL_STATES))
_SET_FINAL_PART = (
    "UPDATE parts SET state = ?, stat = ?, err = ?, done_at = ? WHERE message_id = ? AND part = ?"
)
_FINAL_PART = _SET_FINAL_PART + " RETURNING total"
_INTERMEDIATE_PART = (
    "UPDATE parts SET stat = ?, err = ?"  # noqa: S608
    f" WHERE message_id = ? AND part = ? AND state NOT IN ({_FINALS})"
)
_FINAL_MESSAGE = (
    "UPDATE messages SET state = ?, receipt_stat = ?, receipt_err = ?, updated_at = ?"
    " WHERE message_id = ? AND state != ?"
)
# Batch writes take their rows as JSON (json_each): SQLite walks them in C with the GIL
# released, where executemany binds every row in Python and waits for the GIL each
# time (under a busy event loop that made the writer ~3x slower per row). Rows are
# grouped by the columns they share (operator, part, time, receipt status), so a
# statement reads at most three values per row: each json_extract parses its row again,
# and with seven per row that was most of a write's cost (12 -> 6 us per submit,
# 12 -> 4 per receipt, measured).
_SUBMITTED_PARTS = (  # ? = part, total, operator_id, state, submitted_at, [[m, id, key]], state
    f"INSERT INTO parts ({_PART_COLUMNS})"  # noqa: S608
    " SELECT value->>0, ?, ?, ?, value->>1, value->>2, ?, NULL, NULL, NULL, ?, NULL"
    " FROM json_each(?) WHERE true"
    " ON CONFLICT (message_id, part) DO UPDATE SET total = excluded.total,"
    " operator_id = excluded.operator_id, smsc_id = excluded.smsc_id,"
    " smsc_key = excluded.smsc_key, submitted_at = excluded.submitted_at,"
    " state = CASE WHEN state = ? THEN excluded.state ELSE state END"
)
_SUBMITTED_MESSAGES = (  # ? = state, operator_id, updated_at, [message_id], state
    "UPDATE messages SET state = ?, operator_id = ?, updated_at = ?"
    " WHERE message_id IN (SELECT value FROM json_each(?)) AND state = ?"
)
# Of a JSON array of message ids, the positions of those whose part ? is missing or
# belongs to a multipart message, with its total (null when missing): one row of JSON,
# usually "[]" (each row a query returns costs the writer a wait for the GIL).
_UNUSUAL_PARTS = (
    "SELECT json_group_array(json_array(j.key, p.total)) FROM json_each(?) j LEFT JOIN parts p"
    " ON p.message_id = j.value AND p.part = ? WHERE p.total IS NOT 1"
)
_FINAL_PARTS = (  # ? = state, stat, err, done_at, [message_id], part
    "UPDATE parts SET state = ?, stat = ?, err = ?, done_at = ?"
    " WHERE message_id IN (SELECT value FROM json_each(?)) AND part = ?"
)
_FINAL_MESSAGES = (  # ? = state, stat, err, updated_at, [message_id], state
    "UPDATE messages SET state = ?, receipt_stat = ?, receipt_err = ?, updated_at = ?"
    " WHERE message_id IN (SELECT value FROM json_each(?)) AND state != ?"
)
_INSERT_EVENTS = (
    "INSERT INTO events (kind, payload, created_at) SELECT ?, value, ? FROM json_each(?)"
    " ORDER BY key"
)
_LAST_EVENT_ID = "SELECT seq FROM sqlite_sequence WHERE name = 'events'"


MIN_SQLITE = (3, 38, 0)

# An operation runs in the writer thread with the connection; its result goes back to the caller.
_Op = Callable[..., Any]

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
        self._hot = _HotIndex(hot_index_size)
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
                ops = [(op, args) for op, args, _ in batch]
                try:
                    results = await self._loop.run_in_executor(self._executor, self._run_batch, ops)
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

    def _run_batch(self, ops: list[tuple[_Op, tuple[Any, ...]]]) -> list[tuple[bool, Any]]:
        """Run the batch in one transaction; if any op fails, rerun each on its own so
        one bad call does not fail the others."""
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = _run_ops(conn, ops)
            conn.execute("COMMIT")
            return results
        except Exception:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        return [self._run_one(conn, op, args) for op, args in ops]

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
        await self._call(_accept, [_message_row(m) for m in messages])

    async def accept_new(self, messages: Sequence[MessageRecord]) -> list[str]:
        stored: list[str] = await self._call(_accept_new, [_message_row(m) for m in messages])
        return stored

    async def pending_messages(self) -> list[MessageRecord]:
        rows: list[tuple[Any, ...]] = await self._call(_pending)
        return [_message_record(row) for row in rows]

    async def accepted_after(
        self, operator_id: str | None, after: tuple[float, str] | None, limit: int
    ) -> list[tuple[MessageRecord, frozenset[int]]]:
        # On the reader connection: committed messages only, without waiting for the
        # writes queued meanwhile (a refill must not wait for a lagging writer).
        cursor = after if after is not None else (float("-inf"), "")
        page: str = await self._read(_accepted_after, operator_id, *cursor, limit)
        found = [_backlog_item(item) for item in json.loads(page)]
        found.sort(key=lambda item: (item[0].created_at, item[0].message_id))
        return found

    async def accepted_backlog(self) -> dict[str | None, float]:
        rows: list[tuple[str | None, float]] = await self._call(_accepted_backlog)
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
        self._remember(operator_id, smsc_key, PartRef(message_id, part, total))
        await self._call(_submitted, message_id, part, total, operator_id, smsc_id, smsc_key, at)

    async def record_submitted_many(
        self, rows: Sequence[tuple[str, int, int, str, str, str, float]]
    ) -> None:
        """``record_submitted`` for many parts in one write: each row is
        (message_id, part, total, operator_id, smsc_id, smsc_key, at)."""
        put = self._hot.put_part
        for message_id, part, total, operator_id, _, smsc_key, _ in rows:
            put(operator_id, smsc_key, message_id, part, total)
        await self._call(_submitted_rows, rows)

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
            _lookup, operator_id, (smsc_key, *more_keys))
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
            _lookup_many, operator_id, [tuple(key_sets[i]) for i in unanswered]
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
        self._orphans += 1
        await self._call(_put_orphan, operator_id, tuple(smsc_keys), json.dumps(receipt), at)

    async def put_orphans(
        self, operator_id: str, orphans: Sequence[tuple[Sequence[str], dict[str, Any], float]]
    ) -> None:
        self._orphans += len(orphans)
        await asyncio.gather(*[
            self._call(_put_orphan, operator_id, tuple(keys), json.dumps(receipt), at)
            for keys, receipt, at in orphans])

    async def drop_orphan(self, operator_id: str, smsc_key: str, hold_id: str) -> None:
        dropped: int = await self._call(_drop_orphan, operator_id, smsc_key, hold_id)
        self._orphans = max(0, self._orphans - dropped)

    async def widen_orphan(
        self, operator_id: str, smsc_key: str, hold_id: str, more_keys: Sequence[str]
    ) -> None:
        await self._call(_widen_orphan, operator_id, smsc_key, hold_id, tuple(more_keys))

    async def take_orphans(self, operator_id: str, smsc_key: str) -> list[dict[str, Any]]:
        if not self._orphans:
            return []
        rows: list[str] = await self._call(_take_orphans, operator_id, smsc_key)
        self._orphans = max(0, self._orphans - len(rows))
        return [json.loads(row) for row in rows]

    async def take_orphans_many(
        self, operator_id: str, smsc_keys: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        if not self._orphans:  # the usual case: no receipt is waiting in the table
            return {}
        found: dict[str, list[str]] = await self._call(
            _take_orphans_many, operator_id, list(smsc_keys))
        self._orphans = max(0, self._orphans - sum(len(rows) for rows in found.values()))
        return {key: [json.loads(row) for row in rows] for key, rows in found.items()}

    # -- MO parts --------------------------------------------------------------------------

    async def put_mo_parts(self, parts: Sequence[MoPartRecord]) -> None:
        if parts:
            await self._call(_put_mo_parts, list(parts))

    async def drop_mo_parts(self, keys: Sequence[tuple[str, str, int]]) -> None:
        if keys:
            await self._call(_drop_mo_parts, list(keys))

    async def load_mo_parts(self) -> list[MoPartRecord]:
        rows: list[tuple[Any, ...]] = await self._call(_load_mo_parts)
        return [MoPartRecord(*row) for row in rows]

    # -- idempotency and events ----------------------------------------------------------

    async def ping(self) -> None:
        # On the reader connection: a ping does not wait behind the queued writes.
        await self._read(_ping)

    async def find_messages(self, message_ids: Sequence[str]) -> dict[str, MessageRecord]:
        if not message_ids:
            return {}
        rows: list[tuple[Any, ...]] = await self._call(_find_messages, list(message_ids))
        return {row[0]: _message_record(row) for row in rows}

    async def idempotency_claim(self, scope: str, key: str, fingerprint: str,
                                window: float = IDEMPOTENCY_WINDOW) -> IdempotencyRecord:
        now = self._clock()
        found: tuple[str, str | None, float] = await self._call(
            _idem_claim, scope, key, fingerprint, now, now - window)
        held, response, created_at = found
        return IdempotencyRecord(held, None if response is None else json.loads(response),
                                 created_at)

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
        # One JSON array for the lot: json_each hands SQLite each object's text.
        array = json.dumps(list(payloads))
        result: list[int] = await self._call(
            _store_events, kind, array, len(payloads), self._clock())
        return result

    async def list_events(
        self, kind: str | None = None, after_id: int = 0, limit: int = 100, *,
        tenants: Sequence[str] | None = None,
    ) -> list[EventRecord]:
        rows: list[tuple[int, str, str, float]] = await self._call(
            _list_events, kind, after_id, limit,
            None if tenants is None else json.dumps(list(tenants)),
        )
        return [
            EventRecord(id=i, kind=k, payload=json.loads(p), created_at=c) for i, k, p, c in rows
        ]

    async def accepted_ids(
        self, operator_id: str, created_before: float, limit: int
    ) -> list[tuple[str, float]]:
        rows: list[tuple[str, float]] = await self._call(
            _accepted_ids, operator_id, created_before, limit
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
            _store_events_with_webhooks, kind, array, len(payloads), self._clock(),
            _outbox_args(targets))
        return result

    async def webhook_enqueue(
        self, kind: str, payloads: Sequence[dict[str, Any]], targets: WebhookTargets
    ) -> int:
        if not payloads:
            return 0
        count: int = await self._call(_webhook_enqueue, kind, json.dumps(list(payloads)),
                                      self._clock(), _outbox_args(targets))
        return count

    async def webhook_claim(self, now: float, limit: int, lease: float) -> list[WebhookRecord]:
        due: str = await self._call(_webhook_claim, now, limit, now + lease)
        rows = json.loads(due)
        return sorted((_webhook_record((*row, None)) for row in rows), key=lambda r: r.id)

    async def webhook_delivered(self, ids: Sequence[int]) -> None:
        if ids:
            await self._call(_webhook_delivered, list(ids))

    async def webhook_retry(self, delivery_id: int, next_at: float, error: str) -> None:
        await self._call(_execute, _WEBHOOK_RETRY, (next_at, error, delivery_id))

    async def webhook_kill(self, delivery_id: int, at: float, error: str) -> None:
        await self._call(_execute, _WEBHOOK_KILL, (at, error, delivery_id))

    async def webhook_release(self, ids: Sequence[int], now: float) -> None:
        if ids:
            await self._call(_execute, _WEBHOOK_RELEASE, (now, json.dumps(list(ids))))

    async def webhook_dead(self, after_id: int = 0, limit: int = 100, *,
                           tenants: Sequence[str] | None = None) -> list[WebhookRecord]:
        rows: list[tuple[Any, ...]] = await self._call(
            _fetchall, _WEBHOOK_DEAD,
            (after_id, limit, None if tenants is None else json.dumps(list(tenants))))
        return [_webhook_record(row) for row in rows]

    async def webhook_replay(self, delivery_id: int, now: float) -> bool:
        changed: int = await self._call(_rowcount, _WEBHOOK_REPLAY, (now, now, delivery_id))
        return changed > 0

    async def webhook_depth(self) -> OutboxDepth:
        rows: list[tuple[Any, ...]] = await self._call(_fetchall, _WEBHOOK_DEPTH, ())
        waiting, oldest, dead = rows[0]
        return OutboxDepth(waiting or 0, oldest, dead or 0)


_WEBHOOK_COLUMNS = "id, kind, tenant_id, url, body, created_at, attempts, last_error, dead_at"
# DLR events: those of messages with a callback_url or of a tenant with a default one
# (?4, a JSON array), keyed by message so they go out in order.
_ENQUEUE_DLR = (
    "INSERT INTO webhook_outbox (kind, ordering_key, tenant_id, url, body, created_at,"
    " next_at, attempts) SELECT ?1, m.message_id, m.tenant_id, m.callback_url, j.value, ?2,"
    " ?2, 0 FROM json_each(?3) j JOIN messages m ON m.message_id = j.value ->> 'message_id'"
    " WHERE m.callback_url IS NOT NULL OR m.tenant_id IN (SELECT value FROM json_each(?4))"
    " ORDER BY j.key"
)
# MO events: ?4 holds each event's tenant (null: not sent), in the events' order.
_ENQUEUE_MO = (
    "INSERT INTO webhook_outbox (kind, ordering_key, tenant_id, url, body, created_at,"
    " next_at, attempts) SELECT ?1, NULL, t.value, NULL, j.value, ?2, ?2, 0"
    " FROM json_each(?3) j JOIN json_each(?4) t ON t.key = j.key"
    " WHERE t.value IS NOT NULL ORDER BY j.key"
)
# The oldest waiting event of each message (and any MO) that is due, as one row of JSON
# (each row a query returns costs the writer a wait for the GIL); the writer then claims
# them by moving next_at past the lease, in the same transaction.
_WEBHOOK_DUE = (
    "SELECT json_group_array(json_array(id, kind, tenant_id, url, body, created_at,"
    " attempts, last_error)) FROM (SELECT * FROM webhook_outbox o"
    " WHERE o.dead_at IS NULL AND o.next_at <= ?1 AND (o.ordering_key IS NULL OR NOT EXISTS"
    " (SELECT 1 FROM webhook_outbox p WHERE p.ordering_key = o.ordering_key"
    " AND p.dead_at IS NULL AND p.id < o.id)) ORDER BY o.next_at LIMIT ?2)"
)
_WEBHOOK_CLAIM = (
    "UPDATE webhook_outbox SET next_at = ? WHERE id IN (SELECT value ->> 0 FROM json_each(?))"
)
_WEBHOOK_RETRY = (
    "UPDATE webhook_outbox SET next_at = ?, last_error = ?, attempts = attempts + 1"
    " WHERE id = ?"
)
_WEBHOOK_KILL = (
    "UPDATE webhook_outbox SET dead_at = ?, last_error = ?, attempts = attempts + 1"
    " WHERE id = ?"
)
_WEBHOOK_RELEASE = (
    "UPDATE webhook_outbox SET next_at = ? WHERE dead_at IS NULL"
    " AND id IN (SELECT value FROM json_each(?))"
)
_WEBHOOK_DEAD = (
    f"SELECT {_WEBHOOK_COLUMNS} FROM webhook_outbox WHERE dead_at IS NOT NULL"  # noqa: S608
    " AND id > ?1 AND (?3 IS NULL OR tenant_id IN (SELECT value FROM json_each(?3)))"
    " ORDER BY id LIMIT ?2"
)
_WEBHOOK_REPLAY = (
    "UPDATE webhook_outbox SET dead_at = NULL, last_error = NULL, attempts = 0,"
    " next_at = ?, created_at = ? WHERE id = ? AND dead_at IS NOT NULL"
)
_WEBHOOK_DEPTH = (
    "SELECT count(*) FILTER (WHERE dead_at IS NULL),"
    " min(created_at) FILTER (WHERE dead_at IS NULL),"
    " count(*) FILTER (WHERE dead_at IS NOT NULL) FROM webhook_outbox"
)


def _outbox_args(targets: WebhookTargets) -> tuple[str, str | None]:
    """(the tenants with a default URL, each MO event's tenant or None) as JSON."""
    owners = None if targets.owners is None else json.dumps(list(targets.owners))
    return json.dumps(list(targets.tenants)), owners


def _webhook_record(row: Sequence[Any]) -> WebhookRecord:
    delivery_id, kind, tenant_id, url, body, created_at, attempts, last_error, dead_at = row
    return WebhookRecord(id=delivery_id, kind=kind, tenant_id=tenant_id, url=url, body=body,
                         created_at=created_at, attempts=attempts, last_error=last_error,
                         dead_at=dead_at)


def _webhook_enqueue(conn: sqlite3.Connection, kind: str, array: str, at: float,
                     targets: tuple[str, str | None]) -> int:
    tenants, owners = targets
    if owners is None:
        return conn.execute(_ENQUEUE_DLR, (kind, at, array, tenants)).rowcount
    return conn.execute(_ENQUEUE_MO, (kind, at, array, owners)).rowcount


def _store_events_with_webhooks(conn: sqlite3.Connection, kind: str, array: str, count: int,
                                at: float, targets: tuple[str, str | None]) -> list[int]:
    ids = _store_events(conn, kind, array, count, at)
    _webhook_enqueue(conn, kind, array, at, targets)
    return ids


def _webhook_claim(conn: sqlite3.Connection, now: float, limit: int, until: float) -> str:
    due: str = conn.execute(_WEBHOOK_DUE, (now, limit)).fetchone()[0]
    if due != "[]":
        conn.execute(_WEBHOOK_CLAIM, (until, due))
    return due


def _webhook_delivered(conn: sqlite3.Connection, ids: list[int]) -> None:
    conn.execute("DELETE FROM webhook_outbox WHERE id IN (SELECT value FROM json_each(?))",
                 (json.dumps(ids),))


def _webhook_delivered_many(conn: sqlite3.Connection, calls: list[tuple[Any, ...]]) -> None:
    _webhook_delivered(conn, [i for (ids,) in calls for i in ids])


def _execute(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> None:
    conn.execute(sql, args)


def _rowcount(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> int:
    return conn.execute(sql, args).rowcount


def _fetchall(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return conn.execute(sql, args).fetchall()


def _accepted_ids(
    conn: sqlite3.Connection, operator_id: str, created_before: float, limit: int
) -> list[tuple[str, float]]:
    return conn.execute(
        "SELECT message_id, created_at FROM messages WHERE state = 'ACCEPTED'"
        " AND operator_id = ? AND created_at < ? ORDER BY created_at, message_id LIMIT ?",
        (operator_id, created_before, limit),
    ).fetchall()


class _HotIndex:
    """Recent submits, (operator_id, smsc_key) -> part: between size/2 and size of the
    latest, in two generations. New entries go to the young dict; once it holds size/2
    it becomes the old one and the old one is dropped whole. (Deleting the oldest entry
    of a single dict instead makes the next deletion scan every slot deleted before
    it: 24 us per insert once 200,000 are held, measured.)

    An entry is one string key and, for a single-part message, the message id as the
    value (a PartRef otherwise): 165-190 bytes per entry instead of 295-325 for a
    tuple key and a PartRef (tracemalloc, 100,000 entries, ids of 9 and 36 characters).
    """

    __slots__ = ("_half", "_old", "_young")

    def __init__(self, size: int) -> None:
        self._half = (size + 1) // 2  # 0: nothing is kept
        self._young: dict[str, str | PartRef] = {}
        self._old: dict[str, str | PartRef] = {}

    def put(self, operator_id: str, smsc_key: str, ref: PartRef) -> None:
        self.put_part(operator_id, smsc_key, ref.message_id, ref.part, ref.total)

    def put_part(self, operator_id: str, smsc_key: str, message_id: str, part: int,
                 total: int) -> None:
        if not self._half:
            return
        young = self._young
        young[f"{operator_id}\x00{smsc_key}"] = (
            message_id if total == 1 else PartRef(message_id, part, total))
        if len(young) >= self._half:
            self._old, self._young = young, {}

    def get(self, operator_id: str, smsc_key: str) -> PartRef | None:
        key = f"{operator_id}\x00{smsc_key}"
        found = self._young.get(key)
        if found is None:
            found = self._old.get(key)
            if found is None:
                return None
        return PartRef(found, 1, 1) if isinstance(found, str) else found


# -- operations: run in the writer thread, inside the batch's transaction ----------------


def _message_row(message: MessageRecord) -> tuple[Any, ...]:
    return tuple(getattr(message, f) for f in _MESSAGE_FIELDS)


def _message_record(row: Sequence[Any]) -> MessageRecord:
    # Spelled out: 4x cheaper than MessageRecord(**dict(zip(...))), and a refill
    # builds one per spilled message.
    (message_id, tenant_id, source, destination, data_coding, body, operator_id,
     registered_delivery, validity, priority, state, attempts, created_at, updated_at,
     reason, command_status, receipt_stat, receipt_err, callback_url) = row
    return MessageRecord(
        message_id=message_id, tenant_id=tenant_id, source=source, destination=destination,
        data_coding=data_coding, body=body, operator_id=operator_id,
        registered_delivery=registered_delivery, validity=validity, priority=priority,
        state=state, attempts=attempts, created_at=created_at, updated_at=updated_at,
        reason=reason, command_status=command_status, receipt_stat=receipt_stat,
        receipt_err=receipt_err, callback_url=callback_url,
    )


def _backlog_item(item: list[Any]) -> tuple[MessageRecord, frozenset[int]]:
    """A message and the parts it has sent, from _SELECT_ACCEPTED_AFTER (fields in
    _MESSAGE_FIELDS order, then the parts)."""
    (message_id, tenant_id, source, destination, data_coding, body, operator_id,
     registered_delivery, validity, priority, state, attempts, created_at, updated_at,
     reason, command_status, receipt_stat, receipt_err, callback_url, sent) = item
    record = MessageRecord(
        message_id=message_id, tenant_id=tenant_id, source=source, destination=destination,
        data_coding=data_coding, body=bytes.fromhex(body), operator_id=operator_id,
        registered_delivery=registered_delivery, validity=validity, priority=priority,
        state=state, attempts=attempts, created_at=float(created_at),
        updated_at=float(updated_at), reason=reason, command_status=command_status,
        receipt_stat=receipt_stat, receipt_err=receipt_err, callback_url=callback_url,
    )
    return record, _part_numbers(sent) if sent is not None else _NO_PARTS


_NO_PARTS: frozenset[int] = frozenset()


def _part_numbers(listed: str | int | None) -> frozenset[int]:
    """Part numbers from group_concat (one part comes back as a plain integer)."""
    if listed is None:
        return frozenset()
    return frozenset(int(n) for n in str(listed).split(","))


def _run_ops(
    conn: sqlite3.Connection, ops: list[tuple[_Op, tuple[Any, ...]]]
) -> list[tuple[bool, Any]]:
    """Run ops in order; a run of consecutive calls of one kind goes through its
    variant for many calls (about half the cost per call)."""
    results: list[tuple[bool, Any]] = []
    i = 0
    while i < len(ops):
        op, args = ops[i]
        many = _MANY.get(op)
        if many is None:
            results.append((True, op(conn, *args)))
            i += 1
            continue
        j = i + 1
        while j < len(ops) and ops[j][0] is op:
            j += 1
        values = many(conn, [a for _, a in ops[i:j]])
        results.extend((True, v) for v in (values or [None] * (j - i)))
        i = j
    return results


def _accept(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    conn.executemany(_INSERT_MESSAGE, rows)


def _accept_many(conn: sqlite3.Connection, calls: list[tuple[Any, ...]]) -> None:
    conn.executemany(_INSERT_MESSAGE, rows_of_calls(calls))


def _accept_new(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[str]:
    # One execute per row: its rowcount says whether it was stored, and this costs no
    # more than finding the stored ids first and then an executemany (measured).
    return [row[0] for row in rows if conn.execute(_INSERT_NEW_MESSAGE, row).rowcount]


def _pending(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(_SELECT_PENDING, (ACCEPTED,)).fetchall()


def _accepted_after(
    conn: sqlite3.Connection, operator_id: str | None, created_at: float, message_id: str,
    limit: int,
) -> str:
    page: str = conn.execute(
        _SELECT_ACCEPTED_AFTER, (operator_id, created_at, message_id, limit)
    ).fetchone()[0]
    return page


def _accepted_backlog(conn: sqlite3.Connection) -> list[tuple[str | None, float]]:
    return conn.execute(_ACCEPTED_BACKLOG).fetchall()


def _set_state(
    conn: sqlite3.Connection,
    message_id: str,
    state: str,
    at: float,
    reason: str | None,
    command_status: int | None,
    attempts: int | None,
) -> None:
    conn.execute(
        "UPDATE messages SET state = ?, updated_at = ?, reason = coalesce(?, reason),"
        " command_status = coalesce(?, command_status), attempts = coalesce(?, attempts)"
        " WHERE message_id = ?",
        (state, at, reason, command_status, attempts, message_id),
    )


def _get_message(conn: sqlite3.Connection, message_id: str) -> dict[str, Any] | None:
    row = conn.execute(_SELECT_MESSAGE, (message_id,)).fetchone()
    if row is None:
        return None
    message: dict[str, Any] = dict(zip(_MESSAGE_FIELDS, row, strict=True))
    parts = conn.execute(_SELECT_PARTS, (message_id,)).fetchall()
    message["parts"] = [dict(zip(_PART_FIELDS, p, strict=True)) for p in parts]
    return message


def _submitted(conn: sqlite3.Connection, *args: Any) -> None:
    _submitted_many(conn, [args])


def _submitted_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    _submitted_many(conn, rows)


def _submitted_rows_many(conn: sqlite3.Connection, calls: list[tuple[Any, ...]]) -> None:
    _submitted_many(conn, rows_of_calls(calls))


def _submitted_many(conn: sqlite3.Connection, calls: list[tuple[Any, ...]]) -> None:
    """Each call: (message_id, part, total, operator_id, smsc_id, smsc_key, at).
    The rows go to SQLite as JSON, grouped by what they share (see ``_SUBMITTED_PARTS``)."""
    groups: dict[tuple[Any, ...], list[tuple[str, str, str]]] = {}
    for message_id, part, total, operator_id, smsc_id, smsc_key, at in calls:
        groups.setdefault((part, total, operator_id, at), []).append(
            (message_id, smsc_id, smsc_key))
    for (part, total, operator_id, at), rows in groups.items():
        conn.execute(_SUBMITTED_PARTS, (part, total, operator_id, SUBMITTED, at,
                                        json.dumps(rows), PENDING))
        if total == 1:  # the message is SUBMITTED with its only part
            conn.execute(_SUBMITTED_MESSAGES, (SUBMITTED, operator_id, at,
                                               json.dumps([row[0] for row in rows]), ACCEPTED))
    # A multipart message is SUBMITTED once every part is.
    conn.executemany(
        _SUBMIT_MESSAGE_ALL_PARTS,
        (
            (SUBMITTED, op_id, at, mid, ACCEPTED, mid, PENDING, total)
            for mid, _, total, op_id, _, _, at in calls
            if total != 1
        ),
    )


def _lookup(
    conn: sqlite3.Connection, operator_id: str, keys: tuple[str, ...]
) -> tuple[str, PartRef] | None:
    for key in keys:
        row = conn.execute(
            "SELECT message_id, part, total FROM parts WHERE operator_id = ? AND smsc_key = ?"
            " ORDER BY submitted_at DESC LIMIT 1",
            (operator_id, key),
        ).fetchone()
        if row is not None:
            return key, PartRef(*row)
    return None


def _lookup_many(
    conn: sqlite3.Connection, operator_id: str, key_sets: list[tuple[str, ...]]
) -> list[tuple[str, PartRef] | None]:
    return [_lookup(conn, operator_id, keys) for keys in key_sets]


def _receipt(
    conn: sqlite3.Connection,
    message_id: str,
    part: int,
    state: str,
    stat: str | None,
    err: str | None,
    at: float,
) -> str | None:
    if state in FINAL_STATES:
        rows = conn.execute(_FINAL_PART, (state, stat, err, at, message_id, part)).fetchall()
        if not rows:
            return None
        if rows[0][0] == 1:  # the common case, one part: its state is the message's
            conn.execute(_FINAL_MESSAGE, (state, stat, err, at, message_id, state))
            return state
    else:  # intermediate (ENROUTE, ACCEPTD): never undoes a final receipt
        conn.execute(_INTERMEDIATE_PART, (stat, err, message_id, part))
    return _aggregate(conn, message_id, stat, err, at)


def _aggregate(
    conn: sqlite3.Connection, message_id: str, stat: str | None, err: str | None, at: float
) -> str | None:
    """The message's state from its parts' after a receipt, stored if it changed."""
    row = conn.execute("SELECT state FROM messages WHERE message_id = ?", (message_id,)).fetchone()
    parts = conn.execute(
        "SELECT state, total FROM parts WHERE message_id = ? ORDER BY part", (message_id,)
    ).fetchall()
    if row is None or not parts:
        return None
    current: str = row[0]
    new_state = aggregate_state(current, [p[0] for p in parts], parts[0][1])
    if new_state != current:
        conn.execute(_FINAL_MESSAGE, (new_state, stat, err, at, message_id, new_state))
    return new_state


def _receipts(conn: sqlite3.Connection, rows: list[ReceiptRow]) -> list[str | None]:
    """Each row as ``_receipt`` would record it, in order; the common case (final
    receipts for single-part messages, see ``split_receipts``) in three statements."""
    answers: list[str | None] = [None] * len(rows)
    set_based, in_order = split_receipts(rows)
    set_based_answers = _single_part_receipts(conn, [rows[i] for i in set_based])
    for i, answer in zip(set_based, set_based_answers, strict=True):
        answers[i] = answer
    for i in in_order:
        message_id, part, _, state, stat, err, at = rows[i]
        answers[i] = _receipt(conn, message_id, part, state, stat, err, at)
    return answers


def _receipts_many(conn: sqlite3.Connection, calls: list[tuple[Any, ...]]) -> list[Any]:
    return per_call(_receipts(conn, rows_of_calls(calls)), calls)


def _single_part_receipts(conn: sqlite3.Connection, rows: list[ReceiptRow]) -> list[str | None]:
    """Final receipts, each for a different message: ``_receipt`` for each, set-based,
    one group of rows per (part, state, stat, err, time)."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, (_, part, _, state, stat, err, at) in enumerate(rows):
        groups.setdefault((part, state, stat, err, at), []).append(i)
    answers: list[str | None] = [row[3] for row in rows]
    singles: dict[tuple[Any, ...], list[str]] = {}
    multipart: list[int] = []  # the receipt said one part, the table says more
    for (part, state, stat, err, at), positions in groups.items():
        ids = json.dumps([rows[i][0] for i in positions])
        (unusual,) = conn.execute(_UNUSUAL_PARTS, (ids, part)).fetchone()
        totals: dict[int, int | None] = {positions[j]: total for j, total in json.loads(unusual)}
        conn.execute(_FINAL_PARTS, (state, stat, err, at, ids, part))
        for i in positions:
            if i not in totals:
                singles.setdefault((state, stat, err, at), []).append(rows[i][0])
            elif totals[i] is None:  # no such part
                answers[i] = None
            else:
                multipart.append(i)
    for (state, stat, err, at), message_ids in singles.items():
        conn.execute(_FINAL_MESSAGES, (state, stat, err, at, json.dumps(message_ids), state))
    for i in sorted(multipart):  # aggregate, as _receipt does
        message_id, _, _, _, stat, err, at = rows[i]
        answers[i] = _aggregate(conn, message_id, stat, err, at)
    return answers


def _put_orphan(
    conn: sqlite3.Connection, operator_id: str, keys: tuple[str, ...], receipt: str, at: float
) -> None:
    cursor = conn.execute(
        "INSERT INTO orphan_receipts (operator_id, receipt, created_at) VALUES (?, ?, ?)",
        (operator_id, receipt, at),
    )
    conn.executemany(
        "INSERT OR IGNORE INTO orphan_keys (operator_id, smsc_key, orphan_id) VALUES (?, ?, ?)",
        [(operator_id, key, cursor.lastrowid) for key in keys],
    )


def _take_orphans(conn: sqlite3.Connection, operator_id: str, smsc_key: str) -> list[str]:
    rows = conn.execute(
        "SELECT o.id, o.receipt FROM orphan_keys k JOIN orphan_receipts o ON o.id = k.orphan_id"
        " WHERE k.operator_id = ? AND k.smsc_key = ? ORDER BY o.id",
        (operator_id, smsc_key),
    ).fetchall()
    ids = [(orphan_id,) for orphan_id, _ in rows]
    conn.executemany("DELETE FROM orphan_keys WHERE orphan_id = ?", ids)
    conn.executemany("DELETE FROM orphan_receipts WHERE id = ?", ids)
    return [receipt for _, receipt in rows]


def _put_mo_parts(conn: sqlite3.Connection, parts: list[MoPartRecord]) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO mo_parts (operator_id, source, reference, seq, total,"
        " destination, data_coding, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        parts,
    )


def _drop_mo_parts(conn: sqlite3.Connection, keys: list[tuple[str, str, int]]) -> None:
    conn.executemany(
        "DELETE FROM mo_parts WHERE operator_id = ? AND source = ? AND reference = ?", keys)


def _load_mo_parts(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT operator_id, source, reference, seq, total, destination, data_coding, body,"
        " created_at FROM mo_parts ORDER BY created_at").fetchall()


def _held_orphan_ids(
    conn: sqlite3.Connection, operator_id: str, smsc_key: str, hold_id: str
) -> list[int]:
    rows = conn.execute(
        "SELECT o.id, o.receipt FROM orphan_keys k JOIN orphan_receipts o ON o.id = k.orphan_id"
        " WHERE k.operator_id = ? AND k.smsc_key = ?",
        (operator_id, smsc_key),
    ).fetchall()
    return [orphan_id for orphan_id, receipt in rows
            if json.loads(receipt).get("hold_id") == hold_id]


def _drop_orphan(conn: sqlite3.Connection, operator_id: str, smsc_key: str, hold_id: str) -> int:
    ids = [(orphan_id,) for orphan_id in _held_orphan_ids(conn, operator_id, smsc_key, hold_id)]
    conn.executemany("DELETE FROM orphan_keys WHERE orphan_id = ?", ids)
    conn.executemany("DELETE FROM orphan_receipts WHERE id = ?", ids)
    return len(ids)


def _widen_orphan(conn: sqlite3.Connection, operator_id: str, smsc_key: str, hold_id: str,
                  more_keys: tuple[str, ...]) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO orphan_keys (operator_id, smsc_key, orphan_id) VALUES (?, ?, ?)",
        [(operator_id, key, orphan_id)
         for orphan_id in _held_orphan_ids(conn, operator_id, smsc_key, hold_id)
         for key in more_keys],
    )


def _take_orphans_many(
    conn: sqlite3.Connection, operator_id: str, smsc_keys: list[str]
) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key in dict.fromkeys(smsc_keys):  # each key once, in order
        rows = _take_orphans(conn, operator_id, key)
        if rows:
            found[key] = rows
    return found


def _ping(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT count(*) FROM idempotency_keys WHERE 0").fetchone()


def _find_messages(conn: sqlite3.Connection, message_ids: list[str]) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages"  # noqa: S608 -- constant columns
        " WHERE message_id IN (SELECT value FROM json_each(?))",
        (json.dumps(message_ids),),
    ).fetchall()


def _idem_claim(conn: sqlite3.Connection, scope: str, key: str, fingerprint: str, at: float,
                expired_before: float) -> tuple[str, str | None, float]:
    # A claim older than the window is taken over as if absent; the rows older than it
    # go meanwhile (the embedded store has no retention job).
    conn.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (expired_before,))
    conn.execute(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, response, created_at)"
        " VALUES (?, ?, ?, NULL, ?) ON CONFLICT (scope, key) DO NOTHING",
        (scope, key, fingerprint, at),
    )
    row = conn.execute(
        "SELECT fingerprint, response, created_at FROM idempotency_keys"
        " WHERE scope = ? AND key = ?", (scope, key)).fetchone()
    return str(row[0]), row[1], float(row[2])


def _idem_complete(conn: sqlite3.Connection, scope: str, key: str, fingerprint: str,
                   response: str) -> None:
    conn.execute(
        "UPDATE idempotency_keys SET response = ? WHERE scope = ? AND key = ?"
        " AND fingerprint = ? AND response IS NULL",
        (response, scope, key, fingerprint),
    )


def _idem_release(conn: sqlite3.Connection, scope: str, key: str, fingerprint: str) -> None:
    conn.execute(
        "DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND fingerprint = ?"
        " AND response IS NULL", (scope, key, fingerprint),
    )


def _store_event(conn: sqlite3.Connection, kind: str, payload: str, at: float) -> int:
    cursor = conn.execute(
        "INSERT INTO events (kind, payload, created_at) VALUES (?, ?, ?)", (kind, payload, at)
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _store_events(
    conn: sqlite3.Connection, kind: str, array: str, count: int, at: float
) -> list[int]:
    # One INSERT ... SELECT in the writer's transaction draws consecutive ids, in
    # json_each's order, after the highest ever drawn (AUTOINCREMENT): read that
    # instead of a RETURNING row per event (each row costs the writer a wait for the GIL).
    before = conn.execute(_LAST_EVENT_ID).fetchone()
    first = (before[0] if before else 0) + 1
    cursor = conn.execute(_INSERT_EVENTS, (kind, at, array))
    if cursor.lastrowid != first + count - 1:
        raise RuntimeError("events: ids were not drawn consecutively")
    return list(range(first, first + count))


def _list_events(
    conn: sqlite3.Connection, kind: str | None, after_id: int, limit: int,
    tenants: str | None,
) -> list[tuple[int, str, str, float]]:
    # ? IS NULL: all kinds / all tenants. A tenant's events are those whose message_id
    # is one of its messages.
    return conn.execute(
        "SELECT id, kind, payload, created_at FROM events e"
        " WHERE (?1 IS NULL OR kind = ?1) AND id > ?2 AND (?4 IS NULL OR EXISTS ("
        " SELECT 1 FROM messages m WHERE m.message_id = e.payload ->> 'message_id'"
        " AND m.tenant_id IN (SELECT value FROM json_each(?4))))"
        " ORDER BY id LIMIT ?3",
        (kind, after_id, limit, tenants),
    ).fetchall()


# Calls with a variant for many calls: fn(conn, [args of each call]) -> one result per
# call, or None when each call's result is None.
_MANY: dict[_Op, Callable[[sqlite3.Connection, list[tuple[Any, ...]]], list[Any] | None]] = {
    _accept: _accept_many,
    _submitted: _submitted_many,
    _submitted_rows: _submitted_rows_many,
    _receipts: _receipts_many,
    _webhook_delivered: _webhook_delivered_many,
}
