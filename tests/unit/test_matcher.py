"""ReceiptMatcher over a real SqliteStore, with a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import FakeClock
from e2e_helpers import open_sqlite
from records import message as stored_message

from correlation.matcher import ReceiptMatcher, receipt_keys
from correlation.receipts import Receipt
from correlation.sqlite_store import SqliteStore
from correlation.store import (
    ACCEPTED,
    DELIVERED,
    SUBMITTED,
    UNDELIVERABLE,
    MessageRecord,
)

HOLD = 30.0




def message(message_id: str) -> MessageRecord:
    return stored_message(message_id, at=1.0)


def receipt(receipt_id: str, stat: str = "DELIVRD", err: str = "000") -> Receipt:
    return Receipt(message_id=receipt_id, stat=stat, err=err, sub=1, dlvrd=1, text="hello")


async def expire_after_hold(matcher: ReceiptMatcher, clock: FakeClock) -> tuple[int, list[str]]:
    """``expire_held`` once the hold is over: what it returns, and the message ids it
    gave ``on_late`` (receipts matched late to a submit)."""
    late: list[str] = []

    async def on_late(operator_id: str, result: object) -> None:
        late.append(getattr(result, "message_id", ""))

    return await matcher.expire_held(clock.advance(HOLD), on_late), late


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "smppd.sqlite"), clock=clock)
    await s.open()
    await s.accept([message("m1"), message("m2")])
    yield s
    await s.close()


@pytest.fixture
def matcher(store: SqliteStore, clock: FakeClock) -> ReceiptMatcher:
    return ReceiptMatcher(store, clock, HOLD)


async def test_hex_submit_id_matches_decimal_receipt_id(matcher: ReceiptMatcher) -> None:
    assert await matcher.on_submitted("roshan", "m1", 1, 1, "00A1B2C3", "hex") == []
    result = await matcher.on_receipt("roshan", receipt("10597059"), "decimal")
    assert result is not None
    assert (result.message_id, result.part, result.total) == ("m1", 1, 1)
    assert (result.message_state, result.final, result.stat, result.err) == (
        DELIVERED,
        True,
        "DELIVRD",
        "000",
    )


async def test_auto_receipt_form_tries_every_reading(
    matcher: ReceiptMatcher, store: SqliteStore, clock: FakeClock
) -> None:
    assert receipt_keys("10597059", "auto") == ("a1b2c3", "10597059")
    await matcher.on_submitted("roshan", "m1", 1, 1, "A1B2C3", "hex")
    await matcher.on_submitted("roshan", "m2", 1, 1, "4660", "decimal")  # key 1234
    got1 = await matcher.on_receipt("roshan", receipt("10597059"), "auto")
    assert got1 is not None and got1.message_id == "m1"  # the preferred reading: at once
    # "1234" is key 4d2 read as decimal (preferred), 1234 read as hex: the other
    # reading matches only once the preferred one had the hold time to show up.
    assert await matcher.on_receipt("roshan", receipt("1234"), "auto") is None
    expired, late = await expire_after_hold(matcher, clock)
    assert expired == 0
    assert late == ["m2"]
    got = await store.get_message("m2")
    assert got is not None and got["state"] == DELIVERED


async def test_auto_receipt_ahead_of_its_submit_never_takes_another_reading(
    matcher: ReceiptMatcher, store: SqliteStore
) -> None:
    # Decimal ids on both sides, "auto" configured. Receipt "13" (key d) arrives before
    # its own submit is recorded, while submit "19" (key 13: the hex reading of "13")
    # already is; receipt "16" (key 10) is held when submit "22" (key 16) is recorded.
    await store.accept([message("m13"), message("m16"), message("m19"), message("m22")])
    await matcher.on_submitted("roshan", "m19", 1, 1, "19", "auto")
    assert await matcher.on_receipt("roshan", receipt("13"), "auto") is None  # held
    assert await matcher.on_receipt("roshan", receipt("16"), "auto") is None  # held
    assert await matcher.on_submitted("roshan", "m22", 1, 1, "22", "auto") == []
    got13 = await matcher.on_submitted("roshan", "m13", 1, 1, "13", "auto")
    got16 = await matcher.on_submitted_many("roshan", [("m16", 1, 1, "16")], "auto")
    assert [r.message_id for r in got13 + got16] == ["m13", "m16"]
    states = {m: (await store.get_message(m) or {})["state"] for m in ("m13", "m16", "m19", "m22")}
    assert states == {"m13": DELIVERED, "m16": DELIVERED, "m19": SUBMITTED, "m22": SUBMITTED}


async def test_receipt_from_another_operator_does_not_match(matcher: ReceiptMatcher) -> None:
    await matcher.on_submitted("roshan", "m1", 1, 1, "123", "decimal")
    assert await matcher.on_receipt("mtn-af", receipt("123"), "decimal") is None
    assert matcher.held_count == 1


async def test_receipt_before_response_is_held_then_matched(
    matcher: ReceiptMatcher, store: SqliteStore, clock: FakeClock
) -> None:
    assert await matcher.on_receipt("roshan", receipt("777"), "decimal") is None
    assert matcher.held_count == 1
    clock.advance(HOLD - 1)
    assert await matcher.expire_held(clock.now) == 0
    results = await matcher.on_submitted("roshan", "m1", 1, 1, "777", "decimal")
    assert [(r.message_id, r.message_state, r.final) for r in results] == [("m1", DELIVERED, True)]
    assert matcher.held_count == 0
    assert await matcher.expire_held(clock.advance(HOLD)) == 0
    assert await store.take_orphans("roshan", "309") == []


async def test_orphan_then_late_submit_is_matched(
    matcher: ReceiptMatcher, store: SqliteStore, clock: FakeClock
) -> None:
    late = Receipt(message_id="777", stat="UNDELIV", err="011", network_error_code=b"\x03\x00\x0b")
    assert await matcher.on_receipt("roshan", late, "auto") is None
    clock.advance(HOLD)
    assert await matcher.expire_held(clock.now) == 1
    assert matcher.held_count == 0
    # A fresh matcher (as after a restart): the orphan lives in the store, not in memory.
    fresh = ReceiptMatcher(store, clock, HOLD)
    results = await fresh.on_submitted("roshan", "m1", 1, 1, "777", "decimal")
    assert len(results) == 1
    assert (results[0].message_state, results[0].err) == (UNDELIVERABLE, "011")
    assert results[0].receipt == late
    # Taken once: the receipt's other candidate key no longer finds it.
    assert await store.take_orphans("roshan", "777") == []


async def test_multipart_delivered_only_when_every_part_is(matcher: ReceiptMatcher) -> None:
    await matcher.on_submitted("roshan", "m1", 1, 2, "100", "decimal")
    await matcher.on_submitted("roshan", "m1", 2, 2, "101", "decimal")
    first = await matcher.on_receipt("roshan", receipt("100"), "decimal")
    second = await matcher.on_receipt("roshan", receipt("101"), "decimal")
    assert first is not None and (first.message_state, first.final) == (SUBMITTED, False)
    assert second is not None and (second.message_state, second.final) == (DELIVERED, True)
    assert (second.part, second.total) == (2, 2)


async def test_multipart_fails_when_one_part_fails(matcher: ReceiptMatcher) -> None:
    await matcher.on_submitted("roshan", "m1", 1, 2, "100", "decimal")
    failed = await matcher.on_receipt("roshan", receipt("100", "UNDELIV", "001"), "decimal")
    assert failed is not None and (failed.message_state, failed.final) == (UNDELIVERABLE, True)
    await matcher.on_submitted("roshan", "m1", 2, 2, "101", "decimal")
    later = await matcher.on_receipt("roshan", receipt("101"), "decimal")
    assert later is not None and later.message_state == UNDELIVERABLE


async def test_intermediate_receipt_is_not_final(
    matcher: ReceiptMatcher, store: SqliteStore
) -> None:
    await matcher.on_submitted("roshan", "m1", 1, 1, "5", "decimal")
    enroute = await matcher.on_receipt("roshan", receipt("5", "ENROUTE"), "decimal")
    assert enroute is not None
    assert (enroute.message_state, enroute.final, enroute.part_state) == (
        SUBMITTED,
        False,
        SUBMITTED,
    )
    done = await matcher.on_receipt("roshan", receipt("5", "DELETED"), "decimal")
    assert done is not None and (done.message_state, done.final) == (UNDELIVERABLE, True)


async def test_receipt_racing_its_submit_through_the_table_is_not_lost(
    tmp_path: Path, clock: FakeClock
) -> None:
    # No hot index: the receipt's lookup goes to the table while the submit is being recorded.
    async with open_sqlite(tmp_path / "race.sqlite", clock=clock, hot_index_size=0) as store:
        await store.accept([message("m1")])
        matcher = ReceiptMatcher(store, clock, HOLD)
        direct, matched = await asyncio.gather(
            matcher.on_receipt("roshan", receipt("42"), "decimal"),
            matcher.on_submitted("roshan", "m1", 1, 1, "42", "decimal"),
        )
        # Matched once, by whichever side came second (the submit the matcher is
        # recording counts as seen), never lost and never twice.
        results = ([direct] if direct is not None else []) + matched
        assert [r.message_state for r in results] == [DELIVERED]
        assert matcher.held_count == 0
        got = await store.get_message("m1")
        assert got is not None and got["state"] == DELIVERED


async def test_unsubmitted_message_stays_accepted(
    matcher: ReceiptMatcher, store: SqliteStore
) -> None:
    await matcher.on_submitted("roshan", "m1", 1, 3, "1", "decimal")
    got = await store.get_message("m1")
    assert got is not None and got["state"] == ACCEPTED


async def test_batch_of_receipts_matches_holds_and_aggregates_in_order(
    matcher: ReceiptMatcher, store: SqliteStore, clock: FakeClock
) -> None:
    await store.accept([message("m3")])
    await matcher.on_submitted_many(
        "roshan", [("m1", 1, 1, "100"), ("m2", 1, 2, "200"), ("m2", 2, 2, "201")], "decimal"
    )
    batch = [receipt("100"), receipt("555"), receipt("200"), receipt("201", "UNDELIV", "011")]
    results = await matcher.on_receipts("roshan", batch, "decimal")
    assert [(r.message_id, r.part, r.message_state) if r else None for r in results] == [
        ("m1", 1, DELIVERED),
        None,  # no submit yet: held
        ("m2", 1, SUBMITTED),  # one of two parts delivered
        ("m2", 2, UNDELIVERABLE),
    ]
    assert [r.final for r in results if r] == [True, False, True]
    assert matcher.held_count == 1
    # The held receipt is claimed by its submit, as a single receipt would be.
    claimed = await matcher.on_submitted_many("roshan", [("m3", 1, 1, "555")], "decimal")
    assert [(r.message_id, r.message_state) for r in claimed] == [("m3", DELIVERED)]
    assert matcher.held_count == 0
    stored = await store.get_message("m2")
    assert stored is not None and stored["state"] == UNDELIVERABLE


async def test_batch_of_submits_takes_orphans_stored_under_their_keys(
    matcher: ReceiptMatcher, store: SqliteStore, clock: FakeClock
) -> None:
    for rid in ("700", "701"):
        assert await matcher.on_receipt("roshan", receipt(rid), "decimal") is None
    clock.advance(HOLD)
    assert await matcher.expire_held(clock.now) == 2
    results = await ReceiptMatcher(store, clock, HOLD).on_submitted_many(
        "roshan", [("m1", 1, 1, "701"), ("m2", 1, 1, "999")], "decimal"
    )
    assert [(r.message_id, r.message_state) for r in results] == [("m1", DELIVERED)]
    (key_700,) = receipt_keys("700", "decimal")
    assert len(await store.take_orphans("roshan", key_700)) == 1  # still waiting for its submit


async def test_receipt_ahead_of_its_submit_is_durable_before_it_is_answered(
    matcher: ReceiptMatcher, store: SqliteStore, clock: FakeClock
) -> None:
    # on_receipt returning None is when the deliver_sm is answered: the receipt must
    # already survive a restart, without waiting for the hold to expire.
    assert await matcher.on_receipt("roshan", receipt("777"), "decimal") is None
    fresh = ReceiptMatcher(store, clock, HOLD)  # as after kill -9
    results = await fresh.on_submitted("roshan", "m1", 1, 1, "777", "decimal")
    assert [(r.message_id, r.message_state) for r in results] == [("m1", DELIVERED)]


async def test_receipt_found_in_memory_and_table_is_applied_once(
    matcher: ReceiptMatcher, store: SqliteStore
) -> None:
    assert await matcher.on_receipt("roshan", receipt("777", "ENROUTE"), "decimal") is None
    assert await matcher.on_receipt("roshan", receipt("777"), "decimal") is None
    results = await matcher.on_submitted("roshan", "m1", 1, 1, "777", "decimal")
    assert [r.stat for r in results] == ["ENROUTE", "DELIVRD"]
    assert matcher.held_count == 0
    assert await store.take_orphans("roshan", "309") == []  # nothing left behind


async def test_other_readings_join_the_orphan_only_after_the_hold(
    matcher: ReceiptMatcher, store: SqliteStore, clock: FakeClock
) -> None:
    # "1234": decimal (key 4d2) first; its hex reading (key 1234) only after the hold.
    assert await matcher.on_receipt("roshan", receipt("1234"), "auto") is None
    assert await store.take_orphans("roshan", "1234") == []
    assert await matcher.expire_held(clock.advance(HOLD)) == 1
    results = await ReceiptMatcher(store, clock, HOLD).on_submitted(
        "roshan", "m1", 1, 1, "1234", "hex")
    assert [r.message_id for r in results] == ["m1"]


async def test_all_digit_hex_submit_id_meets_its_decimal_receipt(
    matcher: ReceiptMatcher, store: SqliteStore, clock: FakeClock
) -> None:
    # The SMSC writes hex in submit_sm_resp ("1000000000" is 68719476736), decimal in
    # receipts; "auto" has seen no hex letter yet and reads the submit id as decimal.
    await matcher.on_submitted("roshan", "m1", 1, 1, "1000000000", "auto")
    assert await matcher.on_receipt("roshan", receipt("68719476736"), "auto") is None
    expired, late = await expire_after_hold(matcher, clock)
    assert expired == 0
    assert late == ["m1"]
    assert await store.take_orphans("roshan", "1000000000") == []


async def test_a_hex_letter_teaches_the_submit_form(
    matcher: ReceiptMatcher, store: SqliteStore
) -> None:
    await store.accept([message("m10"), message("m16")])
    await matcher.on_submitted("roshan", "m10", 1, 1, "A", "auto")  # ten, in hex
    await matcher.on_submitted("roshan", "m16", 1, 1, "10", "auto")  # sixteen, not ten
    assert matcher.learned_id_forms("roshan") == {"submit_resp_id": "hex"}
    ten = await matcher.on_receipt("roshan", receipt("10"), "auto")
    sixteen = await matcher.on_receipt("roshan", receipt("16"), "auto")
    assert ten is not None and ten.message_id == "m10"
    assert sixteen is not None and sixteen.message_id == "m16"
    assert matcher.learned_id_forms("other") == {}


async def test_receipt_form_learned_from_unambiguous_matches(
    matcher: ReceiptMatcher, store: SqliteStore, clock: FakeClock
) -> None:
    # Decimal submit ids, hex receipt ids without letters: each receipt matches only
    # under its hex reading, at first after the hold; after three, at once.
    await store.accept([message(f"h{i}") for i in range(4)])
    for i, value in enumerate((0x10, 0x20, 0x30)):
        await matcher.on_submitted("roshan", f"h{i}", 1, 1, str(value), "decimal")
        assert await matcher.on_receipt("roshan", receipt(format(value, "x")), "auto") is None
        await matcher.expire_held(clock.advance(HOLD))
    assert matcher.learned_id_forms("roshan") == {"receipt_id": "hex"}
    await matcher.on_submitted("roshan", "h3", 1, 1, str(0x40), "decimal")
    now = await matcher.on_receipt("roshan", receipt("40"), "auto")
    assert now is not None and now.message_id == "h3"


async def test_receipt_whose_lookup_missed_a_submit_being_recorded_still_matches(
    matcher: ReceiptMatcher, store: SqliteStore
) -> None:
    # A lookup that does not go through the store's queue (PostgreSQL's pool) may run
    # before a submit's write is visible; the matcher has seen that submit itself.
    real_lookup = store.lookup_parts

    async def stale_lookup(operator_id: str, key_sets: object) -> list[None]:
        return [None for _ in key_sets]  # type: ignore[attr-defined]

    await matcher.on_submitted("roshan", "m1", 1, 1, "42", "decimal")
    store.lookup_parts = stale_lookup  # type: ignore[method-assign]
    try:
        result = await matcher.on_receipt("roshan", receipt("42"), "decimal")
    finally:
        store.lookup_parts = real_lookup  # type: ignore[method-assign]
    assert result is not None and result.message_state == DELIVERED


async def test_receipt_for_a_part_the_store_lacks_is_kept_not_dropped(
    matcher: ReceiptMatcher, store: SqliteStore, clock: FakeClock
) -> None:
    # The matcher saw the submit, but its write failed (the store was cut): the
    # receipt is held and stored as an orphan, and matches once the submit is written.
    real_record = store.record_submitted_many

    async def failing(rows: object) -> None:
        raise ConnectionError("store unreachable")

    store.record_submitted_many = failing  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await matcher.on_submitted("roshan", "m1", 1, 1, "42", "decimal")
    store.record_submitted_many = real_record  # type: ignore[method-assign]
    assert await matcher.on_receipt("roshan", receipt("42"), "decimal") is None
    assert matcher.held_count == 1
    retried = await matcher.on_submitted("roshan", "m1", 1, 1, "42", "decimal")
    assert [r.message_state for r in retried] == [DELIVERED]


async def test_receipt_for_a_reused_id_matches_the_submit_answered_not_the_old_part(
    store: SqliteStore, clock: FakeClock
) -> None:
    # An SMSC whose id counter started again (its restart): m1, of an earlier run, was
    # submitted as "205" and delivered. m2's submit_sm_resp says "205" too, and m2's
    # receipt comes while that answer waits to be recorded (the batch that records it
    # is retried behind a cut). The store only knows m1 under "205".
    earlier = ReceiptMatcher(store, clock, HOLD)
    await earlier.on_submitted("op", "m1", 1, 1, "205", "decimal")
    assert (await earlier.on_receipt("op", receipt("205"), "decimal")) is not None
    matcher = ReceiptMatcher(store, clock, HOLD)  # this run
    matcher.expect_submits("op", [("m2", 1, 1, "205")], "decimal")
    assert await matcher.on_receipt("op", receipt("205"), "decimal") is None  # held for m2
    claimed = await matcher.on_submitted("op", "m2", 1, 1, "205", "decimal")
    assert [(r.message_id, r.message_state) for r in claimed] == [("m2", DELIVERED)]
    m1 = await store.get_message("m1")
    assert m1 is not None and m1["state"] == DELIVERED
