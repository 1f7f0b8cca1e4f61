"""The backlog reads of every CorrelationStore (SqliteStore, PgStore): accepted_after
(one operator's ACCEPTED messages past a (created_at, message_id) cursor, with the
parts sent already) and accepted_backlog; and SqliteStore's hot index."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from records import message
from test_store_contract import truncate

from correlation.hot_index import HotIndex
from correlation.pg_store import PgStore
from correlation.sqlite_store import SqliteStore
from correlation.store import FAILED, CorrelationStore, MessageRecord, PartRef


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.services)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CorrelationStore]:
    opened: CorrelationStore
    if request.param == "sqlite":
        opened = SqliteStore(str(tmp_path / "s.sqlite"))
    else:
        dsn = request.getfixturevalue("pg_dsn")
        await truncate(dsn)
        opened = PgStore(dsn, migrate_on_open=False)
    await opened.open()
    yield opened
    await opened.close()


def on(operator_id: str | None, message_id: str, at: float) -> MessageRecord:
    record = message(message_id, at)
    record.operator_id = operator_id
    return record


def ids(rows: list[tuple[MessageRecord, frozenset[int]]]) -> list[str]:
    return [record.message_id for record, _ in rows]


async def test_accepted_after_pages_one_operator_from_a_cursor(store: CorrelationStore) -> None:
    # Out of id order within one timestamp, another operator in between, one finished.
    await store.accept([on("op", "m3", 10.0), on("op", "m1", 10.0), on("other", "x1", 10.5),
                        on("op", "m4", 11.0), on("op", "m5", 12.0), on("op", "m6", 13.0)])
    await store.set_message_state("m5", FAILED, at=14.0)
    first = await store.accepted_after("op", None, 2)
    assert ids(first) == ["m1", "m3"]
    record = first[1][0]
    assert (record.created_at, record.body, record.operator_id) == (10.0, b"hello", "op")
    rest = await store.accepted_after("op", (record.created_at, record.message_id), 10)
    assert ids(rest) == ["m4", "m6"]
    assert await store.accepted_after("op", (13.0, "m6"), 10) == []
    assert ids(await store.accepted_after("other", None, 10)) == ["x1"]
    assert await store.accepted_backlog() == {"op": 13.0, "other": 10.5}


async def test_accepted_after_names_the_parts_sent_already(store: CorrelationStore) -> None:
    await store.accept([on("op", "m1", 1.0), on("op", "m2", 2.0)])
    await store.record_submitted("m1", 1, 3, "op", "A1", "a1", 3.0)
    await store.record_submitted("m1", 3, 3, "op", "A3", "a3", 3.0)
    await store.record_submitted("m2", 2, 2, "op", "B2", "b2", 3.0)
    rows = await store.accepted_after("op", None, 10)
    assert [(r.message_id, parts) for r, parts in rows] == [
        ("m1", frozenset({1, 3})), ("m2", frozenset({2}))]


async def test_an_empty_backlog(store: CorrelationStore) -> None:
    assert await store.accepted_backlog() == {}
    assert await store.accepted_after("op", None, 10) == []


# -- SqliteStore's hot index -----------------------------------------------------------


def test_hot_index_keeps_between_half_and_all_of_its_size() -> None:
    hot = HotIndex(4)

    def kept() -> list[int]:
        return [i for i in range(20) if hot.get("op", f"k{i}") is not None]

    for i in range(10):
        hot.put("op", f"k{i}", PartRef(f"m{i}", 1, 1))
    assert kept() == [8, 9]  # the young generation just became the old one
    hot.put("op", "k10", PartRef("m10", 1, 1))
    assert kept() == [8, 9, 10]
    assert hot.get("op", "k9") == PartRef("m9", 1, 1)
    assert hot.get("other", "k9") is None


def test_hot_index_keeps_multipart_refs_and_the_latest_submit() -> None:
    hot = HotIndex(100)
    hot.put("op", "k1", PartRef("m1", 2, 3))
    hot.put("op", "k2", PartRef("m2", 1, 1))
    hot.put("op", "k2", PartRef("m3", 1, 2))  # the same SMSC id again: the latest wins
    assert hot.get("op", "k1") == PartRef("m1", 2, 3)
    assert hot.get("op", "k2") == PartRef("m3", 1, 2)


def test_hot_index_of_size_zero_keeps_nothing() -> None:
    hot = HotIndex(0)
    hot.put("op", "k1", PartRef("m1", 1, 1))
    assert hot.get("op", "k1") is None
