"""Idempotency-Key (issue 13, item 8): a key belongs to its caller (token and tenants)
for 48 h; the same request again gets the first one's results, another request under
the key a 409 naming the header; nothing is stored or sent twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from api_fixtures import GOOD, bearer, fields_of, serving
from conftest import FakeClock

from correlation.sqlite_store import SqliteStore

KEY = {"Idempotency-Key": "order-42"}


async def test_the_same_key_of_another_tenant_is_another_request(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        a = await api.call("POST", "/v1/messages", json=dict(GOOD, tenant_id="a"), headers=KEY)
        b = await api.call("POST", "/v1/messages", json=dict(GOOD, tenant_id="b", text="B's"),
                           headers=KEY)
        assert a[0] == b[0] == 202
        assert b[1]["duplicate"] is False and b[1]["message_id"] != a[1]["message_id"]
        stored = await api.call("GET", f"/v1/messages/{b[1]['message_id']}")
        assert stored[1]["tenant_id"] == "b"
        await api.final(b[1]["message_id"])
        assert api.sent() == 2


async def test_the_same_key_of_another_token_is_another_request(tmp_path: Path) -> None:
    async with serving(tmp_path, tokens=True) as api:
        body = dict(GOOD, tenant_id="a")
        one = await api.call("POST", "/v1/messages", json=body,
                             headers={**KEY, **bearer("tenant-a")})
        two = await api.call("POST", "/v1/messages", json=body,
                             headers={**KEY, **bearer("a-and-b")})
        assert one[0] == two[0] == 202
        assert two[1]["duplicate"] is False and two[1]["message_id"] != one[1]["message_id"]


async def test_the_same_key_with_another_body_is_409_naming_it(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        first = await api.call("POST", "/v1/messages", json=GOOD, headers=KEY)
        assert first[0] == 202
        status, problem, _ = await api.call("POST", "/v1/messages",
                                            json=dict(GOOD, text="changed"), headers=KEY)
        assert status == 409 and problem["status"] == 409
        assert fields_of(problem) == {"Idempotency-Key"}
        status, problem, _ = await api.call("POST", "/v1/messages/bulk", headers=KEY,
                                            json={"messages": [GOOD, GOOD]})
        assert status == 409 and fields_of(problem) == {"Idempotency-Key"}
        await api.final(first[1]["message_id"])
        assert api.sent() == 1
        assert len(await api.daemon.store.find_messages([first[1]["message_id"]])) == 1


async def test_the_same_request_again_gets_the_first_results(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        messages = [dict(GOOD, destination=f"+9370123456{i}") for i in range(3)]
        bulk = {"messages": messages}
        first = await api.call("POST", "/v1/messages/bulk", json=bulk, headers=KEY)
        again = await api.call("POST", "/v1/messages/bulk", json=bulk, headers=KEY)
        assert first[0] == again[0] == 202
        ids = [r["message_id"] for r in first[1]["accepted"]]
        assert [r["message_id"] for r in again[1]["accepted"]] == ids
        assert [r["duplicate"] for r in again[1]["accepted"]] == [True] * 3
        assert [r["parts"] for r in again[1]["accepted"]] == [1] * 3
        for message_id in ids:
            await api.final(message_id)
        assert api.sent() == 3


async def test_copies_racing_each_other_store_and_send_once(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        answers = await asyncio.gather(*(api.call("POST", "/v1/messages", json=GOOD,
                                                  headers=KEY) for _ in range(10)))
        assert {status for status, _, _ in answers} == {202}
        assert len({body["message_id"] for _, body, _ in answers}) == 1
        assert sum(not body["duplicate"] for _, body, _ in answers) == 1
        await api.final(answers[0][1]["message_id"])
        assert api.sent() == 1


async def test_a_refused_request_leaves_the_key_free(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        await api.call("POST", "/v1/messages", json=dict(GOOD, message_id="taken"))
        status, _, _ = await api.call("POST", "/v1/messages",
                                      json=dict(GOOD, message_id="taken", text="other"),
                                      headers=KEY)
        assert status == 409  # the message id is taken, not the key
        status, body, _ = await api.call("POST", "/v1/messages", json=GOOD, headers=KEY)
        assert status == 202 and body["duplicate"] is False


async def test_a_key_is_remembered_48_hours(tmp_path: Path, clock: FakeClock) -> None:
    (tmp_path / "state").mkdir()
    store = SqliteStore(str(tmp_path / "state" / "smppd.sqlite"), clock=clock)
    async with serving(tmp_path, store=store) as api:
        first: Any = await api.call("POST", "/v1/messages", json=GOOD, headers=KEY)
        clock.advance(47 * 3600)
        status, _, _ = await api.call("POST", "/v1/messages", json=dict(GOOD, text="new"),
                                      headers=KEY)
        assert status == 409
        clock.advance(3600 + 1)
        status, body, _ = await api.call("POST", "/v1/messages", json=dict(GOOD, text="new"),
                                         headers=KEY)
        assert status == 202 and body["message_id"] != first[1]["message_id"]
