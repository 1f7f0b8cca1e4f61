"""smppctl against the live control app: tables, --json, and its exit codes."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator

import pytest
from control_helpers import FakeView, authenticator, serve_in_thread

from control.smppctl import API_ERROR, AUTH, OK, UNREACHABLE, USAGE, main


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[str, FakeView]]:
    with serve_in_thread(authenticator()) as served:
        yield served


def ctl(url: str, *args: str, token: str | None = "operate-token") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["--url", url, *(["--token", token] if token else []), *args]
    return main(argv, out, err), out.getvalue(), err.getvalue()


def test_operators_table_and_json(live: tuple[str, FakeView]) -> None:
    url, _ = live
    code, out, _ = ctl(url, "operators")
    assert code == OK
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "NAME", "STATE"]
    assert set(lines[1]) == {"-", " "}
    assert any(line.startswith("roshan ") for line in lines)
    code, out, _ = ctl(url, "--json", "operators")
    assert code == OK and len(json.loads(out)["operators"]) == 5


def test_pause_resume_set_tps_window(live: tuple[str, FakeView]) -> None:
    url, view = live
    assert ctl(url, "pause", "mtn")[0] == OK and view.ops["mtn"].paused
    code, out, _ = ctl(url, "operator", "mtn")
    assert code == OK and "paused" in out and "mtn-0" in out
    assert ctl(url, "resume", "mtn")[0] == OK and not view.ops["mtn"].paused
    assert ctl(url, "rebind", "mtn")[0] == OK
    assert ctl(url, "set-tps", "mtn", "42.5")[0] == OK and view.ops["mtn"].tps == 42.5
    assert ctl(url, "set-window", "mtn", "7")[0] == OK and view.ops["mtn"].window == 7


def test_route_and_lease(live: tuple[str, FakeView]) -> None:
    url, _ = live
    code, out, _ = ctl(url, "route", "+93741234567", "--tenant", "demo")
    assert code == OK
    assert out.startswith("operator: salaam")
    assert "CANDIDATE" in out
    code, out, _ = ctl(url, "--json", "lease", "SMPPD", "--tenant", "demo")
    assert code == OK and json.loads(out)["reason_code"] == "OK"
    code, out, _ = ctl(url, "lease", "SMPPD", "--tenant", "other")
    assert code == API_ERROR and out.startswith("DENIED: WRONG_TENANT")


def test_message_status(live: tuple[str, FakeView]) -> None:
    url, view = live
    view.messages["m-1"] = {"message_id": "m-1", "state": "DELIVERED"}
    code, out, _ = ctl(url, "message", "m-1", token="admin-token")
    assert code == OK and "DELIVERED" in out
    code, _, err = ctl(url, "message", "nope", token="admin-token")
    assert code == API_ERROR and "HTTP 404" in err


def test_exit_codes(live: tuple[str, FakeView]) -> None:
    url, _ = live
    assert ctl(url, "operators", token=None)[0] == AUTH
    code, _, err = ctl(url, "pause", "mtn", token="read-token")
    assert code == AUTH and "403" in err
    assert "read-token" not in err
    assert ctl(url, "set-tps", "mtn", "-1")[0] == API_ERROR
    assert ctl(url, "pause", "ghost")[0] == API_ERROR
    assert ctl(url, "frobnicate")[0] == USAGE
    assert ctl(url, "route", "+93741234567")[0] == USAGE  # --tenant missing
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    code, _, err = ctl(dead, "operators")
    assert code == UNREACHABLE and "cannot reach" in err


def test_token_from_environment(live: tuple[str, FakeView],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = live
    monkeypatch.setenv("SMPPCTL_TOKEN", "read-token")
    assert ctl(url, "operators", token=None)[0] == OK
