"""Why a bind does not work, where a user looks (issue 13.7 and 13.13): the log
(WARNING once per change of reason, INFO per retry), `/v1/operators`, `/readyz` and
the metrics; and a session lost to bad framing says which framing error it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from pathlib import Path
from typing import Any

import aiohttp
import e2e_helpers as e2e
import pytest

from simulators import Behaviour
from smppd.protocol.constants import Status
from smppd.protocol.pdu import Bind, decode, encode
from smppd.runtime.daemon import Daemon

RECONNECT_MIN = 0.05


async def get(http: aiohttp.ClientSession, daemon: Daemon, route: str) -> tuple[int, Any]:
    async with http.get(f"http://127.0.0.1:{daemon.api_port}{route}") as resp:
        body = await (resp.json() if resp.content_type == "application/json" else resp.text())
        return resp.status, body


def records(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


def retries_for(caplog: pytest.LogCaptureFixture, reason: str) -> int:
    return sum(1 for r in records(caplog, "bind_retry") if getattr(r, "reason", None) == reason)


async def test_refused_credentials_are_warned_once_per_reason_and_shown(
        tmp_path: Path, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="smppd.bind")
    smsc = e2e.mno("op", behaviour=Behaviour(reject_binds=Status.ESME_RINVSYSID))
    async with e2e.running_sim([smsc]) as sim:
        path = e2e.write_config(tmp_path, [e2e.operator("op", sim, password="wrongpw",
                                                        reconnect_min=RECONNECT_MIN,
                                                        reconnect_max=0.1)])
        async with e2e.running_daemon(path) as daemon:
            await e2e.wait_for(lambda: retries_for(caplog, "ESME_RINVSYSID") >= 3,
                               what="three refused binds")
            status, body = await get(http, daemon, "/v1/operators")
            bind = body["operators"][0]["binds"][0]
            assert bind["last_error_reason"] == "ESME_RINVSYSID"
            assert bind["last_error"] == "bind refused: ESME_RINVSYSID"
            first_since = bind["last_error_since"]
            assert isinstance(first_since, float)
            status, ready = await get(http, daemon, "/readyz")
            assert status == 503
            assert ready["bind_errors"]["op"][0]["reason"] == "ESME_RINVSYSID"
            _, metrics = await get(http, daemon, "/metrics")
            assert ('smppd_bind_failing{bind="op#0",operator="op",reason="ESME_RINVSYSID"} 1.0'
                    in metrics)

            sim.mno("op").behaviour.reject_binds = None  # now the password is looked at
            await e2e.wait_for(lambda: retries_for(caplog, "ESME_RINVPASWD") >= 3,
                               what="three binds refused for the password")
            _, body = await get(http, daemon, "/v1/operators")
            bind = body["operators"][0]["binds"][0]
            assert bind["last_error_reason"] == "ESME_RINVPASWD"
            assert bind["last_error_since"] > first_since
            _, metrics = await get(http, daemon, "/metrics")
            assert 'reason="ESME_RINVPASWD"} 1.0' in metrics
            assert 'reason="ESME_RINVSYSID"' not in metrics

            warnings = records(caplog, "bind_failing")
            assert [r.levelno for r in warnings] == [logging.WARNING] * 2
            assert [getattr(r, "reason", None) for r in warnings] == [
                "ESME_RINVSYSID", "ESME_RINVPASWD"]
            retries = records(caplog, "bind_retry")
            assert {r.levelno for r in retries} == {logging.INFO}
            # reconnect_min is a minimum for every delay, the first ones included
            assert min(getattr(r, "delay", 0.0) for r in retries) >= RECONNECT_MIN

            sim.mno("op").accounts["esme"].passwords.append("wrongpw")
            await e2e.wait_bound(daemon)
            _, body = await get(http, daemon, "/v1/operators")
            assert body["operators"][0]["binds"][0]["last_error_reason"] is None
            status, ready = await get(http, daemon, "/readyz")
            assert status == 200 and ready["bind_errors"] == {}
            _, metrics = await get(http, daemon, "/metrics")
            assert "smppd_bind_failing{" not in metrics
    assert e2e.PASSWORD not in caplog.text and "wrongpw" not in caplog.text


async def test_a_session_lost_to_bad_framing_says_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An SMSC that answers each bind and, in the same segment, sends a PDU whose
    command_length cannot be right."""
    caplog.set_level(logging.INFO, logger="smppd.bind")

    writers: list[asyncio.StreamWriter] = []

    async def garbled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        header = await reader.readexactly(16)
        length = struct.unpack(">I", header[:4])[0]
        pdu, _ = decode(header + await reader.readexactly(length - 16))
        assert isinstance(pdu, Bind)
        writer.write(encode(pdu.response(Status.ESME_ROK, system_id="SMSC"))
                     + struct.pack(">IIII", 5, 0x80000004, 0, 1))
        await reader.read()  # until the daemon closes the connection

    server = await asyncio.start_server(garbled, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        path = e2e.write_config(tmp_path, [e2e.operator("op", [f"127.0.0.1:{port}"])])
        async with e2e.running_daemon(path):
            await e2e.wait_for(lambda: len(records(caplog, "bind_retry")) >= 3,
                               what="three bind retries")
    finally:
        server.close()
        for writer in writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await server.wait_closed()
    retry = records(caplog, "bind_retry")[0]
    assert getattr(retry, "reason", None) == "framing_error"
    assert "command_length 5 outside 16.." in getattr(retry, "error", "")
    # Bound, lost, bound, lost...: one WARNING for the reason, not one per session.
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING
                and r.name == "smppd.bind"]
    assert [getattr(r, "event", None) for r in warnings] == ["bind_failing"]
