"""PgStore beyond the shared contract: the Redis hot index, replicas, retention, kill -9.

A database of its own for this module (see test_store_contract), emptied before each
test, and a Redis key prefix per test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
import redis.asyncio as redis
from records import accept_then_kill_9, message
from servers import DEAD_REDIS, REDIS_URL, migrated_database
from test_store_contract import truncate

from correlation.pg_store import LOOKUP_SQL, purge_older_than
from correlation.redis_index import RedisIndex
from correlation.store import ACCEPTED, DELIVERED, PartRef

pytest_plugins = ["pg_fixtures"]  # prefix, client, pg_stores, explain_on_20000_parts

if TYPE_CHECKING:
    from pg_fixtures import PgStores

REPO = Path(__file__).resolve().parents[2]
DAY = 86400.0


@pytest.fixture(scope="module")
def module_dsn() -> Iterator[str]:
    with migrated_database() as dsn:
        yield dsn


@pytest.fixture
async def dsn(module_dsn: str) -> str:
    await truncate(module_dsn)
    return module_dsn


async def test_submits_are_indexed_in_redis_with_the_ttl(
    dsn: str, prefix: str, client: redis.Redis, pg_stores: PgStores
) -> None:
    store = await pg_stores.open(dsn, REDIS_URL, redis_prefix=prefix,
                                 redis_ttl_seconds=3 * 86400)
    await store.accept([message("m:1")])
    await store.record_submitted("m:1", 2, 3, "roshan", "0A", "a", 1.0)
    key = f"{prefix}roshan:a"
    assert await client.get(key) == b"2:3:m:1"
    assert 3 * 86400 - 60 < await client.ttl(key) <= 3 * 86400


async def test_lookup_asks_redis_first(dsn: str, prefix: str, pg_stores: PgStores) -> None:
    store = await pg_stores.open(dsn, REDIS_URL, redis_prefix=prefix)
    index = RedisIndex(REDIS_URL, prefix=prefix)
    try:
        # Only in Redis: found there (PostgreSQL has no such row).
        assert await index.put_many([("op", "cached", PartRef("m9", 1, 1))])
        assert await store.lookup_part("op", "cached") == PartRef("m9", 1, 1)
    finally:
        await index.close()


async def test_a_redis_miss_falls_back_to_postgres_and_refills(
    dsn: str, prefix: str, client: redis.Redis, pg_stores: PgStores
) -> None:
    writer = await pg_stores.open(dsn, REDIS_URL, redis_prefix=prefix)
    await writer.accept([message("m1")])
    await writer.record_submitted("m1", 1, 1, "op", "AB", "ab", 1.0)
    await client.delete(f"{prefix}op:ab")  # evicted, or Redis was down at submit time
    reader = await pg_stores.open(dsn, REDIS_URL, redis_prefix=prefix)
    assert await reader.lookup_part("op", "zz", "ab") == PartRef("m1", 1, 1)
    assert await client.get(f"{prefix}op:ab") == b"1:1:m1"


@pytest.mark.parametrize("redis_url", [REDIS_URL, None])
async def test_a_part_in_flight_does_not_beat_the_preferred_key_stored(
    dsn: str, prefix: str, pg_stores: PgStores, redis_url: str | None
) -> None:
    # "auto" ids: receipt "1872" reads as key "750" (decimal, preferred) or "1872" (hex).
    # Receipts lagging far behind submits: the submit whose key is the other reading
    # ("6258" -> "1872") is still in flight when the receipt for "1872" arrives.
    store = await pg_stores.open(dsn, redis_url, redis_prefix=prefix)
    await store.accept([message("m1871"), message("m6257")])
    await store.record_submitted("m1871", 1, 1, "op", "1872", "750", 1.0)
    in_flight = asyncio.ensure_future(
        store.record_submitted("m6257", 1, 1, "op", "6258", "1872", 2.0))
    await asyncio.sleep(0)  # queued, not committed
    assert await store.lookup_part("op", "750", "1872") == PartRef("m1871", 1, 1)
    assert await store.lookup_parts("op", [("750", "1872")]) == [PartRef("m1871", 1, 1)]
    await in_flight


async def test_redis_down_lookups_use_postgres(dsn: str, pg_stores: PgStores) -> None:
    writer = await pg_stores.open(dsn, DEAD_REDIS)
    await writer.accept([message("m1")])
    await writer.record_submitted("m1", 1, 1, "op", "AB", "ab", 1.0)  # its Redis SET fails
    reader = await pg_stores.open(dsn, DEAD_REDIS)  # another replica: nothing in memory
    assert await reader.lookup_part("op", "ab") == PartRef("m1", 1, 1)
    assert await reader.record_receipt("m1", 1, DELIVERED, "DELIVRD", "000", 2.0) == DELIVERED
    assert await reader.lookup_part("op", "nope") is None


async def test_redis_index_switches_itself_off_while_down() -> None:
    now = [0.0]
    index = RedisIndex(DEAD_REDIS, retry_after=5.0, clock=lambda: now[0])
    try:
        assert await index.get("op", ["ab"]) is None
        assert not index.available
        assert not await index.put_many([("op", "ab", PartRef("m1", 1, 1))])  # skipped
        now[0] = 5.0
        assert index.available  # tries again after retry_after
    finally:
        await index.close()


async def test_replicas_see_each_others_parts(
    dsn: str, prefix: str, pg_stores: PgStores
) -> None:
    a = await pg_stores.open(dsn, REDIS_URL, redis_prefix=prefix)
    b = await pg_stores.open(dsn, REDIS_URL, redis_prefix=prefix)
    c = await pg_stores.open(dsn, None)  # no Redis at all
    await a.accept([message("m1")])
    await a.record_submitted("m1", 1, 1, "op", "AB", "ab", 1.0)
    assert await b.lookup_part("op", "ab") == PartRef("m1", 1, 1)
    assert await c.lookup_part("op", "ab") == PartRef("m1", 1, 1)
    assert await b.record_receipt("m1", 1, DELIVERED, "DELIVRD", None, 2.0) == DELIVERED
    got = await c.get_message("m1")
    assert got is not None and got["state"] == DELIVERED


async def test_receipt_lookup_is_an_index_scan(
    dsn: str, explain_on_20000_parts: Callable[..., Awaitable[str]]
) -> None:
    text = await explain_on_20000_parts(dsn, LOOKUP_SQL, "op3", ["ab", "4e23"])
    assert "Index Scan using message_correlations_lookup" in text, text
    assert "Seq Scan on message_correlations" not in text, text


async def test_purge_deletes_finished_rows_older_than_the_cutoff(
    dsn: str, pg_stores: PgStores
) -> None:
    now = 100 * DAY
    store = await pg_stores.open(dsn, None)
    old, new = now - 31 * DAY, now - 29 * DAY
    await store.accept([message("old-done", old), message("old-sent", old)])
    await store.accept([message("old-waiting", old), message("new-done", new)])
    for mid, at in (("old-done", old), ("old-sent", old), ("new-done", new)):
        await store.record_submitted(mid, 1, 1, "op", mid, mid, at)
    await store.record_receipt("old-done", 1, DELIVERED, "DELIVRD", None, old)
    await store.record_receipt("new-done", 1, DELIVERED, "DELIVRD", None, new)
    await store.put_orphan("op", ["x"], {"stat": "DELIVRD"}, old)
    await store.put_orphan("op", ["y"], {"stat": "DELIVRD"}, new)

    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        counts = await purge_older_than(pool, 30, now=now, batch_size=1)
    finally:
        await pool.close()
    assert counts["messages"] == 2 and counts["message_correlations"] == 2
    assert counts["orphan_receipts"] == 1
    assert (
        await store.get_message("old-done") is None and await store.get_message("old-sent") is None
    )
    waiting = await store.get_message("old-waiting")
    assert waiting is not None and waiting["state"] == ACCEPTED  # still to be sent: kept
    assert await store.get_message("new-done") is not None
    assert await store.lookup_part("op", "old-done") is None
    assert await store.take_orphans("op", "x") == []
    assert await store.take_orphans("op", "y") == [{"stat": "DELIVRD"}]


async def test_accepted_messages_survive_kill_9(dsn: str, pg_stores: PgStores) -> None:
    # A real process, killed with SIGKILL right after accept() returned: nothing may be lost.
    await accept_then_kill_9("from correlation.pg_store import PgStore", f"PgStore({dsn!r})")
    again = await pg_stores.open(dsn, None)
    pending = await again.pending_messages()
    assert [m.message_id for m in pending] == [f"m{i}" for i in range(1, 200)]
    assert await again.lookup_part("op", "ab") == PartRef("m0", 1, 1)
