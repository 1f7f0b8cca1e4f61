"""Tokens limited to tenants (issue 13, item 9): outside its tenants a token is refused
with a 403 naming tenant_id for submits (single, bulk), message reads, events, lease
and routing checks; operate and admin tokens stay global."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from api_fixtures import GOOD, Api, bearer, fields_of, serving
from e2e_helpers import wait_for

from smppd.config import ConfigError, load_config

A, B = dict(GOOD, tenant_id="a"), dict(GOOD, tenant_id="b", text="for b")


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serving(tmp_path, tokens=True) as served:
        yield served


async def _post(api: Api, body: dict[str, object], token: str) -> str:
    status, accepted, _ = await api.call("POST", "/v1/messages", json=body,
                                         headers=bearer(token))
    assert status == 202, accepted
    message_id: str = accepted["message_id"]
    return message_id


def _forbidden(status: int, problem: dict[str, object], field: str = "tenant_id") -> None:
    assert status == 403 and problem["status"] == 403, problem
    assert fields_of(problem) == {field}  # type: ignore[arg-type]
    assert "may not act for" in str(problem["detail"])


async def test_submit_outside_its_tenants_is_403_and_stores_nothing(api: Api) -> None:
    status, problem, _ = await api.call("POST", "/v1/messages", json=B,
                                        headers=bearer("tenant-a"))
    _forbidden(status, problem)
    status, problem, _ = await api.call("POST", "/v1/messages/bulk", json={"messages": [A, B]},
                                        headers=bearer("tenant-a"))
    _forbidden(status, problem, "messages[1].tenant_id")
    assert await api.daemon.store.pending_messages() == []
    assert api.sent() == 0
    await _post(api, A, "tenant-a")
    await _post(api, B, "a-and-b")
    await _post(api, B, "submitter")  # no tenants listed: every tenant
    status, body, _ = await api.call("POST", "/v1/messages/bulk", json={"messages": [A, B]},
                                     headers=bearer("a-and-b"))
    assert status == 202 and len(body["accepted"]) == 2


async def test_reading_a_message_of_another_tenant_is_403(api: Api) -> None:
    of_b = await _post(api, B, "tenant-b")
    status, problem, _ = await api.call("GET", f"/v1/messages/{of_b}",
                                        headers=bearer("tenant-a"))
    _forbidden(status, problem)
    assert "93701234567" not in str(problem) and "'b'" not in str(problem)  # nothing leaks
    for token in ("tenant-b", "a-and-b", "submitter", "operator", "admin"):
        status, found, _ = await api.call("GET", f"/v1/messages/{of_b}", headers=bearer(token))
        assert status == 200 and found["tenant_id"] == "b", token


async def test_events_are_those_of_its_tenants(api: Api) -> None:
    of_a, of_b = await _post(api, A, "tenant-a"), await _post(api, B, "tenant-b")
    await api.final(of_a, bearer("admin"))
    await api.final(of_b, bearer("admin"))

    async def events(token: str, query: str = "") -> set[str]:
        status, body, _ = await api.call("GET", f"/v1/events?kind=dlr{query}",
                                         headers=bearer(token))
        assert status == 200, body
        return {event["message_id"] for event in body["events"]}

    assert await wait_for(lambda: events("admin")) == {of_a, of_b}
    assert await events("tenant-a") == {of_a}
    assert await events("tenant-b") == {of_b}
    assert await events("a-and-b", "&tenant_id=b") == {of_b}
    assert await events("operator") == {of_a, of_b}
    status, problem, _ = await api.call("GET", "/v1/events?tenant_id=b",
                                        headers=bearer("tenant-a"))
    _forbidden(status, problem)


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/leases/validate", {"sender": "SMPPD", "tenant_id": "b"}),
    ("/v1/routing/select", {"destination": "+93701234567", "tenant_id": "b"}),
])
async def test_lease_and_routing_checks_outside_its_tenants_are_403(
        api: Api, path: str, body: dict[str, str]) -> None:
    status, problem, _ = await api.call("POST", path, json=body, headers=bearer("tenant-a"))
    _forbidden(status, problem)
    for token in ("tenant-b", "submitter"):
        status, answer, _ = await api.call("POST", path, json=body, headers=bearer(token))
        assert status in (200, 503) and answer.get("status") != 403, answer


def test_operate_and_admin_tokens_cannot_be_limited(tmp_path: Path) -> None:
    path = tmp_path / "smppd.toml"
    path.write_text('[[auth.tokens]]\nname = "ops"\nsha256 = "' + "ab" * 32 + '"\n'
                    'roles = ["operate"]\ntenants = ["a"]\n')
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert "tenants" in str(raised.value) and "global" in str(raised.value)
