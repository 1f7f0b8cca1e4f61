"""One contract, every CorrelationStore: SqliteStore, PgStore, PgStore + Redis.

The PostgreSQL tests run in a database of their own (``smppd_test_<random>``), created
for this module and dropped after it, and each test uses its own Redis key prefix.
PostgreSQL and Redis come from SMPPD_TEST_PG_DSN and SMPPD_TEST_REDIS_URL; if either
is unreachable the tests fail (they never skip).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from conftest import FakeClock
from records import message
from servers import REDIS_URL, redis_prefix

from correlation.pg_store import PgStore
from correlation.sqlite_store import SqliteStore
from correlation.store import (
    ACCEPTED,
    DELIVERED,
    FAILED,
    SUBMITTED,
    UNDELIVERABLE,
    CorrelationStore,
    MoPartRecord,
    OutboxDepth,
    PartRef,
    WebhookTargets,
)

SMPP_TABLES = (
    "smpp.messages, smpp.message_correlations, smpp.orphan_receipts, smpp.orphan_keys,"
    " smpp.mo_messages, smpp.mo_parts, smpp.events, smpp.idempotency_keys,"
    " smpp.webhook_outbox"
)


async def truncate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"TRUNCATE {SMPP_TABLES} RESTART IDENTITY")
    finally:
        await conn.close()


# -- fixtures ---------------------------------------------------------------------------

OpenStore = Callable[[], Awaitable[CorrelationStore]]
# What accepting a message id already stored raises: the database driver's own error.
DUPLICATE_ID_ERROR: dict[type, type[Exception]] = {
    SqliteStore: sqlite3.IntegrityError, PgStore: asyncpg.UniqueViolationError}


@pytest.fixture(params=["sqlite", "pg", "pg+redis"])
async def open_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[OpenStore]:
    """Opens a store over this test's data; each call a new instance (a restart, or
    another replica), all closed at the end."""
    kind: str = request.param
    opened: list[CorrelationStore] = []
    prefixes = redis_prefix()
    redis_url, prefix = None, ""
    if kind == "pg+redis":
        redis_url, prefix = REDIS_URL, await anext(prefixes)
    if kind != "sqlite":
        dsn = request.getfixturevalue("pg_dsn")  # tests/conftest.py: this module's database
        await truncate(dsn)

    async def factory() -> CorrelationStore:
        store: CorrelationStore
        if kind == "sqlite":
            store = SqliteStore(str(tmp_path / "smppd.sqlite"), clock=clock)
        else:
            store = PgStore(dsn, redis_url, clock=clock, redis_prefix=prefix)
        await store.open()
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()
    if redis_url is not None:
        await prefixes.aclose()


@pytest.fixture
async def store(open_store: OpenStore) -> CorrelationStore:
    return await open_store()




# -- the contract -------------------------------------------------------------------------


async def test_accept_survives_close_and_reopen(
    store: CorrelationStore, open_store: OpenStore
) -> None:
    await store.accept([message("m1", 1.0), message("m2", 2.0)])
    await store.close()
    again = await open_store()
    got = await again.get_message("m1")
    assert got is not None
    assert got["state"] == ACCEPTED and got["body"] == b"hello" and got["parts"] == []
    assert (got["created_at"], got["tenant_id"], got["operator_id"]) == (1.0, "t1", None)
    assert [m.message_id for m in await again.pending_messages()] == ["m1", "m2"]
    assert await again.get_message("nope") is None


async def test_pending_lists_only_unsubmitted(
    store: CorrelationStore, open_store: OpenStore
) -> None:
    await store.accept([message("m1", 1), message("m2", 2), message("m3", 3)])
    await store.record_submitted("m1", 1, 1, "op", "1", "1", 10.0)
    await store.record_submitted("m3", 1, 2, "op", "2", "2", 10.0)  # 1 part of 2: still pending
    other = await open_store()  # a second instance reads what the first committed
    pending = await other.pending_messages()
    assert [m.message_id for m in pending] == ["m2", "m3"]
    assert pending[0] == message("m2", 2)
    await store.record_submitted("m3", 2, 2, "op", "3", "3", 11.0)
    assert [m.message_id for m in await store.pending_messages()] == ["m2"]
    got = await store.get_message("m3")
    assert got is not None and got["state"] == SUBMITTED and got["operator_id"] == "op"
    assert [(p["part"], p["smsc_key"], p["submitted_at"]) for p in got["parts"]] == [
        (1, "2", 10.0),
        (2, "3", 11.0),
    ]


async def test_submitted_part_is_findable_before_record_returns(store: CorrelationStore) -> None:
    await store.accept([message("m1")])
    # gather starts record_submitted first; lookup runs while the write is still queued.
    _, found = await asyncio.gather(
        store.record_submitted("m1", 1, 1, "op", "AB", "ab", 1.0), store.lookup_part("op", "ab")
    )
    assert found == PartRef("m1", 1, 1)


async def test_many_submits_in_one_write(store: CorrelationStore, open_store: OpenStore) -> None:
    await store.accept([message("m1"), message("m2")])
    rows = [
        ("m1", 1, 1, "op", "A1", "a1", 2.0),
        ("m2", 1, 2, "op", "B1", "b1", 2.0),
        ("m2", 2, 2, "op", "B2", "b2", 3.0),
    ]
    _, found = await asyncio.gather(
        store.record_submitted_many(rows), store.lookup_part("op", "b2")
    )
    assert found == PartRef("m2", 2, 2)
    assert await store.pending_messages() == []
    again = await open_store()
    assert await again.lookup_part("op", "a1") == PartRef("m1", 1, 1)
    got = await again.get_message("m2")
    assert got is not None and got["state"] == SUBMITTED
    assert [p["smsc_id"] for p in got["parts"]] == ["B1", "B2"]


async def test_lookup_by_operator_and_first_matching_key(
    store: CorrelationStore, open_store: OpenStore
) -> None:
    await store.accept([message("m1"), message("m2")])
    await store.record_submitted("m1", 1, 1, "op", "1A", "1a", 1.0)
    await store.record_submitted("m2", 1, 2, "op", "1B", "1b", 2.0)
    for s in (store, await open_store()):  # the writer, and an instance that never saw it
        assert await s.lookup_part("op", "1a") == PartRef("m1", 1, 1)
        assert await s.lookup_part("op", "zz", "1b") == PartRef("m2", 1, 2)
        assert await s.lookup_part("other-op", "1a") is None
        assert await s.lookup_part("op", "zz") is None


async def test_receipt_on_single_part_message(store: CorrelationStore) -> None:
    await store.accept([message("m1")])
    await store.record_submitted("m1", 1, 1, "op", "1", "1", 1.0)
    assert await store.record_receipt("m1", 1, SUBMITTED, "ENROUTE", None, 2.0) == SUBMITTED
    assert await store.record_receipt("m1", 1, DELIVERED, "DELIVRD", "000", 3.0) == DELIVERED
    # A late intermediate receipt never undoes a final one.
    assert await store.record_receipt("m1", 1, SUBMITTED, "ENROUTE", None, 4.0) == DELIVERED
    got = await store.get_message("m1")
    assert got is not None
    assert (got["state"], got["receipt_stat"], got["receipt_err"]) == (DELIVERED, "DELIVRD", "000")
    assert got["updated_at"] == 3.0
    assert got["parts"][0]["state"] == DELIVERED and got["parts"][0]["done_at"] == 3.0
    assert await store.record_receipt("nope", 1, DELIVERED, "DELIVRD", None, 5.0) is None
    assert await store.record_receipt("nope", 1, SUBMITTED, "ENROUTE", None, 5.0) is None


async def test_multipart_delivered_when_every_part_is(store: CorrelationStore) -> None:
    await store.accept([message("m1")])
    for part in (1, 2, 3):
        await store.record_submitted("m1", part, 3, "op", str(part), str(part), 1.0)
    assert await store.record_receipt("m1", 1, DELIVERED, "DELIVRD", None, 2.0) == SUBMITTED
    assert await store.record_receipt("m1", 3, DELIVERED, "DELIVRD", None, 2.0) == SUBMITTED
    assert await store.record_receipt("m1", 2, SUBMITTED, "ENROUTE", None, 2.0) == SUBMITTED
    assert await store.record_receipt("m1", 2, DELIVERED, "DELIVRD", None, 2.0) == DELIVERED


async def test_multipart_fails_when_any_part_fails(store: CorrelationStore) -> None:
    await store.accept([message("m1")])
    for part in (1, 2):
        await store.record_submitted("m1", part, 2, "op", str(part), str(part), 1.0)
    assert (
        await store.record_receipt("m1", 2, UNDELIVERABLE, "UNDELIV", "001", 2.0) == UNDELIVERABLE
    )
    assert await store.record_receipt("m1", 1, DELIVERED, "DELIVRD", None, 3.0) == UNDELIVERABLE
    got = await store.get_message("m1")
    assert got is not None and (got["state"], got["receipt_err"]) == (UNDELIVERABLE, "001")


async def test_resubmit_records_new_id_and_keeps_receipt_state(
    store: CorrelationStore, open_store: OpenStore
) -> None:
    await store.accept([message("m1")])
    await store.record_submitted("m1", 1, 1, "op", "OLD", "old", 1.0)
    await store.record_receipt("m1", 1, DELIVERED, "DELIVRD", None, 2.0)
    await store.record_submitted("m1", 1, 1, "op", "NEW", "new", 3.0)
    got = await store.get_message("m1")
    assert got is not None
    assert [(p["smsc_id"], p["state"]) for p in got["parts"]] == [("NEW", DELIVERED)]
    assert await (await open_store()).lookup_part("op", "new") == PartRef("m1", 1, 1)


async def test_set_message_state(store: CorrelationStore) -> None:
    await store.accept([message("m1"), message("m2")])
    await asyncio.gather(
        store.set_message_state("m1", FAILED, at=5.0, reason="ESME_RINVDSTADR", command_status=11),
        store.set_message_state("m2", FAILED, at=5.0, command_status=0xFFFFFFFF),
    )
    await store.set_message_state("m1", FAILED, at=6.0, attempts=3)
    got = await store.get_message("m1")
    assert got is not None
    assert (got["state"], got["reason"], got["command_status"], got["attempts"]) == (
        FAILED,
        "ESME_RINVDSTADR",
        11,
        3,
    )
    assert got["updated_at"] == 6.0
    assert await store.pending_messages() == []


async def test_orphans_found_under_any_key_and_taken_once(store: CorrelationStore) -> None:
    await store.put_orphan("op", ["1e240", "123456"], {"stat": "DELIVRD", "n": [1, None]}, 1.0)
    await store.put_orphan("op", ["1e240"], {"stat": "UNDELIV"}, 2.0)
    await store.put_orphan("other", ["123456"], {"stat": "EXPIRED"}, 3.0)
    assert await store.take_orphans("op", "123456") == [{"stat": "DELIVRD", "n": [1, None]}]
    assert await store.take_orphans("op", "1e240") == [{"stat": "UNDELIV"}]
    assert await store.take_orphans("op", "1e240") == []
    assert await store.take_orphans("other", "123456") == [{"stat": "EXPIRED"}]


async def test_orphans_taken_for_many_keys_at_once(store: CorrelationStore) -> None:
    assert await store.take_orphans_many("op", ["a", "b"]) == {}
    await store.put_orphan("op", ["a"], {"n": 1}, 1.0)
    await store.put_orphan("op", ["b", "b2"], {"n": 2}, 2.0)
    await store.put_orphan("op", ["a"], {"n": 3}, 3.0)
    await store.put_orphan("other", ["b"], {"n": 4}, 4.0)
    got = await store.take_orphans_many("op", ["a", "b", "zzz", "a"])
    assert got == {"a": [{"n": 1}, {"n": 3}], "b": [{"n": 2}]}
    assert await store.take_orphans_many("op", ["a", "b", "b2"]) == {}  # taken once
    assert await store.take_orphans("other", "b") == [{"n": 4}]


async def test_orphans_taken_oldest_first(store: CorrelationStore) -> None:
    await asyncio.gather(*(store.put_orphan("op", ["k"], {"n": n}, float(n)) for n in range(5)))
    assert await store.take_orphans("op", "k") == [{"n": n} for n in range(5)]


async def test_idempotency_claim_first_writer_wins_per_scope(
    store: CorrelationStore, open_store: OpenStore
) -> None:
    first, second = await asyncio.gather(
        store.idempotency_claim("a", "k1", "print-1"), store.idempotency_claim("a", "k1", "print-2")
    )
    assert first.fingerprint == second.fingerprint == "print-1"
    assert first.response is None  # the first request is not done yet
    other = await store.idempotency_claim("b", "k1", "print-3")  # another caller's key
    assert other.fingerprint == "print-3"
    await store.idempotency_complete("a", "k1", "print-2", [{"message_id": "wrong"}])
    await store.idempotency_complete("a", "k1", "print-1", [{"message_id": "m1"}])
    await store.idempotency_complete("a", "k1", "print-1", [{"message_id": "later"}])
    await store.close()
    again = await open_store()
    held = await again.idempotency_claim("a", "k1", "print-9")
    assert (held.fingerprint, held.response) == ("print-1", [{"message_id": "m1"}])


async def test_idempotency_key_held_48_hours_and_released_when_refused(
    store: CorrelationStore, clock: FakeClock
) -> None:
    await store.idempotency_claim("a", "k", "print-1")
    await store.idempotency_complete("a", "k", "print-1", [{"message_id": "m1"}])
    clock.advance(48 * 3600 - 1)
    assert (await store.idempotency_claim("a", "k", "print-2")).fingerprint == "print-1"
    clock.advance(2)  # the window is over: the key is free again
    taken = await store.idempotency_claim("a", "k", "print-2")
    assert (taken.fingerprint, taken.response) == ("print-2", None)
    await store.idempotency_release("a", "k", "print-1")  # not the holder: nothing happens
    assert (await store.idempotency_claim("a", "k", "print-3")).fingerprint == "print-2"
    await store.idempotency_release("a", "k", "print-2")
    assert (await store.idempotency_claim("a", "k", "print-3")).fingerprint == "print-3"


async def test_find_messages(store: CorrelationStore) -> None:
    await store.accept([message("m1"), message("m2")])
    found = await store.find_messages(["m2", "nope", "m1"])
    assert sorted(found) == ["m1", "m2"] and found["m2"].message_id == "m2"
    assert found["m1"].body == message("m1").body
    assert await store.find_messages([]) == {}


async def test_events_listed_by_kind_with_a_cursor(
    store: CorrelationStore, clock: FakeClock
) -> None:
    ids = [await store.store_event("dlr", {"n": n}) for n in range(3)]
    clock.advance(5)
    mo = await store.store_event("mo", {"text": "hi"})
    assert ids == sorted(ids) and mo > ids[-1]
    dlrs = await store.list_events("dlr", after_id=ids[0], limit=10)
    assert [(e.id, e.payload) for e in dlrs] == [(ids[1], {"n": 1}), (ids[2], {"n": 2})]
    every = await store.list_events(None, after_id=0, limit=3)
    assert [e.kind for e in every] == ["dlr", "dlr", "dlr"]
    last = await store.list_events(None, after_id=every[-1].id)
    assert [(e.id, e.kind, e.payload, e.created_at) for e in last] == [
        (mo, "mo", {"text": "hi"}, clock.now)
    ]


async def test_events_of_some_tenants_only(store: CorrelationStore) -> None:
    other = message("m2")
    other.tenant_id = "t2"
    await store.accept([message("m1"), other])
    ids = [await store.store_event("dlr", {"message_id": m}) for m in ("m1", "m2", "m1")]
    await store.store_event("mo", {"text": "no message id"})
    mine = await store.list_events("dlr", tenants=["t1"])
    assert [e.id for e in mine] == [ids[0], ids[2]]
    assert [e.id for e in await store.list_events(None, tenants=["t2", "t9"])] == [ids[1]]
    assert await store.list_events(None, tenants=[]) == []
    assert len(await store.list_events(None)) == 4


async def test_concurrent_calls_commit_together_and_a_bad_one_fails_alone(
    store: CorrelationStore,
) -> None:
    await store.accept([message("dup")])
    results = await asyncio.gather(
        *(store.accept([message(f"m{i}")]) for i in range(50)),
        store.accept([message("dup")]),
        store.record_submitted("m0", 1, 1, "op", "X", "x", 2.0),
        return_exceptions=True,
    )
    assert all(r is None for r in results[:50]) and results[51] is None
    assert isinstance(results[50], DUPLICATE_ID_ERROR[type(store)]), repr(results[50])
    assert len(await store.pending_messages()) == 50  # 51 accepted, m0 submitted
    assert await store.lookup_part("op", "x") == PartRef("m0", 1, 1)


async def test_closed_store_refuses_calls(open_store: OpenStore) -> None:
    s = await open_store()
    await s.close()
    with pytest.raises(RuntimeError):
        await s.accept([message("m1")])


async def test_mo_parts_kept_replaced_and_dropped(store: CorrelationStore) -> None:
    def part(source: str, ref: int, seq: int, body: bytes, at: float) -> MoPartRecord:
        return MoPartRecord("op", source, ref, seq, 3, "1234", 8, body, at)

    assert await store.load_mo_parts() == []
    await store.put_mo_parts([part("a", 7, 1, b"\x00one", 1.0), part("b", 7, 1, b"x", 2.0)])
    await store.put_mo_parts([part("a", 7, 2, b"two", 3.0), part("a", 7, 1, b"\x00ONE", 4.0)])
    assert await store.load_mo_parts() == [  # oldest first; a part stored again replaces itself
        part("b", 7, 1, b"x", 2.0), part("a", 7, 2, b"two", 3.0), part("a", 7, 1, b"\x00ONE", 4.0)]
    await store.drop_mo_parts([("op", "a", 7), ("op", "zz", 1)])
    assert await store.load_mo_parts() == [part("b", 7, 1, b"x", 2.0)]


# -- the webhook outbox ------------------------------------------------------------------


def _dlr(message_id: str, state: str, final: bool) -> dict[str, Any]:
    return {"schema": "smppd.dlr.v1", "message_id": message_id, "state": state,
            "final": final, "at": 1.5}


async def _webhook_messages(store: CorrelationStore) -> None:
    """m1: its own callback_url (tenant t1); m2: tenant t2, whose default URL is on;
    m3: tenant t1, no URL (not sent)."""
    own, default, none = message("m1"), message("m2"), message("m3")
    own.callback_url = "https://hooks.example/dlr?k=1"
    default.tenant_id = "t2"
    await store.accept([own, default, none])


async def _m1_m2_m1_events(store: CorrelationStore) -> list[dict[str, Any]]:
    """The webhook messages stored, and three DLR events for them: m1's intermediate,
    m2's final, m1's final (m1's two share an ordering key, m2 goes its own way)."""
    await _webhook_messages(store)
    return [_dlr("m1", "SUBMITTED", False), _dlr("m2", "DELIVERED", True),
            _dlr("m1", "DELIVERED", True)]


async def test_outbox_takes_the_dlr_events_of_messages_with_a_url_in_one_write(
    store: CorrelationStore, clock: FakeClock
) -> None:
    await _webhook_messages(store)
    events = [_dlr("m1", "SUBMITTED", False), _dlr("m3", "DELIVERED", True),
              _dlr("m2", "DELIVERED", True), _dlr("m1", "DELIVERED", True)]
    queued = await store.store_events_with_webhooks("dlr", events, WebhookTargets(tenants=["t2"]))
    assert queued == (3, [], [])  # no lease: nothing taken
    assert [json.loads(json.dumps(e.payload)) for e in await store.list_events("dlr")] == events
    assert await store.webhook_depth() == OutboxDepth(3, clock.now, 0)
    claimed = await store.webhook_claim(clock.now, 10, lease=30)
    # One per message: m1's final waits for its intermediate.
    assert [(r.tenant_id, r.url, json.loads(r.body)) for r in claimed] == [
        ("t1", "https://hooks.example/dlr?k=1", events[0]), ("t2", None, events[2])]
    assert all(r.kind == "dlr" and r.attempts == 0 and r.dead_at is None for r in claimed)
    assert await store.webhook_claim(clock.now, 10, lease=30) == []  # leased, and blocked
    await store.webhook_delivered([claimed[0].id])
    (final,) = await store.webhook_claim(clock.now, 10, lease=30)
    assert json.loads(final.body) == events[3] and final.id > claimed[0].id
    clock.advance(31)  # the lease ran out without an answer: due again
    again = await store.webhook_claim(clock.now, 10, lease=30)
    assert sorted(r.id for r in again) == sorted([claimed[1].id, final.id])


async def test_outbox_enqueue_alone_and_mo_by_owner(store: CorrelationStore,
                                                    clock: FakeClock) -> None:
    await _webhook_messages(store)
    assert await store.webhook_enqueue("dlr", [_dlr("m3", "DELIVERED", True)],
                                       WebhookTargets(tenants=["t2"])) == (0, [], [])
    mos = [{"schema": "smppd.mo.v1", "destination": d, "text": "hi"} for d in ("1", "2", "3")]
    queued = await store.webhook_enqueue("mo", mos, WebhookTargets(owners=["t1", None, "t2"]))
    assert queued.rows == 2 and queued.claimed == []
    claimed = await store.webhook_claim(clock.now, 10, lease=30)
    assert [(r.kind, r.tenant_id, r.url, json.loads(r.body)) for r in claimed] == [
        ("mo", "t1", None, mos[0]), ("mo", "t2", None, mos[2])]
    assert await store.list_events() == []  # enqueue alone stores no event


async def test_outbox_write_takes_its_rows_for_the_writers_lease(
    store: CorrelationStore, clock: FakeClock
) -> None:
    events = await _m1_m2_m1_events(store)
    queued = await store.store_events_with_webhooks("dlr", events, WebhookTargets(
        tenants=["t2"]), lease=30)
    # Both of m1's events in one write are taken: the writer keeps their order.
    assert queued.rows == 3 and queued.behind == []
    assert [(r.ordering_key, r.tenant_id, r.url, json.loads(r.body), r.attempts,
             r.created_at) for r in queued.claimed] == [
        ("m1", "t1", "https://hooks.example/dlr?k=1", events[0], 0, clock.now),
        ("m2", "t2", None, events[1], 0, clock.now),
        ("m1", "t1", "https://hooks.example/dlr?k=1", events[2], 0, clock.now)]
    ids = [r.id for r in queued.claimed]
    assert ids == sorted(ids)
    assert await store.webhook_claim(clock.now, 10, lease=30) == []  # they are the writer's
    # m1's intermediate fails and waits for its retry: a later m1 event is not taken.
    await store.webhook_retry(ids[0], clock.now + 5, "http 503")
    await store.webhook_release([ids[2]], clock.now)
    later = await store.webhook_enqueue("dlr", [_dlr("m1", "EXPIRED", True)],
                                        WebhookTargets(), lease=30)
    assert (later.rows, later.claimed, later.behind) == (1, [], ["m1"])
    mos = [{"schema": "smppd.mo.v1", "destination": "1", "text": "hi"}]
    (mo,) = (await store.webhook_enqueue("mo", mos, WebhookTargets(owners=["t2"]),
                                         lease=30)).claimed
    assert (mo.kind, mo.ordering_key, mo.tenant_id, json.loads(mo.body)) == (
        "mo", None, "t2", mos[0])
    clock.advance(31)  # the writer died: its rows come back when the lease runs out
    claimed = await store.webhook_claim(clock.now, 10, lease=30)
    assert sorted(r.id for r in claimed) == sorted([ids[0], ids[1], mo.id])
    assert {r.id: r.ordering_key for r in claimed}[ids[1]] == "m2"


async def test_outbox_retry_dead_letter_and_replay(open_store: OpenStore,
                                                   clock: FakeClock) -> None:
    store = await open_store()
    await _webhook_messages(store)
    events = [_dlr("m1", "SUBMITTED", False), _dlr("m1", "DELIVERED", True),
              _dlr("m2", "DELIVERED", True)]
    await store.webhook_enqueue("dlr", events, WebhookTargets(tenants=["t2"]))
    first, other = await store.webhook_claim(clock.now, 10, lease=30)
    await store.webhook_retry(first.id, clock.now + 5, "http 503")
    await store.webhook_retry(other.id, clock.now + 50, "connect")
    assert await store.webhook_claim(clock.now + 4, 10, lease=30) == []
    (retried,) = await store.webhook_claim(clock.now + 5, 10, lease=30)
    assert (retried.id, retried.attempts, retried.last_error) == (first.id, 1, "http 503")
    clock.advance(6)
    await store.webhook_kill(first.id, clock.now, "max age: http 503")
    # Dead, the intermediate no longer holds the final back.
    (final,) = await store.webhook_claim(clock.now, 10, lease=30)
    assert json.loads(final.body) == events[1]
    await store.webhook_delivered([final.id])
    assert await store.webhook_depth() == OutboxDepth(1, clock.now - 6, 1)
    await store.close()
    store = await open_store()  # a restart keeps the outbox and its dead letters
    (dead,) = await store.webhook_dead()
    assert (dead.id, dead.attempts, dead.last_error, dead.dead_at, dead.url) == (
        first.id, 2, "max age: http 503", clock.now, "https://hooks.example/dlr?k=1")
    assert await store.webhook_dead(tenants=["t2"]) == []
    assert await store.webhook_dead(after_id=dead.id) == []
    assert await store.webhook_replay(other.id, clock.now) is False  # not dead
    assert await store.webhook_replay(dead.id, clock.now) is True
    assert await store.webhook_replay(dead.id, clock.now) is False  # not dead any more
    assert await store.webhook_dead() == []
    (replayed,) = await store.webhook_claim(clock.now, 10, lease=30)
    assert (replayed.id, replayed.attempts, replayed.created_at) == (dead.id, 0, clock.now)
    await store.webhook_release([replayed.id], clock.now)  # shutdown: due again at once
    assert [r.id for r in await store.webhook_claim(clock.now, 10, lease=30)] == [dead.id]


async def test_outbox_dead_letters_past_their_retention_are_deleted(
    store: CorrelationStore, clock: FakeClock
) -> None:
    events = await _m1_m2_m1_events(store)
    await store.webhook_enqueue("dlr", events, WebhookTargets(tenants=["t2"]))
    first, second = await store.webhook_claim(clock.now, 10, lease=30)
    await store.webhook_kill(first.id, clock.now, "max age")
    clock.advance(100)
    await store.webhook_kill(second.id, clock.now, "max age")
    assert await store.webhook_purge_dead(clock.now - 100) == 0  # died at, not before
    assert await store.webhook_purge_dead(clock.now - 50) == 1
    assert [d.id for d in await store.webhook_dead()] == [second.id]
    assert await store.webhook_purge_dead(clock.now + 1, limit=10) == 1
    assert await store.webhook_dead() == []
    assert await store.webhook_depth() == OutboxDepth(1, clock.now - 100, 0)  # m1's final waits


async def test_outbox_claims_of_two_replicas_do_not_overlap(open_store: OpenStore,
                                                            clock: FakeClock) -> None:
    a, b = await open_store(), await open_store()
    messages = [message(f"m{i}") for i in range(40)]
    for m in messages:
        m.callback_url = "http://hooks.example/"
    await a.accept(messages)
    events = [_dlr(m.message_id, s, s == "DELIVERED") for m in messages
              for s in ("SUBMITTED", "DELIVERED")]
    await a.webhook_enqueue("dlr", events, WebhookTargets())
    got_a, got_b = await asyncio.gather(a.webhook_claim(clock.now, 25, 30),
                                        b.webhook_claim(clock.now, 25, 30))
    ids = [r.id for r in got_a + got_b]
    assert len(ids) == len(set(ids)) == 40
    assert {json.loads(r.body)["state"] for r in got_a + got_b} == {"SUBMITTED"}
