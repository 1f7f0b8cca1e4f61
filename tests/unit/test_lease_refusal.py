"""A sender ValidateLease denies is refused at submit (issue 17.4): a 403 problem with
the reason code, naming each denied message of a bulk, and nothing of the request is
stored or sent; 503 with Retry-After when the lease could not be checked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from api_fixtures import GOOD, Api, fields_of, serving

from control.data import LeaseIn


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serving(tmp_path, leases={"enforce": True}) as served:
        control = served.daemon.parts.control
        await control.put_lease(LeaseIn(sender="SMPPD", tenant_id="t1"))
        await control.put_lease(LeaseIn(sender="PAUSED", tenant_id="t1", state="SUSPENDED"))
        yield served


async def nothing_kept(api: Api) -> None:
    assert await api.daemon.store.pending_messages() == []
    assert api.sent() == 0


@pytest.mark.parametrize(("changes", "field", "code"), [
    ({"source": "NOBODY"}, "source", "NOT_REGISTERED"),
    ({"source": "PAUSED"}, "source", "LEASE_SUSPENDED"),
    ({"tenant_id": "t2"}, "tenant_id", "WRONG_TENANT"),
])
async def test_a_denied_sender_is_403_with_its_reason_code(api: Api, changes: dict[str, str],
                                                           field: str, code: str) -> None:
    body = dict(GOOD, **changes)
    status, problem, _ = await api.call("POST", "/v1/messages", json=body)
    assert status == 403, problem
    assert problem["title"] == "Sender not leased" and problem["reason_code"] == code
    assert fields_of(problem) == {field}
    assert code in problem["errors"][0]["message"]
    assert problem["denied"] == [{"index": 0, "field": field, "source": body["source"],
                                  "tenant_id": body["tenant_id"], "reason_code": code}]
    await nothing_kept(api)


async def test_a_bulk_with_denied_senders_names_each_and_stores_nothing(api: Api) -> None:
    bulk = {"messages": [GOOD, dict(GOOD, source="NOBODY"), GOOD,
                         dict(GOOD, tenant_id="t2")]}
    status, problem, _ = await api.call("POST", "/v1/messages/bulk", json=bulk)
    assert status == 403, problem
    assert fields_of(problem) == {"messages[1].source", "messages[3].tenant_id"}
    assert [(d["index"], d["reason_code"]) for d in problem["denied"]] == [
        (1, "NOT_REGISTERED"), (3, "WRONG_TENANT")]
    assert "reason_code" not in problem  # per message, in denied
    await nothing_kept(api)
    status, body, _ = await api.call("POST", "/v1/messages/bulk",
                                     json={"messages": [GOOD, GOOD]})
    assert status == 202 and len(body["accepted"]) == 2
    assert all("rejected" not in a for a in body["accepted"])


async def test_a_refused_request_leaves_its_idempotency_key_free(api: Api) -> None:
    headers = {"Idempotency-Key": "k-1"}
    bad = dict(GOOD, source="NOBODY")
    status, _, _ = await api.call("POST", "/v1/messages", json=bad, headers=headers)
    assert status == 403
    status, body, _ = await api.call("POST", "/v1/messages", json=GOOD, headers=headers)
    assert status == 202 and body["duplicate"] is False
    # The first answer again for the same request, even if the lease went meanwhile.
    await api.daemon.parts.control.put_lease(LeaseIn(sender="SMPPD", tenant_id="t1",
                                               state="SUSPENDED"))
    status, again, _ = await api.call("POST", "/v1/messages", json=GOOD, headers=headers)
    assert status == 202 and again["message_id"] == body["message_id"] and again["duplicate"]


async def test_a_lease_that_cannot_be_checked_is_503_with_retry_after(api: Api) -> None:
    async def unavailable(sender: str, tenant: str) -> tuple[bool, str]:
        return False, "UNAVAILABLE"  # what ValidateLease answers with no cache and no database

    api.daemon.dispatcher.lease_check = unavailable
    status, problem, text = await api.call("POST", "/v1/messages/bulk",
                                           json={"messages": [GOOD, GOOD]})
    assert status == 503, text
    assert problem["title"] == "Lease check unavailable"
    assert {d["reason_code"] for d in problem["denied"]} == {"UNAVAILABLE"}
    async with api.http.post("/v1/messages", json=GOOD) as resp:
        assert resp.status == 503 and resp.headers["Retry-After"] == "5"
    await nothing_kept(api)


async def test_enforce_false_lets_a_denied_sender_through(tmp_path: Path) -> None:
    async with serving(tmp_path, leases={"enforce": False}) as api:
        status, body, _ = await api.call("POST", "/v1/messages",
                                         json=dict(GOOD, source="NOBODY"))
        assert status == 202 and "rejected" not in body
        assert (await api.final(body["message_id"]))["state"] == "DELIVERED"
