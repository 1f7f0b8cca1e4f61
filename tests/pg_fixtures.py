"""Fixtures for tests of PgStore beyond the shared contract (a pytest plugin: list it
in a module's ``pytest_plugins``): a Redis key prefix and client per test, and the
PgStores a test opens, closed at its end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis
from test_store_contract import REDIS_URL, redis_prefix

from correlation.pg_store import PgStore


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
