"""`smppd migrate` as an operator runs it: the installed command, a config, real PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from e2e_helpers import operator, write_config
from servers import fresh_database

SMPPD = Path(sys.executable).with_name("smppd")


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    async with fresh_database() as dsn:
        yield dsn


def config(tmp_path: Path, dsn: str) -> Path:
    roshan = operator("roshan", ["127.0.0.1:2775"], prefix="9379", system_id="smppd-roshan",
                      password="rosh-pw")
    return write_config(tmp_path, [roshan], store={"kind": "postgres", "dsn": dsn},
                        routing={"source": "postgres"})


def migrate(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SMPPD), "--log-level", "WARNING", "migrate", "--config",
                           str(path), *extra], capture_output=True, text=True, timeout=120)


async def test_migrate_applies_every_schema_once_and_seeds(tmp_path: Path, dsn: str) -> None:
    path = config(tmp_path, dsn)
    first = await asyncio.to_thread(migrate, path, "--seed")
    assert first.returncode == 0, first.stderr
    assert "applied correlation.migrations/0001" in first.stdout
    again = await asyncio.to_thread(migrate, path)
    assert again.returncode == 0, again.stderr
    assert "migrate: 0 applied" in again.stdout
    conn = await asyncpg.connect(dsn)
    try:
        tables = {r["t"] for r in await conn.fetch(
            "SELECT table_schema || '.' || table_name AS t FROM information_schema.tables")}
        operators = await conn.fetchval("SELECT count(*) FROM ops_routing.operators")
    finally:
        await conn.close()
    assert {"smpp.message_correlations", "ops_routing.routing_rules",
            "ops_routing.destination_prefixes", "numbering.sender_ids"} <= tables
    assert operators >= 5  # the five MCC 412 operators of the seed


def test_migrate_with_a_bad_config_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[store]\nkind = "postgres"\n')
    result = migrate(path)
    assert result.returncode == 2
    assert "store.dsn" in result.stderr or "operators" in result.stderr
