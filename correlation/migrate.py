"""Forward-only SQL migrations for PostgreSQL: ``await migrate(dsn)``.

A source of migrations is a Python package (dotted name, e.g. ``correlation.migrations``)
or a directory, holding files named ``NNNN_description.sql``. Sources run in the
order given, each source's files in version order, each file in its own transaction;
``smpp.schema_migrations`` records what ran, so a second run applies nothing.

Safe from several replicas at once: the whole run holds a session advisory lock, so
a second runner waits, then finds everything applied. A file whose content changed
after it was applied stops the run (forward-only: add a new file instead).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

DEFAULT_PACKAGES: tuple[str, ...] = ("correlation.migrations",)
# pg_advisory_lock key: any constant shared by every smppd replica ("smppd-mg").
LOCK_KEY = 0x736D_7070_642D_6D67

_FILE_NAME = re.compile(r"^(\d+)_([A-Za-z0-9_]+)\.sql$")

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS smpp;
CREATE TABLE IF NOT EXISTS smpp.schema_migrations (
    source text NOT NULL,
    version integer NOT NULL,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, version)
);
"""


class MigrationError(Exception):
    """A migration could not run; ``name`` is the file (or source) at fault."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file of a source."""

    source: str  # package name, or directory name
    version: int
    name: str  # file name without .sql, e.g. "0001_smpp_schema"
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def __str__(self) -> str:
        return f"{self.source}/{self.name}"


def load_migrations(source: str | Path) -> list[Migration]:
    """The SQL files of a package (dotted name) or directory (Path), by version."""
    root: Traversable
    if isinstance(source, Path):
        root, label = source, source.name
    else:
        root, label = resources.files(source), source
    found: dict[int, Migration] = {}
    for entry in root.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        version = int(match[1])
        if version in found:
            raise MigrationError(label, f"two files with version {version}")
        found[version] = Migration(label, version, entry.name[:-4], entry.read_text("utf-8"))
    return [found[v] for v in sorted(found)]


async def migrate(dsn: str, packages: Sequence[str | Path] = DEFAULT_PACKAGES) -> list[Migration]:
    """Apply the migrations not yet applied from each package (dotted name) or
    directory (Path), in the order given; returns them in the order they ran."""
    pending = [m for package in packages for m in load_migrations(package)]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            return await _apply(conn, pending)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        await conn.close()


async def _apply(conn: asyncpg.Connection, migrations: list[Migration]) -> list[Migration]:
    await conn.execute(_BOOTSTRAP)  # under the lock: concurrent CREATE SCHEMA would race
    rows = await conn.fetch("SELECT source, version, checksum FROM smpp.schema_migrations")
    applied = {(r["source"], r["version"]): r["checksum"] for r in rows}
    done: list[Migration] = []
    for migration in migrations:
        checksum = applied.get((migration.source, migration.version))
        if checksum is not None:
            if checksum != migration.checksum:
                raise MigrationError(str(migration), "changed after it was applied")
            continue
        try:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO smpp.schema_migrations (source, version, name, checksum)"
                    " VALUES ($1, $2, $3, $4)",
                    migration.source,
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
        except asyncpg.PostgresError as exc:
            raise MigrationError(str(migration), str(exc)) from exc
        log.info("applied migration %s", migration)
        done.append(migration)
    return done
