"""Fixtures for tests of PgStore beyond the shared contract (a pytest plugin: list it
in a module's ``pytest_plugins``): a Redis key prefix and client per test, and the
PgStores a test opens, closed at its end; and a query's plan on a filled table."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis
from servers import REDIS_URL, redis_prefix

from correlation.pg_store import PgStore
from correlation.store import SUBMITTED


class PgStores:
    """Opens PgStores on a migrated database (``migrate_on_open=False``) and keeps
    them for the fixture to close."""

    def __init__(self) -> None:
        self.opened: list[PgStore] = []

    async def open(self, dsn: str, redis_url: str | None, **kw: Any) -> PgStore:
        store = PgStore(dsn, redis_url, migrate_on_open=False, **kw)
        await store.open()
        self.opened.append(store)
        return store


@pytest.fixture
async def pg_stores() -> AsyncIterator[PgStores]:
    stores = PgStores()
    yield stores
    for store in stores.opened:
        await store.close()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    async for value in redis_prefix():
        yield value


@pytest.fixture
async def client() -> AsyncIterator[redis.Redis]:
    c = redis.Redis.from_url(REDIS_URL)
    yield c
    await c.aclose()


@pytest.fixture
def explain_on_20000_parts() -> Callable[..., Awaitable[str]]:
    return _explain_on_20000_parts


async def _explain_on_20000_parts(dsn: str, sql: str, *args: Any) -> str:
    """PostgreSQL's plan for ``sql`` once smpp.message_correlations holds 20,000
    submitted parts across five operators (analysed): what a busy replica would run."""
    conn = await asyncpg.connect(dsn)
    try:
        at = datetime.fromtimestamp(1.0, UTC)
        rows = [
            (f"m{i}", 1, 1, f"op{i % 5}", f"{i:x}", f"{i:x}", SUBMITTED, at) for i in range(20_000)
        ]
        columns = ["message_id", "part", "total", "operator_id", "smsc_id", "smsc_key", "state",
                   "submitted_at"]  # fmt: skip
        await conn.copy_records_to_table(
            "message_correlations", schema_name="smpp", records=rows, columns=columns
        )
        await conn.execute("ANALYZE smpp.message_correlations")
        lines = await conn.fetch("EXPLAIN " + sql, *args)
    finally:
        await conn.close()
    return "\n".join(r[0] for r in lines)
