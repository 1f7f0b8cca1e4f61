"""The API parts of issue 13, item 13: a URL over 8 KB is a problem, not aiohttp's
plain-text 400; a sender leased to another tenant is refused naming tenant_id, not a
202 rejected WRONG_TENANT (a 403 since issue 17.4: tests/unit/test_lease_refusal.py); the
state directory and SQLite files are the daemon's user's only (0700 / 0600) outside
systemd too."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from api_fixtures import GOOD, Api, fields_of, serving

from control.data import LeaseIn


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serving(tmp_path, leases={"enforce": True}) as served:
        await served.daemon.parts.control.put_lease(LeaseIn(sender="SMPPD", tenant_id="t1"))
        yield served


@pytest.mark.parametrize("length", [8193, 100_000])
@pytest.mark.parametrize("path", ["/v1/messages/", "/v1/events?after="])
async def test_a_url_over_8_kb_is_a_414_problem(api: Api, path: str, length: int) -> None:
    async with api.http.get(path + "1" * length) as resp:
        assert resp.status == 414
        assert resp.content_type == "application/problem+json"
        problem = await resp.json()
    assert problem["status"] == 414 and fields_of(problem) == {"url"}
    status, _, _ = await api.call("GET", "/v1/messages/" + "m" * 64)
    assert status == 404  # a long id, well under the limit: the usual answer


async def test_a_sender_leased_to_another_tenant_is_403_naming_tenant_id(api: Api) -> None:
    status, problem, _ = await api.call("POST", "/v1/messages", json=dict(GOOD, tenant_id="t2"))
    assert status == 403 and fields_of(problem) == {"tenant_id"}, problem
    assert problem["reason_code"] == "WRONG_TENANT"
    bulk = {"messages": [GOOD, dict(GOOD, tenant_id="t2")]}
    status, problem, _ = await api.call("POST", "/v1/messages/bulk", json=bulk)
    assert status == 403 and fields_of(problem) == {"messages[1].tenant_id"}
    assert await api.daemon.store.pending_messages() == []
    assert api.sent() == 0
    status, body, _ = await api.call("POST", "/v1/messages", json=GOOD)
    assert status == 202 and "rejected" not in body
    # An unregistered sender is refused the same way, with its reason code.
    status, problem, _ = await api.call("POST", "/v1/messages", json=dict(GOOD, source="OTHER"))
    assert status == 403 and problem["reason_code"] == "NOT_REGISTERED"
    assert fields_of(problem) == {"source"}


async def test_state_directory_and_sqlite_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        async with serving(tmp_path) as api:
            await api.call("POST", "/v1/messages", json=GOOD)
            state = tmp_path / "state"
            assert stat.S_IMODE(state.stat().st_mode) == 0o700
            files = sorted(p.name for p in state.iterdir() if ".sqlite" in p.name)
            assert {"smppd.sqlite", "smppd.sqlite-wal", "control.sqlite"} <= set(files)
            for name in files:
                assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    finally:
        os.umask(old)
