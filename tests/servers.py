"""The real servers the services tests talk to, in one place: where they are (each URL
overridable by an SMPPD_TEST_* variable), a fresh PostgreSQL database per module or
block, a Redis key prefix per test, and NATS streams removed after a test. Unreachable
servers fail the test, never skip it."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats
import pytest
import redis.asyncio as redis

from correlation.migrate import migrate
from smppd.cluster.nats_bus import DISPATCH_SCHEMA

PG_DSN = os.environ.get("SMPPD_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1
REDIS_URL = os.environ.get("SMPPD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("SMPPD_TEST_NATS_URL", "nats://127.0.0.1:4222")
T = TypeVar("T")



def dsn_for(database: str) -> str:
    """SMPPD_TEST_PG_DSN pointed at another database."""
    parts = urlsplit(PG_DSN)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _admin() -> asyncpg.Connection:
    try:
        conn: asyncpg.Connection = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL unreachable at {PG_DSN} (SMPPD_TEST_PG_DSN): {exc}")
    return conn


async def create_database(prefix: str = "smppd_test") -> str:
    """A new, empty database; returns its DSN."""
    name = f"{prefix}_{secrets.token_hex(6)}"  # lower-case hex: a safe identifier
    conn = await _admin()
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return dsn_for(name)


async def drop_database(dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    conn = await _admin()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_database(prefix: str = "smppd_test") -> AsyncIterator[str]:
    """A new, empty database for the block; yields its DSN and drops it afterwards."""
    dsn = await create_database(prefix)
    try:
        yield dsn
    finally:
        await drop_database(dsn)


def run_in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a loop of its own (callable even from a loop)."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, coro).result()


@contextmanager
def migrated_database() -> Iterator[str]:
    """A fresh, migrated database, for a module-scoped (synchronous) fixture."""
    dsn = run_in_thread(create_database())
    try:
        run_in_thread(migrate(dsn))
        yield dsn
    finally:
        run_in_thread(drop_database(dsn))


async def redis_prefix() -> AsyncGenerator[str, None]:
    """A per-test Redis key prefix; fails if Redis is down, deletes the keys after."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (OSError, redis.RedisError) as exc:
        await client.aclose()
        pytest.fail(f"Redis unreachable at {REDIS_URL} (SMPPD_TEST_REDIS_URL): {exc}")
    prefix = f"smppd_test:{secrets.token_hex(6)}:"
    try:
        yield prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture(name="prefix")
async def daemon_key_prefix() -> AsyncIterator[str]:
    """The ``prefix`` fixture of the daemon tests (import it into the module): a Redis
    prefix of the test's own for ``[redis] key_prefix``, which takes it without the
    trailing colon."""
    async for value in redis_prefix():
        yield value.rstrip(":")


@asynccontextmanager
async def jetstream(names: dict[str, str] | None = None) -> AsyncIterator[Any]:
    """JetStream on NATS_URL for the block; then the streams of ``names`` (see
    e2e_helpers.nats_names) are removed, those a failed test never made included."""
    nc = await nats.connect(NATS_URL)
    try:
        yield nc.jetstream()
    finally:
        for stream in ([names["dispatch_stream"], names["dlr_stream"], names["mo_stream"]]
                       if names else []):
            with suppress(Exception):
                await nc.jetstream().delete_stream(stream)
        await nc.close()


async def delete_streams(names: dict[str, str]) -> None:
    async with jetstream(names):
        pass


# -- NATS: one dispatch command as a publisher sends it --------------------------------


def command(message_id: str, destination: str = "+93700000001", **fields: Any) -> bytes:
    """A ``smppd.dispatch.v1`` command for ``message_id`` (tenant t1, sender SMPPD)."""
    message = {
        "message_id": message_id,
        "tenant_id": "t1",
        "source": "SMPPD",
        "destination": destination,
        "text": "hello",
        **fields,
    }
    return json.dumps({"schema": DISPATCH_SCHEMA, "message": message}).encode()
