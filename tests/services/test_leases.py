"""ValidateLease against real Redis (db 7), PostgreSQL and NATS on 127.0.0.1.

These services must be running: a test that cannot reach them fails, it does not
skip. Each test uses its own Redis key prefix; the session gets its own database.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from control.app import create_app
from control.data import LeaseIn, PostgresData, PrefixIn, RuleIn, RuleOperatorIn, SqliteData
from control.data import migrate as migrate_data
from control.leases import (
    INVALIDATE_SUBJECT,
    Lease,
    LeaseService,
    MemoryCache,
    NatsInvalidation,
    Reason,
    RedisCache,
    decide,
    parse_invalidation,
)
from control.metrics import ControlMetrics
from control.plane import ControlPlane
from control.routing import Health, SelectRequest
from control.view import InputError

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379"
NATS = "nats://127.0.0.1:4222"
DEAD_PG = "postgresql://postgres@127.0.0.1:1/nothing"
DEAD_REDIS = "redis://127.0.0.1:1"
HEALTHY = {op: Health() for op in ("roshan", "etisalat", "mtn", "awcc", "salaam")}


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    name = f"smppd_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"

    async def prepare() -> None:
        data = PostgresData(dsn)
        await migrate_data(data, seed=True)
        await data.close()

    asyncio.run(prepare())
    yield dsn
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def pg(pg_dsn: str) -> AsyncIterator[PostgresData]:
    data = PostgresData(pg_dsn)
    await data.open()
    yield data
    await data.close()


@pytest.fixture
async def redis_cache() -> AsyncIterator[RedisCache]:
    cache = RedisCache(REDIS, db=7)
    yield cache
    await cache.close()


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex}:lease:"


@pytest.fixture
async def service(pg: PostgresData, redis_cache: RedisCache,
                  prefix: str) -> AsyncIterator[LeaseService]:
    svc = LeaseService(pg, redis_cache, ttl=60, negative_ttl=60, key_prefix=prefix)
    yield svc
    await redis_cache.delete_prefix(prefix)


def sender() -> str:
    return "S" + uuid.uuid4().hex[:10].upper()


# --------------------------------------------------------------------------- pure


@pytest.mark.parametrize(("lease", "tenant", "reason"), [
    (None, "t", Reason.NOT_REGISTERED),
    (Lease("X", "t", state="ACTIVE"), "t", Reason.OK),
    (Lease("X", "t", state="ACTIVE"), "u", Reason.WRONG_TENANT),
    (Lease("X", "t", state="SUSPENDED"), "t", Reason.LEASE_SUSPENDED),
    (Lease("X", "t", state="SUSPENDED"), "u", Reason.WRONG_TENANT),
    (Lease("X", "t", state="QUARANTINED", quarantine_until=2000.0), "u",
     Reason.QUARANTINE_ACTIVE),
    (Lease("X", "t", state="QUARANTINED", quarantine_until=2000.0), "t",
     Reason.QUARANTINE_ACTIVE),
    (Lease("X", "t", state="QUARANTINED", quarantine_until=500.0), "t", Reason.NOT_REGISTERED),
    (Lease("X", "t", state="RELEASED"), "t", Reason.NOT_REGISTERED),
])
def test_decide(lease: Lease | None, tenant: str, reason: Reason) -> None:
    assert decide(lease, tenant, now=1000.0) is reason


def test_parse_invalidation() -> None:
    assert parse_invalidation(b'{"sender": "A"}') == (["A"], False, False)
    assert parse_invalidation(b'{"senders": ["A", "B"], "routing": true}') == (
        ["A", "B"], False, True)
    assert parse_invalidation(b'{"all": true}') == ([], True, False)
    assert parse_invalidation(b"SMPPD") == (["SMPPD"], False, False)
    assert parse_invalidation(b"[1, 2]") == ([], False, False)


# --------------------------------------------------------------------------- PostgreSQL + Redis


async def test_seeded_demo_leases_pass(service: LeaseService) -> None:
    for name in ("SMPPD", "2020"):
        result = await service.validate(name, "demo")
        assert (result.allowed, result.reason_code) == (True, Reason.OK)
    assert (await service.validate("SMPPD", "other")).reason_code is Reason.WRONG_TENANT


async def test_miss_then_hit_and_hit_ratio(service: LeaseService, pg: PostgresData) -> None:
    name = sender()
    await pg.put_lease(LeaseIn(sender=name, tenant_id="t1"))
    first = await service.validate(name, "t1")
    second = await service.validate(name, "t1")
    assert (first.source, second.source) == ("database", "cache")
    assert first.allowed and second.allowed and second.lease == first.lease
    assert (service.hits, service.misses) == (1, 1)
    assert service.hit_ratio == 0.5


async def test_reason_codes_from_postgres(service: LeaseService, pg: PostgresData) -> None:
    cases: dict[Any, Reason] = {
        "SUSPENDED": Reason.LEASE_SUSPENDED,
        "QUARANTINED": Reason.QUARANTINE_ACTIVE,
        "RELEASED": Reason.NOT_REGISTERED,
    }
    for state, reason in cases.items():
        name = sender()
        await pg.put_lease(LeaseIn(sender=name, tenant_id="t1", state=state,
                                   quarantine_until=4e9 if state == "QUARANTINED" else None))
        result = await service.validate(name, "t1")
        assert (result.allowed, result.reason_code) == (False, reason)


async def test_negative_caching_until_invalidated(service: LeaseService,
                                                  pg: PostgresData) -> None:
    name = sender()
    assert (await service.validate(name, "t1")).reason_code is Reason.NOT_REGISTERED
    await pg.put_lease(LeaseIn(sender=name, tenant_id="t1"))
    cached = await service.validate(name, "t1")
    assert (cached.reason_code, cached.source) == (Reason.NOT_REGISTERED, "cache")
    await service.invalidate([name])
    assert (await service.validate(name, "t1")).reason_code is Reason.OK


async def test_msisdn_sender_is_normalised(service: LeaseService, pg: PostgresData) -> None:
    await pg.put_lease(LeaseIn(sender="+93700000123", tenant_id="t1", kind="MSISDN"))
    assert (await service.validate("93700000123", "t1")).allowed
    assert (await service.validate("+93700000123", "t1")).allowed


async def test_redis_down_falls_back_to_postgres(pg: PostgresData, prefix: str) -> None:
    dead = RedisCache(DEAD_REDIS)
    svc = LeaseService(pg, dead, key_prefix=prefix)
    result = await svc.validate("SMPPD", "demo")
    assert (result.allowed, result.source) == (True, "database")
    await dead.close()


async def test_postgres_down_served_from_cache(redis_cache: RedisCache, pg: PostgresData,
                                               prefix: str) -> None:
    warm = LeaseService(pg, redis_cache, key_prefix=prefix)
    assert (await warm.validate("SMPPD", "demo")).allowed
    cold_db = LeaseService(PostgresData(DEAD_PG, timeout=1.0), redis_cache, key_prefix=prefix)
    result = await cold_db.validate("SMPPD", "demo")
    assert (result.allowed, result.source) == (True, "cache")
    missing = await cold_db.validate(sender(), "demo")
    assert (missing.allowed, missing.reason_code) == (False, Reason.UNAVAILABLE)
    await redis_cache.delete_prefix(prefix)


def dead_plane(registry: CollectorRegistry | None = None) -> ControlPlane:
    return ControlPlane(PostgresData(DEAD_PG, timeout=1.0), RedisCache(DEAD_REDIS),
                        health=lambda: HEALTHY,
                        metrics=ControlMetrics(registry) if registry else None)


async def test_both_down_is_unavailable_and_denied() -> None:
    plane = dead_plane()
    result = await plane.validate("SMPPD", "demo")
    assert (result.allowed, result.reason_code, result.lease) == (False, Reason.UNAVAILABLE,
                                                                  None)
    await plane.leases.cache.close()


class PlaneView:
    """The least of a GatewayView the lease endpoint needs."""

    def __init__(self, plane: ControlPlane, registry: CollectorRegistry) -> None:
        self.control = plane
        self.registry = registry


async def test_both_down_http_503(aiohttp_free_port: int) -> None:
    registry = CollectorRegistry()
    plane = dead_plane(registry)
    app = create_app(PlaneView(plane, registry))  # type: ignore[arg-type]
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", aiohttp_free_port)
    await site.start()
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{aiohttp_free_port}/v1/leases/validate"
            async with http.post(url, json={"sender": "SMPPD", "tenant_id": "demo"}) as resp:
                body = await resp.json()
                assert resp.status == 503
                assert body == {"allowed": False, "reason_code": "UNAVAILABLE", "lease": None}
            async with http.get(f"http://127.0.0.1:{aiohttp_free_port}/metrics") as resp:
                text = await resp.text()
        assert 'smppd_lease_checks_total{result="UNAVAILABLE"} 1.0' in text
        assert "smppd_lease_cache_hit_ratio 0.0" in text
    finally:
        await runner.cleanup()
        await plane.leases.cache.close()


@pytest.fixture
def aiohttp_free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --------------------------------------------------------------------------- the plane


@pytest.fixture
async def plane(pg_dsn: str, prefix: str) -> AsyncIterator[ControlPlane]:
    p = ControlPlane(PostgresData(pg_dsn), RedisCache(REDIS, db=7), health=lambda: HEALTHY,
                     key_prefix=prefix, draw=lambda: 0.0)
    await p.start()
    yield p
    await p.leases.cache.delete_prefix(prefix)
    await p.stop()


async def test_admin_changes_invalidate(plane: ControlPlane) -> None:
    name = sender()
    await plane.put_lease(LeaseIn(sender=name, tenant_id="t1"))
    assert (await plane.validate(name, "t1")).allowed
    await plane.put_lease(LeaseIn(sender=name, tenant_id="t1", state="SUSPENDED"))
    assert (await plane.validate(name, "t1")).reason_code is Reason.LEASE_SUSPENDED
    await plane.delete_lease(name)
    assert (await plane.validate(name, "t1")).reason_code is Reason.NOT_REGISTERED


async def test_rule_change_reloads_routing_and_fallback_agrees(plane: ControlPlane) -> None:
    req = SelectRequest("93741234567", "t-route")
    assert (await plane.select(req)).operator_id == "salaam"  # the seed's failover rule
    rule = await plane.put_rule(RuleIn(name=f"r-{uuid.uuid4().hex[:6]}", tenant_id="t-route",
                                       prefix="93741", operators=[
                                           RuleOperatorIn(operator_id="mtn")]))
    assert rule is not None
    fallback = await plane.select(req)  # table reloading: rows read for this destination
    await plane.reload_routing()
    loaded = await plane.select(req)
    assert fallback.operator_id == loaded.operator_id == "mtn"
    assert loaded.rule is not None and loaded.rule.id == rule.id
    await plane.delete_rule(rule.id)
    await plane.put_prefix(PrefixIn(prefix="937899", operator_id="mtn"))
    await plane.reload_routing()
    assert (await plane.select(SelectRequest("93789912345", "x"))).operator_id == "mtn"
    assert (await plane.select(SelectRequest("93781234567", "x"))).operator_id == "etisalat"
    # Putting the prefix again overwrites its row.
    await plane.put_prefix(PrefixIn(prefix="937899", operator_id="etisalat", description="moved"))
    await plane.reload_routing()
    assert (await plane.select(SelectRequest("93789912345", "x"))).operator_id == "etisalat"
    assert [(p.operator_id, p.description) for p in await plane.data.list_prefixes("937899")
            ] == [("etisalat", "moved")]
    assert await plane.delete_prefix("937899")


async def test_nats_invalidation(plane: ControlPlane) -> None:
    import nats

    name = sender()
    assert (await plane.validate(name, "t1")).reason_code is Reason.NOT_REGISTERED
    await plane.data.put_lease(LeaseIn(sender=name, tenant_id="t1"))  # behind the cache
    assert (await plane.validate(name, "t1")).source == "cache"
    done = asyncio.Event()

    async def handler(senders: list[str], everything: bool, routing: bool) -> None:
        await plane.invalidate(senders, everything, routing)
        done.set()

    sub = NatsInvalidation(NATS, handler)
    await sub.start()
    nc = await nats.connect(NATS)
    try:
        await nc.publish(INVALIDATE_SUBJECT, json.dumps({"sender": name}).encode())
        await nc.flush()
        await asyncio.wait_for(done.wait(), 5.0)
    finally:
        await nc.close()
        await sub.stop()
    result = await plane.validate(name, "t1")
    assert (result.reason_code, result.source) == (Reason.OK, "database")


# --------------------------------------------------------------------------- SQLite (embedded)


async def test_sqlite_embedded_same_answers(tmp_path: Any) -> None:
    data = SqliteData(tmp_path / "control.sqlite")
    applied = await migrate_data(data, seed=True)
    assert applied == ["0001_control.sql"]
    assert await migrate_data(data, seed=True) == []  # forward-only, idempotent seed
    svc = LeaseService(data, MemoryCache())
    assert (await svc.validate("SMPPD", "demo")).allowed
    assert (await svc.validate("2020", "demo")).source == "database"
    assert (await svc.validate("2020", "demo")).source == "cache"
    assert (await svc.validate("NOPE", "demo")).reason_code is Reason.NOT_REGISTERED
    prefixes, rules = await data.routing_rows()
    assert {p.operator_id for p in prefixes} == {"roshan", "etisalat", "mtn", "awcc", "salaam"}
    assert [r.name for r in rules] == ["salaam-failover-awcc"]
    one_prefixes, _ = await data.routing_rows("93791234567")
    assert [p.prefix for p in one_prefixes] == ["9379"]
    await data.close()


# --------------------------------------------------------------------------- in the dispatch path


async def test_dispatch_lease_check_and_selector(tmp_path: Any) -> None:
    """A denied sender is refused at submit with its reason code (nothing stored, nothing
    reaches the SMSC); a dispatch command that reaches the dispatcher anyway (NATS) ends
    REJECTED with it; an allowed one is routed by SelectOperator (a rule) and sent."""
    from e2e_helpers import (
        mno,
        operator,
        running_daemon,
        running_sim,
        submits,
        wait_bound,
        wait_final,
        write_config,
    )

    async with running_sim([mno("alpha"), mno("beta")]) as sim:
        path = write_config(tmp_path, [operator("alpha", sim, prefix="937"),
                                       operator("beta", sim, prefix="9399")])
        with path.open("a") as fh:
            fh.write("[leases]\nenforce = true\n")
        async with running_daemon(path) as daemon:
            await wait_bound(daemon)
            data = daemon.parts.control.data
            await data.add_operator("alpha", "Alpha")
            await data.add_operator("beta", "Beta")
            await daemon.parts.control.put_lease(LeaseIn(sender="GOOD", tenant_id="t1"))
            await daemon.parts.control.put_rule(RuleIn(name="to-beta", prefix="9370", operators=[
                RuleOperatorIn(operator_id="beta")]))
            await daemon.parts.control.reload_routing()
            bodies = [{"tenant_id": "t1", "source": src, "destination": "+93701234567",
                       "text": "hi"} for src in ("GOOD", "BAD", "GOOD")]
            with pytest.raises(InputError) as refused:
                await daemon.submit(bodies, None)
            assert refused.value.status == 403
            assert refused.value.extra["denied"][0]["reason_code"] == "NOT_REGISTERED"
            assert [f for f, _ in refused.value.problems] == ["messages[1].source"]
            assert await daemon.store.pending_messages() == []
            accepted = await daemon.submit([bodies[0], bodies[2]], None)
            assert {a["operator_id"] for a in accepted} == {"beta"}
            items = [daemon.dispatcher.prepare(body) for body in bodies]
            direct = await daemon.dispatcher.accept(items)  # as a NATS command is
            assert [a.rejected for a in direct] == [None, "NOT_REGISTERED", None]
            ids = [a["message_id"] for a in accepted] + [a.message_id for a in direct]
            finals = await wait_final(daemon, ids)
            states = [finals[i]["state"] for i in ids]
            assert states == ["DELIVERED", "DELIVERED", "DELIVERED", "REJECTED", "DELIVERED"]
            assert finals[direct[1].message_id]["reason"] == "NOT_REGISTERED"
            assert len(submits(sim, "beta")) == 4 and submits(sim, "alpha") == []
