"""Control plane latency: python bench/bench_control.py [seconds per run] [rate]

A Zipf-distributed workload (s = 1.1) over 100,000 senders and 10,000 destination
prefixes, paced open-loop at 2,000 requests/s (each request its own task, timed from
its start). Needs PostgreSQL (trust auth, user postgres) and Redis on 127.0.0.1; it
creates and drops a temporary database and uses Redis DB 7 under its own key prefix.

Runs:
  ValidateLease  hit       Redis answers (warm cache)
  ValidateLease  fallback  Redis misses every time; PostgreSQL answers, Redis is set
  ValidateLease  zipf      cold start then steady state: the hit ratio
  SelectOperator hit       the routing table in memory
  SelectOperator fallback  no table: the rows for one destination from PostgreSQL
  HTTP                     POST /v1/leases/validate and /v1/routing/select (aiohttp
                           client in the same process and loop as the server)
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry

from control.app import create_app
from control.data import PostgresData, migrate
from control.leases import LeaseService, RedisCache
from control.metrics import ControlMetrics
from control.plane import ControlPlane
from control.routing import Health, RoutingTable, SelectRequest

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379"
SENDERS = 100_000
PREFIXES = 10_000
RULES = 200
OPERATORS = ("roshan", "etisalat", "mtn", "awcc", "salaam")
TENANTS = 100


def zipf_sampler(n: int, s: float, rng: random.Random) -> Callable[[], int]:
    weights = list(itertools.accumulate(1.0 / (k ** s) for k in range(1, n + 1)))
    total = weights[-1]
    return lambda: bisect.bisect_left(weights, rng.random() * total)


def sender_row(n: int) -> tuple[str, str, str, str, float | None, float]:
    state = ("SUSPENDED", "QUARANTINED", "RELEASED")[n % 3] if n % 100 == 99 else "ACTIVE"
    until = 4e9 if state == "QUARANTINED" else None
    return (f"S{n:06d}", f"t{n % TENANTS}", "ALPHANUMERIC", state, until, time.time())


def prefix_of(n: int) -> str:
    return f"93{n:04d}"


async def setup_database(dsn: str) -> None:
    data = PostgresData(dsn)
    await migrate(data, seed=True)
    await data.close()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "sender_ids", schema_name="numbering", records=[sender_row(n) for n in range(SENDERS)],
            columns=["sender", "tenant_id", "kind", "state", "quarantine_until", "updated_at"])
        await conn.execute("DELETE FROM ops_routing.routing_rules")
        await conn.execute("DELETE FROM ops_routing.destination_prefixes")
        await conn.copy_records_to_table(
            "destination_prefixes", schema_name="ops_routing",
            records=[(prefix_of(n), OPERATORS[n % 5], "93", "") for n in range(PREFIXES)],
            columns=["prefix", "operator_id", "country_code", "description"])
        for r in range(RULES):
            rule_id = await conn.fetchval(
                "INSERT INTO ops_routing.routing_rules (name, priority, tenant_id, prefix) "
                "VALUES ($1, $2, $3, $4) RETURNING id", f"rule-{r}", r % 10,
                f"t{r % TENANTS}" if r % 2 else None, prefix_of(r * 37 % PREFIXES))
            for k in range(2):
                await conn.execute(
                    "INSERT INTO ops_routing.routing_rule_operators VALUES ($1, $2, $3, $4)",
                    rule_id, OPERATORS[(r + k) % 5], 100 - 50 * k, k)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def paced(rate: float, seconds: float, call: Callable[[int], Awaitable[Any]],
                ) -> list[float]:
    """Open loop: request i starts at i / rate; returns each one's latency (s)."""
    latencies: list[float] = []
    tasks = []

    async def one(i: int) -> None:
        t0 = time.perf_counter()
        await call(i)
        latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    total = int(rate * seconds)
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*tasks)
    return latencies


def pct(values: list[float]) -> str:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return f"{at(0.50):7.3f} {at(0.95):7.3f} {at(0.99):7.3f}"


class MissCache(RedisCache):
    """Every get misses, after a real Redis round trip: the database fallback path."""

    async def get(self, key: str) -> bytes | None:
        await super().get(key + ":absent")
        return None


