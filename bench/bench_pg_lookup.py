"""Receipt lookup latency in PostgreSQL as smpp.message_correlations grows.

    python bench/bench_pg_lookup.py [--sizes 10k,1M,10M] [--lookups 5000] [--dsn DSN]

Creates a scratch database (smppd_bench_<random>) next to the one in --dsn (default
SMPPD_TEST_PG_DSN or postgresql://postgres@127.0.0.1:5432/test), migrates it, then for
each size grows message_correlations to that many rows (COPY, in batches) and times
``PgStore.lookup_part`` for random existing keys, PostgreSQL path only (no Redis).
The scratch database is dropped at the end, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from correlation.migrate import migrate
from correlation.pg_store import LOOKUP_SQL, PgStore
from correlation.store import PartRef

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

OPERATORS = ("roshan", "etisalat-af", "mtn-af", "awcc", "salaam", "mtn-af-2")
COLUMNS = (
    "message_id", "part", "total", "operator_id", "smsc_id", "smsc_key", "state",
    "command_status", "submitted_at",
)  # fmt: skip
BATCH = 200_000
MASK64 = (1 << 64) - 1


def parse_count(text: str) -> int:
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def key(i: int) -> str:
    """A unique, scattered SMSC id for row i (odd multiplier: a bijection mod 2**64)."""
    return f"{(i * 0x9E3779B97F4A7C15) & MASK64:016x}"


def rows(start: int, stop: int, at: datetime) -> Iterator[tuple[object, ...]]:
    for i in range(start, stop):
        k = key(i)
        yield (f"msg-{i:010d}", 1, 1, OPERATORS[i % 6], k.upper(), k, "SUBMITTED", 0, at)


async def fill(conn: asyncpg.Connection, have: int, want: int) -> float:
    started = time.perf_counter()
    at = datetime.now(UTC)
    for start in range(have, want, BATCH):
        await conn.copy_records_to_table(
            "message_correlations",
            schema_name="smpp",
            records=list(rows(start, min(start + BATCH, want), at)),
            columns=COLUMNS,
        )
    await conn.execute("ANALYZE smpp.message_correlations")
    return time.perf_counter() - started


async def measure(store: PgStore, size: int, lookups: int) -> list[float]:
    rng = random.Random(size)
    for i in rng.sample(range(size), min(500, size)):  # warm the pool and the plan cache
        await store.lookup_part(OPERATORS[i % 6], key(i))
    latencies = []
    for _ in range(lookups):
        i = rng.randrange(size)
        started = time.perf_counter()
        ref = await store.lookup_part(OPERATORS[i % 6], key(i))
        latencies.append(time.perf_counter() - started)
        assert ref == PartRef(f"msg-{i:010d}", 1, 1), (i, ref)
    return latencies


async def explain(conn: asyncpg.Connection, size: int, samples: int = 200) -> tuple[float, float]:
    """Server-side cost of the lookup query, blind to client-side load: mean shared
    buffers touched and median execution time (µs), over random existing keys."""
    rng = random.Random(-size)
    buffers, times = [], []
    for _ in range(samples):
        i = rng.randrange(size)
        plan = await conn.fetchval(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + LOOKUP_SQL, OPERATORS[i % 6], [key(i)]
        )
        top = json.loads(plan)[0]
        buffers.append(top["Plan"]["Shared Hit Blocks"] + top["Plan"]["Shared Read Blocks"])
        times.append(top["Execution Time"] * 1000)
    return statistics.fmean(buffers), statistics.median(times)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10k,1M,10M")
    parser.add_argument("--lookups", type=int, default=5000)
    parser.add_argument(
        "--dsn",
        default=os.environ.get("SMPPD_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()
    sizes = sorted(parse_count(s) for s in args.sizes.split(","))

    name = f"smppd_bench_{secrets.token_hex(6)}"
    dsn = urlunsplit(urlsplit(args.dsn)._replace(path=f"/{name}"))
    admin = await asyncpg.connect(args.dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        await conn.execute("SET synchronous_commit = off")  # bulk load only
        store = PgStore(dsn, None, migrate_on_open=False, pool_size=2)
        await store.open()
        print(f"database {name}, {args.lookups} lookups per size, PostgreSQL path (no Redis)")
        print(
            "| rows | fill s | table+indexes MB | p50 µs | p99 µs | mean µs"
            " | server µs (median) | buffers/lookup |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        have = 0
        try:
            for size in sizes:
                fill_s = await fill(conn, have, size)
                have = size
                mb = await conn.fetchval(
                    "SELECT pg_total_relation_size('smpp.message_correlations') / 1048576.0"
                )
                lat = await measure(store, size, args.lookups)
                buffers, server_us = await explain(conn, size)
                print(
                    f"| {size:,} | {fill_s:.1f} | {mb:,.0f} | {percentile(lat, 50) * 1e6:.0f}"
                    f" | {percentile(lat, 99) * 1e6:.0f} | {statistics.fmean(lat) * 1e6:.0f}"
                    f" | {server_us:.0f} | {buffers:.1f} |",
                    flush=True,
                )
        finally:
            await store.close()
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    if uvloop is not None:
        uvloop.install()
    asyncio.run(main())
