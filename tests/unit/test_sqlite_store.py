"""SqliteStore against a real SQLite file in tmp_path."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import FakeClock
from hypothesis import given
from hypothesis import strategies as st
from records import accept_then_kill_9, message

from correlation.sqlite_store import SqliteStore
from correlation.store import (
    ACCEPTED,
    DELIVERED,
    FAILURE_STATES,
    FINAL_STATES,
    PART_STATES,
    SUBMITTED,
    UNKNOWN,
    MessageRecord,
    PartRef,
    aggregate_state,
)

REPO = Path(__file__).resolve().parents[2]




@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "smppd.sqlite")


@pytest.fixture
async def store(path: str, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(path, clock=clock)
    await s.open()
    yield s
    await s.close()


async def reopen(path: str, **kwargs: int) -> SqliteStore:
    s = SqliteStore(path, **kwargs)  # type: ignore[arg-type]
    await s.open()
    return s


async def test_accept_survives_close_and_reopen(store: SqliteStore, path: str) -> None:
    await store.accept([message("m1"), message("m2")])
    await store.close()
    again = await reopen(path)
    try:
        got = await again.get_message("m1")
        assert got is not None
        assert got["state"] == ACCEPTED and got["body"] == b"hello" and got["parts"] == []
        assert [m.message_id for m in await again.pending_messages()] == ["m1", "m2"]
    finally:
        await again.close()


async def test_accepted_messages_survive_kill_9(path: str) -> None:
    # A real process, killed with SIGKILL right after accept() returned: nothing may be lost.
    await accept_then_kill_9("from correlation.sqlite_store import SqliteStore",
                             f"SqliteStore({path!r})")
    again = await reopen(path)
    try:
        pending = await again.pending_messages()
        assert [m.message_id for m in pending] == [f"m{i}" for i in range(1, 200)]
        assert await again.lookup_part("op", "ab") == PartRef("m0", 1, 1)
    finally:
        await again.close()


async def test_pending_after_crash_lists_only_unsubmitted(store: SqliteStore, path: str) -> None:
    await store.accept([message("m1", 1), message("m2", 2), message("m3", 3)])
    await store.record_submitted("m1", 1, 1, "op", "1", "1", 10.0)
    await store.record_submitted("m3", 1, 2, "op", "2", "2", 10.0)  # 1 part of 2: still pending
    # Simulated crash: a second connection reads the file while the first is left as it is.
    other = await reopen(path)
    try:
        assert [m.message_id for m in await other.pending_messages()] == ["m2", "m3"]
    finally:
        await other.close()
    await store.record_submitted("m3", 2, 2, "op", "3", "3", 11.0)
    assert [m.message_id for m in await store.pending_messages()] == ["m2"]
    got = await store.get_message("m3")
    assert got is not None and got["state"] == SUBMITTED and got["operator_id"] == "op"


async def test_lookup_from_hot_index_and_from_table(path: str) -> None:
    s = await reopen(path, hot_index_size=1)
    try:
        await s.accept([message("m1"), message("m2")])
        await s.record_submitted("m1", 1, 1, "op", "1A", "1a", 1.0)
        await s.record_submitted("m2", 1, 1, "op", "1B", "1b", 2.0)  # evicts m1 from the index
        assert await s.lookup_part("op", "1a") == PartRef("m1", 1, 1)
        assert await s.lookup_part("op", "zz", "1b") == PartRef("m2", 1, 1)
        assert await s.lookup_part("other-op", "1a") is None
        assert await s.lookup_part("op", "zz") is None
    finally:
        await s.close()


def _in_database_file(path: str, tmp: Path) -> int:
    """Messages in the database file alone, without its WAL: what checkpoints copied."""
    copy = tmp / "copy.sqlite"
    copy.write_bytes(Path(path).read_bytes())
    with sqlite3.connect(copy) as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages'").fetchone():
            return 0  # not even the schema was copied
        return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])


def _big(message_id: str) -> MessageRecord:
    record = message(message_id)
    record.body = bytes(2000)  # a page per two messages: the WAL passes 1,000 pages fast
    return record


async def test_the_writer_never_checkpoints_and_the_checkpointer_does(
    path: str, tmp_path: Path
) -> None:
    # Left to SQLite, the commit that takes the WAL past 1,000 pages copies it into the
    # database file itself, and every write queued behind it waits.
    store = await reopen(path, checkpoint_every=10_000)
    try:
        for batch in range(30):  # ~3,000 pages, 30 commits
            await store.accept([_big(f"m{batch}-{i}") for i in range(200)])
        assert _in_database_file(path, tmp_path) == 0
        busy, frames, copied = await store.checkpoint()
        assert (busy, copied) == (0, frames) and frames > 1000
        assert _in_database_file(path, tmp_path) == 6000
    finally:
        await store.close()


async def test_a_checkpoint_runs_after_every_n_commits(path: str, tmp_path: Path) -> None:
    store = await reopen(path, checkpoint_every=3)
    try:
        for i in range(3):
            await store.accept([message(f"m{i}")])
        running = store.checkpoint()  # the one the third commit started, if still running
        await running
        assert _in_database_file(path, tmp_path) == 3
    finally:
        await store.close()


async def test_closed_store_refuses_calls(path: str) -> None:
    s = SqliteStore(path)
    with pytest.raises(RuntimeError):
        await s.accept([message("m1")])


@given(st.lists(st.sampled_from(sorted(PART_STATES)), min_size=1, max_size=5))
def test_aggregate_state_rules(states: list[str]) -> None:
    got = aggregate_state(SUBMITTED, states, len(states))
    if any(s in FAILURE_STATES for s in states):
        assert got == next(s for s in states if s in FAILURE_STATES)
    elif all(s == DELIVERED for s in states):
        assert got == DELIVERED
    elif all(s in FINAL_STATES for s in states):
        assert got == UNKNOWN
    else:
        assert got == SUBMITTED
    # With a part still missing, only a failure decides.
    missing = aggregate_state(SUBMITTED, states, len(states) + 1)
    assert missing == (got if got in FAILURE_STATES else SUBMITTED)
