"""The batch methods of every CorrelationStore (SqliteStore, PgStore, PgStore + Redis):
accept_new, lookup_parts, record_receipts, store_events; then PgStore's own batch
promises (the Redis / PostgreSQL tiers of lookup_parts, idempotency keys in Redis,
replicas racing on accept_new) and the Redis pool.

Two data sets per test ("a" and "b": two SQLite files, or two PostgreSQL databases
and two Redis prefixes), so a batch call can be compared with the same rows fed to
a second store one call at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as redis
from conftest import FakeClock
from records import message
from servers import DEAD_REDIS, REDIS_URL, migrated_database, redis_prefix
from test_store_contract import truncate

from correlation.pg_store import LOOKUP_MANY_SQL, PgStore
from correlation.redis_index import RedisIndex
from correlation.sqlite_store import SqliteStore
from correlation.store import (
    ACCEPTED,
    DELIVERED,
    EXPIRED,
    SUBMITTED,
    UNDELIVERABLE,
    CorrelationStore,
    PartRef,
)

pytest_plugins = ["pg_fixtures"]  # prefix, client, pg_stores, explain_on_20000_parts

if TYPE_CHECKING:
    from pg_fixtures import PgStores

DATA_SETS = ("a", "b")


@pytest.fixture(scope="module")
def pg_dsns() -> Iterator[dict[str, str]]:
    with migrated_database() as a, migrated_database() as b:
        yield {"a": a, "b": b}


class Stores:
    """Opens stores of one kind over data set "a" or "b"; closes them all at the end."""

    def __init__(self, kind: str, tmp_path: Path, clock: FakeClock) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.clock = clock
        self.dsns: dict[str, str] = {}
        self.prefixes: dict[str, str] = {}
        self.opened: list[CorrelationStore] = []

    async def open(self, data: str = "a") -> CorrelationStore:
        store: CorrelationStore
        if self.kind == "sqlite":
            store = SqliteStore(str(self.tmp_path / f"{data}.sqlite"), clock=self.clock)
        else:
            redis_url = REDIS_URL if self.kind == "pg+redis" else None
            store = PgStore(
                self.dsns[data],
                redis_url,
                clock=self.clock,
                redis_prefix=self.prefixes.get(data, ""),
                migrate_on_open=False,
            )
        await store.open()
        self.opened.append(store)
        return store


@pytest.fixture(params=["sqlite", "pg", "pg+redis"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Stores]:
    opened = Stores(request.param, tmp_path, clock)
    prefix_gens = []
    if opened.kind != "sqlite":
        opened.dsns = request.getfixturevalue("pg_dsns")
        for dsn in opened.dsns.values():
            await truncate(dsn)
    if opened.kind == "pg+redis":
        for data in DATA_SETS:
            gen = redis_prefix()
            opened.prefixes[data] = await anext(gen)
            prefix_gens.append(gen)
    yield opened
    for store in opened.opened:
        await store.close()
    for gen in prefix_gens:
        await gen.aclose()


@pytest.fixture
async def store(stores: Stores) -> CorrelationStore:
    return await stores.open()


# -- accept_new ---------------------------------------------------------------------------


async def test_accept_new_skips_stored_ids_and_repeats(store: CorrelationStore) -> None:
    original = message("m1", 1.0)
    await store.accept([original])
    again = message("m1", 9.0)
    again.body = b"redelivered"
    batch = [again, message("m2", 2.0), message("m2", 3.0), message("m3", 4.0)]
    assert await store.accept_new(batch) == ["m2", "m3"]
    assert await store.accept_new(batch) == []
    assert await store.accept_new([]) == []
    got = await store.get_message("m1")
    assert got is not None and (got["body"], got["created_at"]) == (b"hello", 1.0)
    got = await store.get_message("m2")
    assert got is not None and got["created_at"] == 2.0  # the first of the repeats
    assert [m.message_id for m in await store.pending_messages()] == ["m1", "m2", "m3"]


async def test_accept_new_calls_committed_together_each_get_their_own(
    store: CorrelationStore, stores: Stores
) -> None:
    first, second, plain = await asyncio.gather(
        store.accept_new([message("a"), message("b")]),
        store.accept_new([message("b"), message("c")]),
        store.accept([message("d")]),
    )
    assert (first, second, plain) == (["a", "b"], ["c"], None)
    other = await stores.open()  # durable: another instance reads them
    assert [m.message_id for m in await other.pending_messages()] == ["a", "b", "c", "d"]


# -- lookup_parts -------------------------------------------------------------------------


async def test_lookup_parts_answers_each_key_set_in_order(
    store: CorrelationStore, stores: Stores
) -> None:
    await store.accept([message(f"m{i}") for i in range(1, 5)])
    await store.record_submitted_many(
        [
            ("m1", 1, 1, "op", "A", "a", 1.0),
            ("m2", 1, 2, "op", "B", "b", 1.0),
            ("m3", 1, 1, "op", "C", "c", 1.0),
        ]
    )
    key_sets = [["a"], ["zz", "b"], ["nope"], ["c", "a"], [], ["d"], ["a"]]
    # m4 is queued, not yet committed: still found, as lookup_part promises.
    _, answers = await asyncio.gather(
        store.record_submitted("m4", 1, 1, "op", "D", "d", 2.0), store.lookup_parts("op", key_sets)
    )
    m1, m2, m3, m4 = (PartRef("m1", 1, 1), PartRef("m2", 1, 2), PartRef("m3", 1, 1),
                      PartRef("m4", 1, 1))
    assert answers == [m1, m2, None, m3, None, m4, m1]
    assert await store.lookup_parts("other-op", [["a"], ["b"]]) == [None, None]
    assert await store.lookup_parts("op", []) == []
    fresh = await stores.open()  # nothing in memory: the table (and Redis) answer
    assert await fresh.lookup_parts("op", key_sets) == [m1, m2, None, m3, None, m4, m1]
    assert await fresh.lookup_parts("op", key_sets) == [
        await fresh.lookup_part("op", *keys) if keys else None for keys in key_sets
    ]


# -- record_receipts ----------------------------------------------------------------------

RECEIPT_ROWS: list[tuple[str, int, int, str, str | None, str | None, float]] = [
    ("s1", 1, 1, DELIVERED, "DELIVRD", "000", 2.0),  # the common case
    ("mp", 1, 3, DELIVERED, "DELIVRD", "000", 2.0),  # multipart
    ("s2", 1, 1, DELIVERED, "DELIVRD", "000", 2.0),
    ("mp", 2, 3, SUBMITTED, "ENROUTE", None, 2.5),  # intermediate
    ("s2", 1, 1, SUBMITTED, "ENROUTE", None, 3.0),  # intermediate after final
    ("d1", 1, 1, DELIVERED, "DELIVRD", "000", 3.0),  # the same part twice
    ("d1", 1, 1, UNDELIVERABLE, "UNDELIV", "001", 3.5),
    ("nope", 1, 1, DELIVERED, "DELIVRD", "000", 4.0),  # unknown part
    ("nope", 2, 2, SUBMITTED, "ENROUTE", None, 4.0),
    ("x2", 1, 1, DELIVERED, "DELIVRD", "000", 4.0),  # says one part, the table has two
    ("s4", 1, 1, DELIVERED, "DELIVRD", "000", 4.5),  # already DELIVERED before the batch
    ("ghost", 1, 1, EXPIRED, "EXPIRED", None, 5.0),  # a part without its message
    ("mp", 2, 3, DELIVERED, "DELIVRD", "000", 5.0),
    ("s3", 1, 1, EXPIRED, "EXPIRED", "002", 5.0),
    ("mp", 3, 3, EXPIRED, "EXPIRED", "003", 6.0),
]
RECEIPT_MESSAGES = ("s1", "s2", "s3", "s4", "d1", "mp", "x2", "ghost", "nope")


async def given_receipt_scenario(store: CorrelationStore) -> None:
    await store.accept([message(m) for m in RECEIPT_MESSAGES if m not in ("ghost", "nope")])
    await store.record_submitted_many(
        [(m, 1, 1, "op", m, m, 1.0) for m in ("s1", "s2", "s3", "s4", "d1", "ghost")]
        + [("mp", part, 3, "op", f"mp{part}", f"mp{part}", 1.0) for part in (1, 2, 3)]
        + [("x2", part, 2, "op", f"x2{part}", f"x2{part}", 1.0) for part in (1, 2)]
    )
    assert await store.record_receipt("s4", 1, DELIVERED, "DELIVRD", "000", 1.5) == DELIVERED


async def test_record_receipts_equals_record_receipt_one_by_one(stores: Stores) -> None:
    batched, sequential = await stores.open("a"), await stores.open("b")
    for s in (batched, sequential):
        await given_receipt_scenario(s)
    one_by_one = [await sequential.record_receipt(m, p, *rest) for m, p, _, *rest in RECEIPT_ROWS]
    # Two calls queued together (one group commit), and one call alone, answer alike.
    first, second = await asyncio.gather(
        batched.record_receipts(RECEIPT_ROWS[:7]), batched.record_receipts(RECEIPT_ROWS[7:])
    )
    assert first + second == one_by_one
    assert one_by_one == [
        DELIVERED, SUBMITTED, DELIVERED, SUBMITTED, DELIVERED, DELIVERED, UNDELIVERABLE, None,
        None, SUBMITTED, DELIVERED, EXPIRED, SUBMITTED, EXPIRED, EXPIRED,
    ]  # fmt: skip
    for m in RECEIPT_MESSAGES:
        assert await batched.get_message(m) == await sequential.get_message(m), m
    assert await batched.record_receipts([]) == []


async def test_record_receipts_in_one_call_and_in_order_with_other_writes(stores: Stores) -> None:
    batched, sequential = await stores.open("a"), await stores.open("b")
    for s in (batched, sequential):
        await given_receipt_scenario(s)
        await s.accept([message("late")])
    one_by_one = [await sequential.record_receipt(m, p, *rest) for m, p, _, *rest in RECEIPT_ROWS]
    await sequential.record_submitted("late", 1, 1, "op", "L", "l", 6.0)
    late = await sequential.record_receipt("late", 1, DELIVERED, "DELIVRD", None, 7.0)
    # The submit is queued before the receipts that need it: they see it.
    _, answers, late_answers = await asyncio.gather(
        batched.record_submitted("late", 1, 1, "op", "L", "l", 6.0),
        batched.record_receipts(RECEIPT_ROWS),
        batched.record_receipts([("late", 1, 1, DELIVERED, "DELIVRD", None, 7.0)]),
    )
    assert (answers, late_answers) == (one_by_one, [late]) and late == DELIVERED
    for m in (*RECEIPT_MESSAGES, "late"):
        assert await batched.get_message(m) == await sequential.get_message(m), m


# -- store_events -------------------------------------------------------------------------


async def test_store_events_ids_in_order(store: CorrelationStore, clock: FakeClock) -> None:
    before = await store.store_event("dlr", {"n": -1})
    clock.advance(5)
    ids, mo_ids = await asyncio.gather(
        store.store_events("dlr", [{"n": n} for n in range(50)]),
        store.store_events("mo", [{"text": "hi"}]),
    )
    assert ids == sorted(ids) and len(set(ids)) == 50 and ids[0] > before
    assert mo_ids[0] > ids[-1]
    listed = await store.list_events("dlr", after_id=before, limit=100)
    assert [(e.id, e.payload, e.created_at) for e in listed] == [
        (i, {"n": n}, clock.now) for n, i in enumerate(ids)
    ]
    assert [e.kind for e in await store.list_events(None, after_id=ids[-1])] == ["mo"]
    assert await store.store_events("dlr", []) == []


# -- PgStore: the tiers of lookup_parts, idempotency in Redis, replicas --------------------


@pytest.fixture
async def dsn(pg_dsns: dict[str, str]) -> str:
    await truncate(pg_dsns["a"])
    return pg_dsns["a"]


async def test_pg_lookup_parts_in_flight_then_redis_then_postgres(
    dsn: str, prefix: str, client: redis.Redis, pg_stores: PgStores
) -> None:
    store = await pg_stores.open(dsn, REDIS_URL, redis_prefix=prefix)
    await store.accept([message("pg"), message("both"), message("new")])
    await store.record_submitted_many(
        [("pg", 1, 1, "op", "P", "p", 1.0), ("both", 1, 1, "op", "B", "b", 1.0)]
    )
    await client.delete(f"{prefix}op:p")  # evicted: only PostgreSQL has it
    index = RedisIndex(REDIS_URL, prefix=prefix)
    try:  # only in Redis (PostgreSQL has no such row): Redis answers
        assert await index.put_many([("op", "cached", PartRef("m9", 1, 1))])
    finally:
        await index.close()
    key_sets = [["p"], ["nope"], ["cached"], ["zz", "n"], ["p", "cached"], ["zz", "b"]]
    _, answers = await asyncio.gather(
        store.record_submitted("new", 1, 1, "op", "N", "n", 2.0), store.lookup_parts("op", key_sets)
    )
    pg, cached = PartRef("pg", 1, 1), PartRef("m9", 1, 1)
    # ["p", "cached"]: Redis is asked before PostgreSQL, as lookup_part does.
    assert answers == [pg, None, cached, PartRef("new", 1, 1), cached, PartRef("both", 1, 1)]
    assert await client.get(f"{prefix}op:p") == b"1:1:pg"  # refilled from PostgreSQL


async def test_pg_lookup_parts_with_redis_down_answers_from_postgres(
    dsn: str, pg_stores: PgStores
) -> None:
    writer = await pg_stores.open(dsn, DEAD_REDIS)
    await writer.accept([message("m1"), message("m2")])
    await writer.record_submitted_many(
        [("m1", 1, 1, "op", "A", "a", 1.0), ("m2", 1, 2, "op", "B", "b", 1.0)]
    )
    reader = await pg_stores.open(dsn, DEAD_REDIS)  # another replica: nothing in memory
    assert await reader.lookup_parts("op", [["zz", "b"], ["x"], ["a"]]) == [
        PartRef("m2", 1, 2),
        None,
        PartRef("m1", 1, 1),
    ]


async def test_pg_lookup_parts_newest_submit_of_a_key_wins(
    dsn: str, pg_stores: PgStores
) -> None:
    store = await pg_stores.open(dsn, None)
    await store.accept([message("old"), message("new")])
    await store.record_submitted("old", 1, 1, "op", "K", "k", 1.0)
    await store.record_submitted("new", 1, 1, "op", "K", "k", 2.0)  # the SMSC reused its id
    reader = await pg_stores.open(dsn, None)
    assert await reader.lookup_parts("op", [["k"], ["x", "k"]]) == [PartRef("new", 1, 1)] * 2


async def test_pg_lookup_parts_probes_the_index(
    dsn: str, explain_on_20000_parts: Callable[..., Awaitable[str]]
) -> None:
    keys = [f"{i:x}" for i in range(200)]
    text = await explain_on_20000_parts(dsn, LOOKUP_MANY_SQL, "op3", list(range(200)), keys,
                                        [0] * 200)
    assert "Index Scan using message_correlations_lookup" in text, text
    assert "Seq Scan on message_correlations" not in text, text


async def test_pg_replicas_claiming_one_idempotency_key_agree(
    dsn: str, pg_stores: PgStores
) -> None:
    one = await pg_stores.open(dsn, DEAD_REDIS)
    two = await pg_stores.open(dsn, DEAD_REDIS)
    claims = await asyncio.gather(*(store.idempotency_claim("a", "k", f"print-{n}")
                                    for n, store in enumerate([one, two] * 5)))
    assert len({claim.fingerprint for claim in claims}) == 1


async def test_pg_replicas_racing_on_accept_new_store_each_id_once(
    dsn: str, pg_stores: PgStores, caplog: pytest.LogCaptureFixture
) -> None:
    a = await pg_stores.open(dsn, None)
    b = await pg_stores.open(dsn, None)
    ids = [f"m{i:03}" for i in range(300)]
    results = await asyncio.gather(
        a.accept_new([message(m) for m in ids]),
        b.accept_new([message(m) for m in reversed(ids)]),  # the other order
        *(s.accept_new([message(m)]) for m in ids[::7] for s in (a, b)),
    )
    stored = [m for got in results for m in got]
    assert sorted(stored) == sorted(ids)  # each id stored by exactly one call
    assert len(await a.pending_messages()) == len(ids)
    # No batch failed (a deadlock between the replicas would have rolled one back).
    assert "batch rolled back" not in caplog.text


async def test_pg_accept_new_is_durable_for_another_replica(
    dsn: str, pg_stores: PgStores
) -> None:
    a = await pg_stores.open(dsn, None)
    assert await a.accept_new([message("m1")]) == ["m1"]
    b = await pg_stores.open(dsn, None)
    got = await b.get_message("m1")
    assert got is not None and got["state"] == ACCEPTED
    assert await b.accept_new([message("m1"), message("m2")]) == ["m2"]


# -- the Redis pool -----------------------------------------------------------------------


async def test_redis_callers_wait_for_a_free_connection(prefix: str) -> None:
    index = RedisIndex(REDIS_URL, prefix=prefix, max_connections=2)
    try:
        assert await index.put_many([("op", "k", PartRef("m1", 1, 1))])
        answers = await asyncio.gather(*(index.get_many("op", [["x", "k"]]) for _ in range(100)))
        assert answers == [[PartRef("m1", 1, 1)]] * 100
        assert index.available  # nobody failed: nobody switched the index off
    finally:
        await index.close()
