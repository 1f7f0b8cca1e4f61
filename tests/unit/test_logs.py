"""Structured logs: JSON lines with an event name, operator and bind as fields,
MSISDNs masked, and a log level that changes at runtime through the API."""

from __future__ import annotations

import ast
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from smppd.config import Config
from smppd.runtime.daemon import Daemon
from smppd.runtime.logs import mask_msisdns, setup_logging

ROOT = Path(__file__).resolve().parents[2]
LEVELS = ("debug", "info", "warning", "error", "exception", "critical")


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """setup_logging on a buffer; the root logger's handlers and level restored after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    setup_logging("INFO", stream=buffer)
    yield buffer
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_one_json_object_per_line_with_event_operator_and_bind(stream: io.StringIO) -> None:
    log = logging.getLogger("smppd.bind")
    log.info("bound", extra={"event": "bound", "operator": "roshan", "bind": "roshan#0"})
    log.warning("session closed\nwith a newline", extra={"event": "session_closed",
                                                         "operator": "roshan"})
    first, second = lines(stream)
    assert {k: first[k] for k in ("level", "logger", "message", "event", "operator", "bind")} == {
        "level": "INFO", "logger": "smppd.bind", "message": "bound", "event": "bound",
        "operator": "roshan", "bind": "roshan#0"}
    assert "time" in first
    assert second["event"] == "session_closed"  # the newline stayed inside one line


def test_msisdns_are_masked_in_the_message_and_fields(stream: io.StringIO) -> None:
    logging.getLogger("smppd.dispatch").info(
        "message to +93701234567 accepted",
        extra={"event": "accepted", "destination": "+93701234567", "source": "93799887766",
               "message_id": "0f1e2d3c"})
    (line,) = lines(stream)
    text = json.dumps(line)
    assert "93701234567" not in text and "93799887766" not in text
    assert line["destination"] == mask_msisdns("+93701234567")
    assert line["destination"].count("*") >= 6
    assert line["message_id"] == "0f1e2d3c"  # message ids are allowed


def test_every_daemon_log_call_names_an_event() -> None:
    missing = []
    for package in ("smppd", "control"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in LEVELS and isinstance(node.func.value, ast.Name)
                        and node.func.value.id == "log"):
                    continue
                extra = next((k.value for k in node.keywords if k.arg == "extra"), None)
                if not (isinstance(extra, ast.Dict) and any(
                        isinstance(k, ast.Constant) and k.value == "event" for k in extra.keys)):
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert missing == []


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    config = Config.model_validate({
        "daemon": {"state_dir": str(tmp_path)}, "api": {"listen": "127.0.0.1:0"},
        "operators": [{"id": "alpha", "hosts": ["127.0.0.1:1"], "system_id": "esme",
                       "password": "pw", "reconnect_min": 5.0, "reconnect_max": 5.0}]})
    running = Daemon(config)
    await running.start()
    yield running
    await running.stop()


async def put_level(daemon: Daemon, body: Any) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{daemon.api_port}/v1/admin/log-level"
    async with aiohttp.ClientSession() as http, http.put(url, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_log_level_changes_at_runtime(daemon: Daemon, stream: io.StringIO) -> None:
    log = logging.getLogger("smppd.test")
    log.debug("hidden", extra={"event": "hidden"})

    assert await put_level(daemon, {"level": "debug"}) == (200, {"level": "DEBUG"})
    log.debug("shown", extra={"event": "shown"})
    assert await put_level(daemon, {"level": "WARNING"}) == (200, {"level": "WARNING"})
    log.info("hidden again", extra={"event": "hidden"})

    events = [line["event"] for line in lines(stream)
              if line["logger"] in ("smppd.test", "smppd.daemon")]
    assert events == ["log_level", "shown", "log_level"]  # each change is itself logged
    assert logging.getLogger().level == logging.WARNING


async def test_bad_log_level_is_refused(daemon: Daemon) -> None:
    status, body = await put_level(daemon, {"level": "LOUD"})
    assert status == 422 and body["errors"][0]["field"] == "level"
    status, body = await put_level(daemon, ["DEBUG"])
    assert status == 422


RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def test_json_lines_carry_rfc3339_utc_times(stream: io.StringIO) -> None:
    import re

    logging.getLogger("smppd.bind").info("bound", extra={"event": "bound"})
    (line,) = lines(stream)
    assert re.fullmatch(RFC3339, line["time"]), line["time"]


def test_text_format_has_the_time_and_the_context_fields() -> None:
    import re

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    setup_logging("INFO", json_lines=False, stream=buffer)
    try:
        logging.getLogger("smppd.bind").warning(
            "session closed", extra={"event": "session_closed", "operator": "roshan",
                                     "bind": "roshan#0", "error": "peer said: bye now",
                                     "destination": "+93701234567"})
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    (line,) = buffer.getvalue().splitlines()
    stamp, rest = line.split(" ", 1)
    assert re.fullmatch(RFC3339, stamp), stamp
    assert rest == ('WARNING smppd.bind session closed event=session_closed operator=roshan '
                    'bind=roshan#0 error="peer said: bye now" destination=937*******67')


@pytest.mark.parametrize("enabled", [True, False])
async def test_access_log_when_asked_for(tmp_path: Path, stream: io.StringIO,
                                         enabled: bool) -> None:
    import hashlib

    config = Config.model_validate({
        "daemon": {"state_dir": str(tmp_path)},
        "api": {"listen": "127.0.0.1:0", "access_log": enabled},
        "auth": {"tokens": [{"name": "ops-dashboard", "roles": ["read"],
                             "sha256": hashlib.sha256(b"sekrit-token").hexdigest()}]},
        "operators": [{"id": "alpha", "hosts": ["127.0.0.1:1"], "system_id": "esme",
                       "password": "pw", "reconnect_min": 5.0, "reconnect_max": 5.0}]})
    running = Daemon(config)
    await running.start()
    try:
        url = f"http://127.0.0.1:{running.api_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/v1/operators/alpha?secret=93701234567",
                                headers={"Authorization": "Bearer sekrit-token"}) as resp:
                assert resp.status == 200
            async with http.get(url + "/v1/admin/leases/93701234567") as resp:
                assert resp.status == 401
    finally:
        await running.stop()
    access = [line for line in lines(stream) if line.get("event") == "http_access"]
    if not enabled:
        assert access == []
        return
    first, second = access
    assert first["message"] == "GET /v1/operators/alpha 200"  # no query string
    assert {k: first[k] for k in ("method", "route", "status", "caller")} == {
        "method": "GET", "route": "/v1/operators/{id}", "status": 200,
        "caller": "ops-dashboard"}
    assert first["duration_ms"] >= 0 and first["bytes"] > 0 and first["remote"] == "127.0.0.1"
    assert second["message"] == "GET /v1/admin/leases/937******67 401"  # MSISDN masked
    assert second["caller"] is None
    assert "sekrit-token" not in stream.getvalue()


def test_access_log_must_be_a_boolean(tmp_path: Path) -> None:
    from smppd.config import ConfigError, load_config

    path = tmp_path / "smppd.toml"
    path.write_text('[api]\naccess_log = "loud"\n')
    with pytest.raises(ConfigError, match=r"api\.access_log"):
        load_config(path)
