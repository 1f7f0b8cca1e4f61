"""The embedded correlation store: one SQLite file, written by one thread, group commit.

Group commit as ``correlation.facade`` describes it, the batches run by a single
writer thread, so the loop never blocks on SQLite. Receipt lookups go through the
queue too (after the writes queued before them, so the table is complete for them),
once the hot index of recent submits has no answer. Backlog reads and pings run on a
connection and thread of their own.

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
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from correlation import sqlite_ops
from correlation.facade import Call, GroupCommitStore, Op, Result, StoreOps, SubmitRow
from correlation.hot_index import HotIndex
from correlation.sqlite_sql import _ADDED_COLUMNS, _SCHEMA
from correlation.store import PartRef

MIN_SQLITE = (3, 38, 0)

log = logging.getLogger(__name__)


class SqliteStore(GroupCommitStore):
    """CorrelationStore over one SQLite file (see the module docstring)."""

    backlog_is_private = True  # one daemon per file: only it sends the ACCEPTED messages
    _ops: ClassVar[StoreOps] = sqlite_ops

    def __init__(
        self,
        path: str,
        *,
        clock: Callable[[], float] = time.time,
        hot_index_size: int = 100_000,
        max_batch: int = 4096,
        checkpoint_every: int = 32,
    ) -> None:
        super().__init__(clock=clock, max_batch=max_batch)
        self._path = path
        self.directory = os.path.dirname(os.path.abspath(path))  # for the spill files
        # Recent submits: most receipts arrive within seconds, so they never touch the table.
        self._hot = HotIndex(hot_index_size)
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        # Backlog reads (accepted_after) on a connection and thread of their own, opened
        # at the first: they see what is committed without waiting behind the writes.
        self._reader: ThreadPoolExecutor | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._checkpoint_every = checkpoint_every
        self._commits = 0  # since the last checkpoint started
        self._checkpointer: ThreadPoolExecutor | None = None
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._checkpointing: asyncio.Future[tuple[int, int, int]] | None = None

    # -- connections -------------------------------------------------------------------

    async def _connect(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._open_file)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _open_file(self) -> None:
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
        self._conn = conn

    async def _disconnect(self) -> None:
        loop = asyncio.get_running_loop()
        if self._checkpointer is not None:
            if self._checkpointing is not None:
                await asyncio.gather(self._checkpointing, return_exceptions=True)
            await loop.run_in_executor(self._checkpointer, _close, self._checkpoint_conn)
            self._checkpoint_conn = None
            self._checkpointer.shutdown(wait=True)
            self._checkpointer = None
        if self._reader is not None:
            await loop.run_in_executor(self._reader, _close, self._read_conn)
            self._read_conn = None
            self._reader.shutdown(wait=True)
            self._reader = None
        if self._executor is not None:
            await loop.run_in_executor(self._executor, _close, self._conn)
            self._conn = None
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _beside(self, op: Op, args: tuple[Any, ...]) -> Any:
        """``op(conn, *args)`` on the reader connection: it sees every committed write,
        and none still queued (it does not wait for them)."""
        if self._reader is None:
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-reader")
        return await asyncio.get_running_loop().run_in_executor(
            self._reader, self._run_read, op, args)

    def _run_read(self, op: Op, args: tuple[Any, ...]) -> Any:
        if self._read_conn is None:
            self._read_conn = sqlite3.connect(self._path, isolation_level=None,
                                              check_same_thread=False)
            self._read_conn.execute("PRAGMA query_only=ON")
        return op(self._read_conn, *args)

    # -- batches ---------------------------------------------------------------------

    async def _run_calls(self, calls: list[Call]) -> list[Result]:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._run_batch, calls)

    def _run_batch(self, calls: list[Call]) -> list[Result]:
        """In the writer thread: the batch in one transaction; if any op fails, each on
        its own so one bad call does not fail the others."""
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = sqlite_ops.run_ops(conn, calls)
            conn.execute("COMMIT")
            return results
        except Exception:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        return [self._run_one(conn, op, args) for op, args in calls]

    @staticmethod
    def _run_one(conn: sqlite3.Connection, op: Op, args: tuple[Any, ...]) -> Result:
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = op(conn, *args)
            conn.execute("COMMIT")
            return True, result
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return False, exc

    async def _after_batch(self, calls: list[Call], results: list[Result]) -> None:
        """Start a checkpoint every ``checkpoint_every`` commits, unless one is still
        running (the writer does not wait for it)."""
        self._commits += 1
        if self._commits >= self._checkpoint_every and self._checkpointing is None:
            self.checkpoint()

    # -- checkpoints -----------------------------------------------------------------

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

    # -- part lookups: the hot index, then one queued read -----------------------------

    def _submitting(self, rows: Sequence[SubmitRow]) -> None:
        put = self._hot.put_part
        for message_id, part, total, operator_id, _, smsc_key, _ in rows:
            put(operator_id, smsc_key, message_id, part, total)

    def _recent(self, operator_id: str, smsc_key: str) -> PartRef | None:
        return self._hot.get(operator_id, smsc_key)

    async def _find_parts(
        self, operator_id: str, key_sets: list[Sequence[str]]
    ) -> list[PartRef | None]:
        # One queued read tries every key in order; it runs after every write queued
        # before it, so the table is complete for it, and the matcher relies on there
        # being exactly one await here.
        found: list[tuple[str, PartRef] | None] = await self._call(
            sqlite_ops.lookup_many, operator_id, key_sets)
        answers: list[PartRef | None] = []
        for hit in found:
            if hit is not None:
                self._hot.put(operator_id, *hit)
            answers.append(None if hit is None else hit[1])
        return answers


def _close(conn: sqlite3.Connection | None) -> None:
    """Close a connection (in the thread that uses it)."""
    if conn is not None:
        conn.close()