async def run(seconds: float, rate: float) -> None:
    name = f"smppd_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    prefix = f"bench:{uuid.uuid4().hex[:8]}:lease:"
    rng = random.Random(7)
    senders = zipf_sampler(SENDERS, 1.1, rng)
    prefixes = zipf_sampler(PREFIXES, 1.1, rng)
    # Zipf rank -> id, shuffled so popularity is not ordered by id
    sender_ids = list(range(SENDERS))
    rng.shuffle(sender_ids)
    prefix_ids = list(range(PREFIXES))
    rng.shuffle(prefix_ids)

    def lease_request() -> tuple[str, str]:
        n = sender_ids[senders()]
        return f"S{n:06d}", f"t{n % TENANTS}"

    def select_request() -> SelectRequest:
        p = prefix_of(prefix_ids[prefixes()])
        return SelectRequest(p + f"{rng.randrange(10**6):06d}", f"t{rng.randrange(TENANTS)}")

    health = {op: Health() for op in OPERATORS}
    try:
        t0 = time.perf_counter()
        await setup_database(dsn)
        print(f"setup: {SENDERS} senders, {PREFIXES} prefixes, {RULES} rules in "
              f"{time.perf_counter() - t0:.1f}s; {seconds:g}s per run at {rate:g}/s\n")
        data = PostgresData(dsn, max_size=20)
        await data.open()
        cache = RedisCache(REDIS, db=7)
        print(f"{'run':<34}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}  notes")

        # ValidateLease: Zipf from a cold cache, then the same workload warm
        svc = LeaseService(data, cache, ttl=300, negative_ttl=60, key_prefix=prefix)
        reqs = [lease_request() for _ in range(int(rate * seconds))]
        cold = await paced(rate, seconds, lambda i: svc.validate(*reqs[i]))
        cold_ratio = svc.hit_ratio
        svc.hits = svc.misses = 0
        reqs = [lease_request() for _ in range(int(rate * seconds))]
        warm = await paced(rate, seconds, lambda i: svc.validate(*reqs[i]))
        print(f"{'ValidateLease zipf, cold start':<34}{pct(cold)}  hit ratio "
              f"{cold_ratio:.1%}")
        print(f"{'ValidateLease zipf, steady':<34}{pct(warm)}  hit ratio {svc.hit_ratio:.1%}")
        hits: list[float] = []
        hit_reqs = list(dict.fromkeys(reqs))  # all cached now

        async def hit_call(i: int) -> None:
            t = time.perf_counter()
            result = await svc.validate(*hit_reqs[i % len(hit_reqs)])
            if result.source == "cache":
                hits.append(time.perf_counter() - t)

        await paced(rate, seconds, hit_call)
        print(f"{'ValidateLease hit (Redis)':<34}{pct(hits)}  {len(hits)} hits")
        miss_cache = MissCache(REDIS, db=7)
        fallback_svc = LeaseService(data, miss_cache, key_prefix=prefix + "fb:")
        fb = await paced(rate, seconds, lambda i: fallback_svc.validate(*reqs[i]))
        print(f"{'ValidateLease fallback (PostgreSQL)':<34}{pct(fb)}  Redis miss + query + set")

        # SelectOperator
        plane = ControlPlane(data, cache, health=lambda: health, key_prefix=prefix)
        await plane.reload_routing()
        sel = [select_request() for _ in range(int(rate * seconds))]

        async def select_hit(i: int) -> None:
            plane.select_now(sel[i])

        s_hit = await paced(rate, seconds, select_hit)
        print(f"{'SelectOperator hit (in memory)':<34}{pct(s_hit)}")
        t0 = time.perf_counter()
        prefixes_rows, rules_rows = await data.routing_rows()
        RoutingTable(prefixes_rows, rules_rows)
        load = time.perf_counter() - t0
        plane.table = plane._stale = None
        s_fb = await paced(rate, seconds, lambda i: plane.select(sel[i]))
        print(f"{'SelectOperator fallback (PostgreSQL)':<34}{pct(s_fb)}  full table load "
              f"{load * 1000:.0f} ms")
        await plane.reload_routing()

        # Through HTTP (client and server share this process and loop)
        registry = CollectorRegistry()
        plane.metrics = ControlMetrics(registry)
        view = type("V", (), {"control": plane, "registry": registry})()
        runner = web.AppRunner(create_app(view))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        conn = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=conn) as http:
            base = f"http://127.0.0.1:{port}"

            async def http_lease(i: int) -> None:
                sender, tenant = hit_reqs[i % len(hit_reqs)]
                async with http.post(base + "/v1/leases/validate",
                                     json={"sender": sender, "tenant_id": tenant}) as resp:
                    await resp.read()

            async def http_select(i: int) -> None:
                r = sel[i]
                async with http.post(base + "/v1/routing/select",
                                     json={"destination": r.destination,
                                           "tenant_id": r.tenant_id}) as resp:
                    await resp.read()

            h_lease = await paced(rate, seconds, http_lease)
            print(f"{'HTTP ValidateLease hit':<34}{pct(h_lease)}")
            h_sel = await paced(rate, seconds, http_select)
            print(f"{'HTTP SelectOperator hit':<34}{pct(h_sel)}")
        await runner.cleanup()
        await miss_cache.delete_prefix(prefix)
        await miss_cache.close()
        await cache.close()
        await data.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 2000.0
    try:
        import uvloop

        uvloop.run(run(seconds, rate))
    except ImportError:  # pragma: no cover
        asyncio.run(run(seconds, rate))


if __name__ == "__main__":
    main()
