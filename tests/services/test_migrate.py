"""The migration runner against a real PostgreSQL: a fresh database per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from servers import fresh_database

from correlation.migrate import MigrationError, load_migrations, migrate

SMPP = "correlation.migrations"


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    async with fresh_database() as dsn:
        yield dsn


async def fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql)
        return rows
    finally:
        await conn.close()


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


async def test_applies_the_smpp_schema_once(dsn: str) -> None:
    applied = await migrate(dsn)
    assert [str(m) for m in applied] == [str(m) for m in load_migrations(SMPP)]
    assert [m.name for m in applied][:1] == ["0001_smpp_schema"]
    assert await migrate(dsn) == []
    tables = await fetch(
        dsn, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'smpp'"
    )
    assert {r[0] for r in tables} == {
        "schema_migrations",
        "messages",
        "message_correlations",
        "orphan_receipts",
        "orphan_keys",
        "mo_messages",
        "webhook_outbox",
        "mo_parts",
        "events",
        "idempotency_keys",
    }
    rows = await fetch(dsn, "SELECT source, version, name FROM smpp.schema_migrations")
    assert sorted(tuple(r) for r in rows) == [(SMPP, m.version, m.name)
                                              for m in load_migrations(SMPP)]
    indexes = await fetch(
        dsn, "SELECT indexdef FROM pg_indexes WHERE indexname = 'message_correlations_lookup'"
    )
    assert "(operator_id, smsc_key, submitted_at DESC)" in indexes[0][0]


async def test_replicas_migrating_at_once_apply_each_file_once(dsn: str) -> None:
    results = await asyncio.gather(*(migrate(dsn) for _ in range(4)))
    shipped = len(load_migrations(SMPP))
    assert sorted(len(r) for r in results) == [0, 0, 0, shipped]
    rows = await fetch(dsn, "SELECT count(*) FROM smpp.schema_migrations")
    assert rows[0][0] == shipped


async def test_packages_and_directories_run_in_order(dsn: str, tmp_path: Path) -> None:
    extra = write(
        tmp_path / "ops",
        {
            "0002_more.sql": "ALTER TABLE ops_t ADD COLUMN b int;",
            "0001_first.sql": "CREATE TABLE ops_t (a int REFERENCES smpp.events (id));",
            "README.md": "not a migration",
        },
    )
    applied = await migrate(dsn, (SMPP, extra))
    assert [str(m) for m in applied] == [
        *(str(m) for m in load_migrations(SMPP)),
        "ops/0001_first",
        "ops/0002_more",
    ]
    write(extra, {"0003_third.sql": "ALTER TABLE ops_t ADD COLUMN c int;"})
    assert [m.name for m in await migrate(dsn, (SMPP, extra))] == ["0003_third"]
    columns = await fetch(
        dsn, "SELECT column_name FROM information_schema.columns WHERE table_name = 'ops_t'"
    )
    assert sorted(r[0] for r in columns) == ["a", "b", "c"]


async def test_a_failing_file_is_rolled_back_and_not_recorded(dsn: str, tmp_path: Path) -> None:
    extra = write(
        tmp_path / "ops",
        {
            "0001_ok.sql": "CREATE TABLE ok_t (a int);",
            "0002_bad.sql": "CREATE TABLE half_t (a int); SELECT no_such_column FROM ok_t;",
        },
    )
    with pytest.raises(MigrationError) as raised:
        await migrate(dsn, (SMPP, extra))
    assert raised.value.name == "ops/0002_bad" and "no_such_column" in str(raised.value)
    names = await fetch(dsn, "SELECT name FROM smpp.schema_migrations ORDER BY name")
    assert [r[0] for r in names] == sorted(
        ["0001_ok", *(m.name for m in load_migrations(SMPP))])
    half = await fetch(dsn, "SELECT to_regclass('half_t')")
    assert half[0][0] is None
    # Fixed (never applied, so it may still change): the next run applies only it.
    write(extra, {"0002_bad.sql": "CREATE TABLE half_t (a int);"})
    assert [m.name for m in await migrate(dsn, (SMPP, extra))] == ["0002_bad"]


async def test_an_applied_file_that_changed_stops_the_run(dsn: str, tmp_path: Path) -> None:
    extra = write(tmp_path / "ops", {"0001_t.sql": "CREATE TABLE t (a int);"})
    await migrate(dsn, (extra,))
    write(extra, {"0001_t.sql": "CREATE TABLE t (a bigint);", "0002_u.sql": "CREATE TABLE u ();"})
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(dsn, (extra,))
    assert (await fetch(dsn, "SELECT to_regclass('u')"))[0][0] is None


def test_two_files_with_one_version_are_refused(tmp_path: Path) -> None:
    extra = write(tmp_path / "ops", {"0001_a.sql": "", "1_b.sql": ""})
    with pytest.raises(MigrationError, match="two files with version 1"):
        load_migrations(extra)


def test_the_smpp_package_ships_its_files() -> None:
    migrations = load_migrations(SMPP)
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert "smpp.message_correlations" in migrations[0].sql
