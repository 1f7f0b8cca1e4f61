"""Control API v1 over real HTTP, against a daemon bound to the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from api_fixtures import GOOD, Api, fields_of, serving
from e2e_helpers import free_port, operator, running_daemon, write_config


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serving(tmp_path) as served:
        yield served


async def test_post_message_then_get_it_delivered(api: Api) -> None:
    status, body, _ = await api.call("POST", "/v1/messages", json=GOOD)
    assert status == 202
    message_id = body["message_id"]
    assert body["operator_id"] == "op" and body["parts"] == 1
    found = await api.final(message_id)
    assert found["state"] == "DELIVERED"
    assert found["receipt_stat"] == "DELIVRD"
    assert found["destination"] == "93701234567"
    assert "body" not in found
    (part,) = found["parts"]
    assert part["smsc_id"] and part["state"] == "DELIVERED" and part["stat"] == "DELIVRD"
    assert api.sent() == 1


async def test_idempotency_key_returns_the_same_id_and_sends_once(api: Api) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await api.call("POST", "/v1/messages", json=GOOD, headers=headers)
    second = await api.call("POST", "/v1/messages", json=GOOD, headers=headers)
    assert first[0] == second[0] == 202
    assert first[1]["message_id"] == second[1]["message_id"]
    assert second[1]["duplicate"] is True
    await api.final(first[1]["message_id"])
    assert api.sent() == 1


async def test_bulk(api: Api) -> None:
    messages = [dict(GOOD, destination=f"+9370123456{i}") for i in range(5)]
    status, body, _ = await api.call("POST", "/v1/messages/bulk", json={"messages": messages})
    assert status == 202
    ids = [a["message_id"] for a in body["accepted"]]
    assert len(set(ids)) == 5
    for message_id in ids:
        assert (await api.final(message_id))["state"] == "DELIVERED"
    assert api.sent() == 5


async def test_given_message_id_is_kept(api: Api) -> None:
    status, body, _ = await api.call("POST", "/v1/messages", json=dict(GOOD, message_id="m-1"))
    assert status == 202 and body["message_id"] == "m-1"
    assert (await api.final("m-1"))["state"] == "DELIVERED"


@pytest.mark.parametrize(("body", "field"), [
    ({**GOOD, "destination": 93701234567}, "destination"),
    ({**GOOD, "priority": "high"}, "priority"),
    ({**GOOD, "destination": "0701234567"}, "destination"),
    ({**GOOD, "destination": "+93 70 123"}, "destination"),
    ({**GOOD, "operator_id": "nope"}, "operator_id"),
    ({**GOOD, "source": "ABCDEFGHIJKL"}, "source"),
    ({k: v for k, v in GOOD.items() if k != "tenant_id"}, "tenant_id"),
    ({**GOOD, "surprise": 1}, "surprise"),
    ({**GOOD, "tenant_id": "acme/eu"}, "tenant_id"),
    ({**GOOD, "message_id": "m 1"}, "message_id"),
    ({**GOOD, "callback_url": "ftp://hooks.example/dlr"}, "callback_url"),
    ({**GOOD, "destination": "+4412345678"}, "destination"),  # no operator for the prefix
])
async def test_bad_message_is_a_problem_naming_the_field(api: Api, body: dict[str, Any],
                                                         field: str) -> None:
    status, problem, _ = await api.call("POST", "/v1/messages", json=body)
    assert status == 422
    assert problem["status"] == 422 and problem["title"]
    assert field in fields_of(problem), problem
    await _nothing_stored_or_sent(api)


async def test_bad_json_and_non_object(api: Api) -> None:
    headers = {"Content-Type": "application/json"}
    status, problem, _ = await api.call("POST", "/v1/messages", data=b"{not json",
                                           headers=headers)
    assert status == 400 and fields_of(problem) == {"body"}
    status, problem, _ = await api.call("POST", "/v1/messages", json=[1, 2])
    assert status == 422 and fields_of(problem) == {"body"}
    status, problem, _ = await api.call("POST", "/v1/messages", data=b"x=1",
                                        headers={"Content-Type": "text/plain"})
    assert status == 415
    await _nothing_stored_or_sent(api)


async def test_bulk_with_one_bad_message_accepts_none(api: Api) -> None:
    messages = [GOOD, dict(GOOD, destination="12")]
    status, problem, _ = await api.call("POST", "/v1/messages/bulk", json={"messages": messages})
    assert status == 422
    assert fields_of(problem) == {"messages[1].destination"}
    status, problem, _ = await api.call("POST", "/v1/messages/bulk", json={"messages": []})
    assert status == 422 and fields_of(problem) == {"messages"}
    await _nothing_stored_or_sent(api)


async def _nothing_stored_or_sent(api: Api) -> None:
    assert await api.daemon.store.pending_messages() == []
    assert api.daemon.operators["op"].counters["accepted"] == 0
    assert api.sent() == 0


async def test_unknown_message_is_404_problem(api: Api) -> None:
    status, problem, _ = await api.call("GET", "/v1/messages/no-such-id")
    assert status == 404 and problem["status"] == 404


async def test_health_and_readiness(api: Api) -> None:
    status, body, _ = await api.call("GET", "/healthz")
    assert status == 200 and body == {"status": "ok"}
    status, body, _ = await api.call("GET", "/readyz")
    assert status == 200 and body["ready"] is True and body["binds_up"] == {"op": 1}


async def test_not_ready_without_binds(tmp_path: Path) -> None:
    path = write_config(tmp_path, [operator("op", [f"127.0.0.1:{free_port()}"])])
    async with running_daemon(path) as daemon, aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{daemon.api_port}/readyz") as resp:
        assert resp.status == 503
        assert (await resp.json())["binds_up"] == {"op": 0}


async def test_metrics_count_submits_and_hold_no_msisdn(api: Api) -> None:
    status, body, _ = await api.call("POST", "/v1/messages", json=GOOD)
    await api.final(body["message_id"])
    status, _, text = await api.call("GET", "/metrics")
    assert status == 200
    assert 'smppd_submits_total{operator="op"} 1.0' in text
    assert 'smppd_submit_responses_total{command_status="ESME_ROK",operator="op"} 1.0' in text
    assert 'smppd_messages_accepted_total{operator="op"} 1.0' in text
    assert "smppd_bind_up" in text and "smppd_bind_attempts_total" in text
    assert "smppd_receipts_total" in text
    assert "1234567" not in text and body["message_id"] not in text


async def test_metrics_build_process_python_and_one_state_vocabulary(api: Api) -> None:
    from importlib.metadata import version

    _, body, _ = await api.call("POST", "/v1/messages", json=GOOD)
    await api.final(body["message_id"])
    status, _, text = await api.call("GET", "/metrics")
    assert status == 200
    assert f'smppd_build_info{{version="{version("smppd")}"}} 1.0' in text
    assert "process_resident_memory_bytes" in text and "process_cpu_seconds_total" in text
    assert "python_info{" in text
    # Receipts and final states in the message-state words of the API, not the SMSC's stat.
    assert 'smppd_receipts_total{operator="op",state="DELIVERED"} 1.0' in text
    assert 'smppd_messages_final_total{operator="op",state="DELIVERED"} 1.0' in text
    assert "DELIVRD" not in text


async def test_operators(api: Api) -> None:
    status, body, _ = await api.call("GET", "/v1/operators")
    assert status == 200
    (op,) = body["operators"]
    assert op["id"] == "op" and op["state"] == "bound" and op["binds_up"] == 1
    assert op["tps_limit"] == 500 and op["window"] == 10
    status, one, _ = await api.call("GET", "/v1/operators/op")
    assert status == 200 and one["binds"][0]["host"] == f"127.0.0.1:{api.sim.port_of('op')}"
    status, problem, _ = await api.call("GET", "/v1/operators/nope")
    assert status == 404 and problem["status"] == 404
