"""No HTTP 500 where a 4xx or a 503 belongs (issue 13, item 11): duplicate message ids,
deep JSON, huge cursors, config values that do not fit, a store that is away, and the
catch-all for what is left."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from api_fixtures import GOOD, Api, fields_of, serving
from control_helpers import make_view, serving_app
from cut_proxy import cut_link, dsn_via

from correlation.pg_store import PgStore


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serving(tmp_path) as served:
        yield served


async def _stored(api: Api, message_id: str) -> Any:
    return (await api.daemon.store.find_messages([message_id])).get(message_id)


# --------------------------------------------------------------------------- message ids


async def test_a_message_id_again_is_the_original_or_409(api: Api) -> None:
    body = dict(GOOD, message_id="m-1")
    first = await api.call("POST", "/v1/messages", json=body)
    again = await api.call("POST", "/v1/messages", json=body)
    assert first[0] == again[0] == 202
    assert again[1] == {**first[1], "duplicate": True}
    status, problem, _ = await api.call("POST", "/v1/messages", json=dict(body, text="other"))
    assert status == 409 and fields_of(problem) == {"message_id"}
    status, problem, _ = await api.call("POST", "/v1/messages", json=dict(body, tenant_id="t2"))
    assert status == 409 and fields_of(problem) == {"message_id"}, "another tenant's id"
    assert (await _stored(api, "m-1")).body == b"hello"
    await api.final("m-1")
    assert api.sent() == 1


async def test_a_message_id_twice_in_one_bulk(api: Api) -> None:
    same = [dict(GOOD, message_id="b-1"), dict(GOOD, message_id="b-1")]
    status, body, _ = await api.call("POST", "/v1/messages/bulk", json={"messages": same})
    assert status == 202
    assert [(a["message_id"], a["duplicate"]) for a in body["accepted"]] == [
        ("b-1", False), ("b-1", True)]
    other = [dict(GOOD, message_id="b-2"), dict(GOOD, message_id="b-2", text="other")]
    status, problem, _ = await api.call("POST", "/v1/messages/bulk", json={"messages": other})
    assert status == 409 and fields_of(problem) == {"messages[1].message_id"}
    assert await _stored(api, "b-2") is None  # nothing of the refused bulk is stored
    await api.final("b-1")
    assert api.sent() == 1


@pytest.mark.parametrize("same_body", [True, False])
async def test_20_concurrent_posts_of_one_id(api: Api, same_body: bool) -> None:
    bodies = [dict(GOOD, message_id="c-1", text="hello" if same_body else f"text {n}")
              for n in range(20)]
    answers = await asyncio.gather(*(api.call("POST", "/v1/messages", json=body)
                                     for body in bodies))
    statuses = sorted(status for status, _, _ in answers)
    if same_body:
        assert statuses == [202] * 20
        assert sum(not body["duplicate"] for _, body, _ in answers) == 1
    else:
        assert statuses == [202] + [409] * 19
        assert all(fields_of(body) == {"message_id"} for status, body, _ in answers
                   if status == 409)
    await api.final("c-1")
    assert api.sent() == 1


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/bulk", "/v1/admin/prefixes"])
async def test_deeply_nested_json_is_400(api: Api, path: str) -> None:
    for depth in (100_000, 500, 33):
        status, problem, _ = await api.call(
            "POST", path, data=b"[" * depth + b"]" * depth,
            headers={"Content-Type": "application/json"})
        assert status == 400 and fields_of(problem) == {"body"}, (depth, problem)
        assert "nested deeper" in problem["errors"][0]["message"]


@pytest.mark.parametrize("query", ["after=12345678901234567890123", "after=-1",
                                   "after=%C2%B2", "limit=99999999999999999999", "limit=0"])
async def test_event_cursor_out_of_range_is_400(api: Api, query: str) -> None:
    status, problem, _ = await api.call("GET", f"/v1/events?{query}")
    assert status == 400 and fields_of(problem) == {query.split("=")[0]}, problem


@pytest.mark.parametrize("path", ["/v1/admin/rules/%C2%B2", "/v1/admin/prefixes?limit=%C2%B2"])
async def test_unicode_digits_are_not_integers(api: Api, path: str) -> None:
    status, problem, _ = await api.call("GET", path)
    assert status in (400, 404) and problem["status"] == status


async def test_an_operator_patch_that_does_not_fit_changes_nothing(api: Api) -> None:
    before = (await api.call("GET", "/v1/operators/op"))[1]
    for patch in ({"tps": 5e-324}, {"tps": 5e-324, "window": 3}, {"window": 3, "tps": 0}):
        status, problem, _ = await api.call("PATCH", "/v1/operators/op", json=patch)
        assert status == 422 and "tps" in fields_of(problem), problem
    after = (await api.call("GET", "/v1/operators/op"))[1]
    assert (after["tps_limit"], after["window"]) == (before["tps_limit"], before["window"])
    status, body, _ = await api.call("PATCH", "/v1/operators/op", json={"tps": 0.001})
    assert status == 200 and body["tps_limit"] == 0.001


# --------------------------------------------------------------------------- 503 and 500


async def test_the_store_away_is_503_with_retry_after(tmp_path: Path, pg_dsn: str) -> None:
    async with cut_link(pg_dsn, 5432) as proxy:
        store = PgStore(dsn_via(pg_dsn, proxy.port), migrate_on_open=False)
        async with serving(tmp_path, store=store) as api:
            status, _, _ = await api.call("POST", "/v1/messages", json=GOOD)
            assert status == 202
            await proxy.cut()
            for path, body in (("/v1/messages", GOOD), ("/v1/messages/bulk",
                                                        {"messages": [GOOD]})):
                async with api.http.post(path, json=body) as resp:
                    assert resp.status == 503, await resp.text()
                    assert resp.content_type == "application/problem+json"
                    assert int(resp.headers["Retry-After"]) > 0
            status, _, _ = await api.call("GET", "/v1/events")
            assert status == 503
            await proxy.restore()
            status, _, _ = await api.call("POST", "/v1/messages", json=GOOD)
            assert status == 202


async def test_an_unexpected_error_is_a_500_problem_that_tells_nothing() -> None:
    view = await make_view()

    async def broken(message_id: str) -> Any:
        raise ValueError("internal detail /var/lib/smppd/smppd.sqlite")

    view.message = broken  # type: ignore[method-assign]
    async with serving_app(view) as url, aiohttp.ClientSession() as http, \
            http.get(f"{url}/v1/messages/x") as resp:
        assert resp.status == 500
        assert resp.content_type == "application/problem+json"
        text = await resp.text()
        assert "internal detail" not in text and "ValueError" not in text
        assert (await resp.json())["status"] == 500
