"""Routing rules, destination prefixes and sender leases in PostgreSQL or SQLite.

PostgreSQL: schemas ``ops_routing`` and ``numbering`` (asyncpg pool, opened lazily so
a database that comes back is used again). SQLite (embedded mode): the same tables
in one file, the schema folded into the table name. The SQL is written once with
``?`` placeholders and ``{table}`` names and adapted per backend. Migrations are
forward-only files in ``control/migrations/<backend>/``, applied in name order and
recorded in ``control_migrations``; ``seed()`` loads the first market (MCC 412).
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from control.leases import Lease, normalize_sender
from control.routing import PrefixRow, RuleOperator, RuleRow

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DIGITS = r"^[0-9]{1,15}$"
IDENT = r"^[A-Za-z0-9._\-]{1,64}$"


# --------------------------------------------------------------------------- input models


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)


class RuleOperatorIn(_In):
    operator_id: str = Field(pattern=r"^[a-z0-9_-]{1,64}$")
    weight: int = Field(default=100, ge=0, le=1_000_000)
    failover_order: int = Field(default=0, ge=0, le=100)


class RuleIn(_In):
    name: str = Field(min_length=1, max_length=200)
    priority: int = Field(default=100, ge=0, le=1_000_000)
    tenant_id: str | None = Field(default=None, pattern=IDENT)
    prefix: str | None = Field(default=None, pattern=DIGITS)
    source: str | None = Field(default=None, min_length=1, max_length=64)
    message_type: Literal["transactional", "promotional", "otp", "service"] | None = None
    active_from: float | None = Field(default=None, ge=0, le=1e11)
    active_until: float | None = Field(default=None, ge=0, le=1e11)
    enabled: bool = True
    operators: list[RuleOperatorIn] = Field(min_length=1, max_length=50)

    # A window that ends before it starts is allowed (it never matches); an operator
    # named twice is refused by ControlPlane.put_rule (409).


class PrefixIn(_In):
    prefix: str = Field(pattern=DIGITS)
    operator_id: str = Field(pattern=r"^[a-z0-9_-]{1,64}$")
    country_code: str = Field(default="", pattern=r"^[0-9]{0,4}$")
    description: str = Field(default="", max_length=200)


class LeaseIn(_In):
    sender: Annotated[str, AfterValidator(normalize_sender)] = Field(
        min_length=1, max_length=20, pattern=r"^[A-Za-z0-9 +._&'\-]+$")
    tenant_id: str = Field(pattern=IDENT)
    kind: Literal["MSISDN", "SHORT_CODE", "ALPHANUMERIC"] = "ALPHANUMERIC"
    state: Literal["ACTIVE", "SUSPENDED", "QUARANTINED", "RELEASED"] = "ACTIVE"
    quarantine_until: float | None = Field(default=None, ge=0, le=1e11)


# --------------------------------------------------------------------------- the seed

SEED_OPERATORS = [  # (id, name, mcc, mnc, prefixes) -- Afghanistan, country code 93
    ("roshan", "Roshan", "412", "40", ["9379", "9372"]),
    ("etisalat", "Etisalat-AF", "412", "50", ["9378", "9373"]),
    ("mtn", "MTN-AF", "412", "01,20", ["9377", "9376"]),
    ("awcc", "AWCC", "412", "03", ["9370", "9371"]),
    ("salaam", "Salaam", "412", "88", ["9374"]),
]
SEED_LEASES = [Lease("SMPPD", "demo", "ALPHANUMERIC"), Lease("2020", "demo", "SHORT_CODE")]
SEED_RULE = RuleIn(name="salaam-failover-awcc", prefix="9374", priority=100,
                   operators=[RuleOperatorIn(operator_id="salaam", failover_order=0),
                              RuleOperatorIn(operator_id="awcc", failover_order=1)])


# --------------------------------------------------------------------------- backends


class ControlData(Protocol):
    kind: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def migrate(self) -> list[str]: ...

    async def lease(self, sender: str) -> Lease | None: ...

    async def routing_rows(self, destination: str | None = None,
                           ) -> tuple[list[PrefixRow], list[RuleRow]]: ...

    async def list_rules(self) -> list[RuleRow]: ...

    async def get_rule(self, rule_id: int) -> RuleRow | None: ...

    async def put_rule(self, rule: RuleIn, rule_id: int | None = None) -> RuleRow | None: ...

    async def delete_rule(self, rule_id: int) -> RuleRow | None: ...

    async def list_prefixes(self, starts_with: str = "", limit: int = 1000) -> list[PrefixRow]:
        ...

    async def put_prefix(self, prefix: PrefixIn) -> PrefixRow: ...

    async def delete_prefix(self, prefix: str) -> bool: ...

    async def operator_ids(self) -> set[str]: ...

    async def list_leases(self, tenant_id: str | None = None, limit: int = 1000) -> list[Lease]:
        ...

    async def put_lease(self, lease: LeaseIn) -> Lease: ...

    async def delete_lease(self, sender: str) -> bool: ...

    async def seed(self) -> None: ...

    async def add_operator(self, op_id: str, name: str, mcc: str = "", mnc: str = "",
                           country_code: str = "") -> None: ...


class _Exec(Protocol):
    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]: ...

    async def execute(self, sql: str, *args: Any) -> None: ...


class _SqlData:
    """The queries, shared by both backends; subclasses supply ``_tx`` and ``_conn``."""

    kind = "sql"
    tables: dict[str, str] = {}

    def sql(self, text: str) -> str:
        return text.format(**self.tables)

    async def _fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def _execute(self, sql: str, *args: Any) -> None:
        raise NotImplementedError

    async def _in_tx(self, steps: Any) -> Any:
        raise NotImplementedError

    async def _upsert(self, table: str, key: str, **row: Any) -> None:
        """Insert ``row`` into ``table``, or overwrite the row with the same ``key``
        (column names come from this module, never from a caller's input)."""
        columns = ", ".join(row)
        marks = ", ".join("?" * len(row))
        updates = ", ".join(f"{c} = excluded.{c}" for c in row if c != key)
        sql = (f"INSERT INTO {{{table}}} ({columns}) VALUES ({marks}) "  # noqa: S608
               f"ON CONFLICT ({key}) DO UPDATE SET {updates}")
        await self._execute(self.sql(sql), *row.values())

    # -- leases --

    async def lease(self, sender: str) -> Lease | None:
        rows = await self._fetch(self.sql(
            "SELECT sender, tenant_id, kind, state, quarantine_until FROM {leases} "
            "WHERE sender = ?"), sender)
        return _lease(rows[0]) if rows else None

    async def list_leases(self, tenant_id: str | None = None, limit: int = 1000) -> list[Lease]:
        base = "SELECT sender, tenant_id, kind, state, quarantine_until FROM {leases}"
        if tenant_id is None:
            rows = await self._fetch(self.sql(base + " ORDER BY sender LIMIT ?"), limit)
        else:
            rows = await self._fetch(self.sql(base + " WHERE tenant_id = ? ORDER BY sender "
                                              "LIMIT ?"), tenant_id, limit)
        return [_lease(r) for r in rows]

    async def put_lease(self, lease: LeaseIn) -> Lease:
        await self._upsert("leases", "sender", sender=lease.sender, tenant_id=lease.tenant_id,
                           kind=lease.kind, state=lease.state,
                           quarantine_until=lease.quarantine_until, updated_at=time.time())
        return Lease(lease.sender, lease.tenant_id, lease.kind, lease.state,
                     lease.quarantine_until)

    async def delete_lease(self, sender: str) -> bool:
        rows = await self._fetch(self.sql("DELETE FROM {leases} WHERE sender = ? "
                                          "RETURNING sender"), sender)
        return bool(rows)

    # -- prefixes --

    async def list_prefixes(self, starts_with: str = "", limit: int = 1000) -> list[PrefixRow]:
        rows = await self._fetch(self.sql(
            "SELECT prefix, operator_id, country_code, description FROM {prefixes} "
            "WHERE prefix LIKE ? ORDER BY prefix LIMIT ?"), starts_with + "%", limit)
        return [PrefixRow(**r) for r in rows]

    async def put_prefix(self, prefix: PrefixIn) -> PrefixRow:
        await self._upsert("prefixes", "prefix", prefix=prefix.prefix,
                           operator_id=prefix.operator_id, country_code=prefix.country_code,
                           description=prefix.description)
        return PrefixRow(prefix.prefix, prefix.operator_id, prefix.country_code,
                         prefix.description)

    async def delete_prefix(self, prefix: str) -> bool:
        rows = await self._fetch(self.sql("DELETE FROM {prefixes} WHERE prefix = ? "
                                          "RETURNING prefix"), prefix)
        return bool(rows)

    async def operator_ids(self) -> set[str]:
        return {r["id"] for r in await self._fetch(self.sql("SELECT id FROM {operators}"))}

    # -- rules --

    _RULES = ("SELECT r.id, r.name, r.priority, r.tenant_id, r.prefix, r.source, "
              "r.message_type, r.active_from, r.active_until, r.enabled, o.operator_id, "
              "o.weight, o.failover_order FROM {rules} r "
              "LEFT JOIN {rule_ops} o ON o.rule_id = r.id")

    async def routing_rows(self, destination: str | None = None,
                           ) -> tuple[list[PrefixRow], list[RuleRow]]:
        """Everything (``destination`` None), or just the rows one destination needs."""
        cols = "SELECT prefix, operator_id, country_code, description FROM {prefixes}"
        if destination is None:
            prefixes = await self._fetch(self.sql(cols))
            rules = await self._fetch(self.sql(self._RULES + " ORDER BY r.id"))
        else:
            heads = [destination[:n] for n in range(1, min(len(destination), 15) + 1)]
            marks = ", ".join("?" * len(heads))
            prefixes = await self._fetch(self.sql(cols + f" WHERE prefix IN ({marks})"), *heads)
            rules = await self._fetch(self.sql(
                self._RULES + f" WHERE r.prefix IS NULL OR r.prefix IN ({marks}) ORDER BY r.id"),
                *heads)
        return [PrefixRow(**r) for r in prefixes], _group_rules(rules)

    async def list_rules(self) -> list[RuleRow]:
        return _group_rules(await self._fetch(self.sql(self._RULES + " ORDER BY r.id")))

    async def get_rule(self, rule_id: int) -> RuleRow | None:
        rows = await self._fetch(self.sql(self._RULES + " WHERE r.id = ?"), rule_id)
        rules = _group_rules(rows)
        return rules[0] if rules else None

    async def put_rule(self, rule: RuleIn, rule_id: int | None = None) -> RuleRow | None:
        """Create (``rule_id`` None) or replace a rule and its operators; None: no such rule."""
        values = (rule.name, rule.priority, rule.tenant_id, rule.prefix, rule.source,
                  rule.message_type, rule.active_from, rule.active_until, rule.enabled)

        async def steps(tx: _Exec) -> int | None:
            if rule_id is None:
                rows = await tx.fetch(self.sql(
                    "INSERT INTO {rules} (name, priority, tenant_id, prefix, source, "
                    "message_type, active_from, active_until, enabled) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"), *values)
            else:
                rows = await tx.fetch(self.sql(
                    "UPDATE {rules} SET name = ?, priority = ?, tenant_id = ?, prefix = ?, "
                    "source = ?, message_type = ?, active_from = ?, active_until = ?, "
                    "enabled = ? WHERE id = ? RETURNING id"), *values, rule_id)
            if not rows:
                return None
            new_id = int(rows[0]["id"])
            await tx.execute(self.sql("DELETE FROM {rule_ops} WHERE rule_id = ?"), new_id)
            for op in rule.operators:
                await tx.execute(self.sql(
                    "INSERT INTO {rule_ops} (rule_id, operator_id, weight, failover_order) "
                    "VALUES (?, ?, ?, ?)"), new_id, op.operator_id, op.weight, op.failover_order)
            return new_id

        new_id = await self._in_tx(steps)
        return None if new_id is None else await self.get_rule(new_id)

    async def delete_rule(self, rule_id: int) -> RuleRow | None:
        rule = await self.get_rule(rule_id)
        if rule is not None:
            await self._execute(self.sql("DELETE FROM {rule_ops} WHERE rule_id = ?"), rule_id)
            await self._execute(self.sql("DELETE FROM {rules} WHERE id = ?"), rule_id)
        return rule

    # -- seed --

    async def seed(self) -> None:
        """The first market: five MCC 412 operators, their prefixes, the demo leases and
        one failover rule. Idempotent."""
        for op_id, name, mcc, mnc, prefixes in SEED_OPERATORS:
            await self._execute(self.sql(
                "INSERT INTO {operators} (id, name, mcc, mnc, country_code) "
                "VALUES (?, ?, ?, ?, '93') ON CONFLICT (id) DO NOTHING"), op_id, name, mcc, mnc)
            for prefix in prefixes:
                await self._execute(self.sql(
                    "INSERT INTO {prefixes} (prefix, operator_id, country_code, description) "
                    "VALUES (?, ?, '93', ?) ON CONFLICT (prefix) DO NOTHING"),
                    prefix, op_id, f"{name} national prefix")
        for lease in SEED_LEASES:
            await self._execute(self.sql(
                "INSERT INTO {leases} (sender, tenant_id, kind, state, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (sender) DO NOTHING"),
                lease.sender, lease.tenant_id, lease.kind, lease.state, time.time())
        existing = await self._fetch(self.sql("SELECT id FROM {rules} WHERE name = ?"),
                                     SEED_RULE.name)
        if not existing:
            await self.put_rule(SEED_RULE)

    async def add_operator(self, op_id: str, name: str, mcc: str = "", mnc: str = "",
                           country_code: str = "") -> None:
        await self._execute(self.sql(
            "INSERT INTO {operators} (id, name, mcc, mnc, country_code) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name"),
            op_id, name, mcc, mnc, country_code)


def _lease(row: dict[str, Any]) -> Lease:
    until = row["quarantine_until"]
    return Lease(row["sender"], row["tenant_id"], row["kind"], row["state"],
                 float(until) if until is not None else None)


def _group_rules(rows: Sequence[dict[str, Any]]) -> list[RuleRow]:
    rules: dict[int, dict[str, Any]] = {}
    ops: dict[int, list[RuleOperator]] = {}
    for r in rows:
        rid = int(r["id"])
        if rid not in rules:
            rules[rid] = {k: r[k] for k in ("name", "priority", "tenant_id", "prefix", "source",
                                            "message_type", "active_from", "active_until")}
            rules[rid]["enabled"] = bool(r["enabled"])
            ops[rid] = []
        if r["operator_id"] is not None:
            ops[rid].append(RuleOperator(r["operator_id"], int(r["weight"]),
                                         int(r["failover_order"])))
        for key in ("active_from", "active_until"):
            if rules[rid][key] is not None:
                rules[rid][key] = float(rules[rid][key])
    return [RuleRow(id=rid, operators=tuple(sorted(ops[rid], key=lambda o: (
        o.failover_order, o.operator_id))), **fields) for rid, fields in rules.items()]


_SQLITE_TABLES = {"operators": "ops_routing_operators",
                  "prefixes": "ops_routing_destination_prefixes",
                  "rules": "ops_routing_routing_rules",
                  "rule_ops": "ops_routing_routing_rule_operators",
                  "leases": "numbering_sender_ids"}
_PG_TABLES = {k: v.replace("ops_routing_", "ops_routing.").replace("numbering_", "numbering.")
              for k, v in _SQLITE_TABLES.items()}


def _private_file(path: Path) -> None:
    """Create the file (and its directory) for its owner only, 0600 (0700): SQLite
    gives its -wal and -shm files the database file's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


class SqliteData(_SqlData):
    """Embedded mode. Calls run on the event loop: each is an indexed lookup of a few
    microseconds on a local file, cheaper than a thread hop."""

    kind = "sqlite"
    tables = _SQLITE_TABLES

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self._conn is None:
            if self.path != ":memory:":
                _private_file(Path(self.path))
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=2000")
            self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("control data is not open")
        return self._conn

    async def _fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in self._c().execute(sql, args).fetchall()]

    async def _execute(self, sql: str, *args: Any) -> None:
        self._c().execute(sql, args)

    async def _in_tx(self, steps: Any) -> Any:
        conn = self._c()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = await steps(self)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return await self._fetch(sql, *args)

    async def execute(self, sql: str, *args: Any) -> None:
        await self._execute(sql, *args)

    async def migrate(self) -> list[str]:
        conn = self._c()
        conn.execute("CREATE TABLE IF NOT EXISTS control_migrations "
                     "(name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        done = {r[0] for r in conn.execute("SELECT name FROM control_migrations")}
        applied = []
        for path in sorted((MIGRATIONS / "sqlite").glob("*.sql")):
            if path.name in done:
                continue
            conn.executescript("BEGIN;" + path.read_text() + ";COMMIT;")
            conn.execute("INSERT INTO control_migrations VALUES (?, ?)", (path.name, time.time()))
            applied.append(path.name)
        return applied


_PLACEHOLDER = re.compile(r"\?")


def _pg(sql: str) -> str:
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class _PgTx:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.conn.fetch(_pg(sql), *args)]

    async def execute(self, sql: str, *args: Any) -> None:
        await self.conn.execute(_pg(sql), *args)


class PostgresData(_SqlData):
    """Distributed mode: asyncpg pool, created on first use and again after a failure."""

    kind = "postgres"
    tables = _PG_TABLES

    def __init__(self, dsn: str, *, timeout: float = 2.0, max_size: int = 10) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self.max_size = max_size
        self._pool: Any = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        await self._get_pool()

    async def _get_pool(self) -> Any:
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                import asyncpg

                self._pool = await asyncpg.create_pool(
                    self.dsn, min_size=1, max_size=self.max_size, timeout=self.timeout,
                    command_timeout=self.timeout)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        pool = await self._get_pool()
        return [dict(r) for r in await pool.fetch(_pg(sql), *args, timeout=self.timeout)]

    async def _execute(self, sql: str, *args: Any) -> None:
        pool = await self._get_pool()
        await pool.execute(_pg(sql), *args, timeout=self.timeout)

    async def _in_tx(self, steps: Any) -> Any:
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            return await steps(_PgTx(conn))

    async def migrate(self) -> list[str]:
        pool = await self._get_pool()
        applied = []
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS public.control_migrations "
                               "(name text PRIMARY KEY, applied_at double precision NOT NULL)")
            # one migrator at a time across replicas
            await conn.execute("SELECT pg_advisory_lock(4120093)")
            try:
                done = {r["name"] for r in await conn.fetch(
                    "SELECT name FROM public.control_migrations")}
                for path in sorted((MIGRATIONS / "postgres").glob("*.sql")):
                    if path.name in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(path.read_text())
                        await conn.execute("INSERT INTO public.control_migrations "
                                           "VALUES ($1, $2)", path.name, time.time())
                    applied.append(path.name)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(4120093)")
        return applied


def make_data(source: str, *, dsn: str | None = None,
              sqlite_path: str | Path | None = None) -> ControlData:
    if source == "postgres":
        if not dsn:
            raise ValueError("a PostgreSQL DSN is required for source = postgres")
        return PostgresData(dsn)
    return SqliteData(sqlite_path or ":memory:")


async def migrate(data: ControlData, *, seed: bool = False) -> list[str]:
    """Apply pending migrations (and the seed); the data is opened and left open."""
    await data.open()
    applied = await data.migrate()
    if seed:
        await data.seed()
    return applied
