"""smppctl against the live control app: tables, --json, and its exit codes."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator

import pytest
from conftest import options_without_help
from control_helpers import FakeView, authenticator, serve_in_thread

from smppd.smppctl import API_ERROR, AUTH, OK, UNREACHABLE, USAGE, main


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


def test_rules_create_list_show_delete(live: tuple[str, FakeView]) -> None:
    url, _ = live
    code, out, err = ctl(url, "rules", "create", "--name", "otp via mtn", "--prefix", "9377",
                         "--operator", "mtn:70:0", "--operator", "awcc:30:1", "--priority", "5",
                         "--type", "otp", "--from", "2026-12-03T10:00:00Z",
                         token="admin-token")
    assert code == OK, err
    header, _, row = out.splitlines()[:3]
    assert header.split()[:3] == ["ID", "NAME", "PRIORITY"]
    rule_id = row.split()[0]
    assert "2026-12-03T10:00:00Z" in row and "mtn:70:0, awcc:30:1" in row
    code, out, _ = ctl(url, "--json", "rules", "show", rule_id, token="admin-token")
    rule = json.loads(out)
    assert code == OK and rule["name"] == "otp via mtn" and rule["active_from"] == 1796292000
    assert [o["operator_id"] for o in rule["operators"]] == ["mtn", "awcc"]
    code, out, _ = ctl(url, "rules", "list", token="admin-token")
    assert code == OK and any(line.split()[0] == rule_id for line in out.splitlines()[2:])
    code, out, _ = ctl(url, "rules", "delete", rule_id, token="admin-token")
    assert (code, out.strip()) == (OK, f"deleted rule {rule_id} (otp via mtn)")
    code, _, err = ctl(url, "rules", "show", rule_id, token="admin-token")
    assert code == API_ERROR and "HTTP 404" in err


def test_rule_bad_input_names_the_field(live: tuple[str, FakeView]) -> None:
    url, _ = live
    code, _, err = ctl(url, "rules", "create", "--name", "x", "--operator", "ghost",
                       token="admin-token")
    assert code == API_ERROR and "HTTP 409" in err and "operator_id: unknown operator" in err
    code, _, err = ctl(url, "rules", "create", "--name", "x", "--operator", "mtn:lots",
                       token="admin-token")
    assert code == USAGE and "argument --operator: 'mtn:lots' is not OPERATOR" in err
    code, _, err = ctl(url, "rules", "create", "--name", "x", "--operator", "mtn",
                       "--from", "tomorrow", token="admin-token")
    assert code == USAGE and "argument --from: 'tomorrow' is not a time" in err
    code, _, err = ctl(url, "rules", "create", "--name", "x", "--operator", "mtn",
                       "--prefix", "93a", token="admin-token")
    assert code == API_ERROR and "prefix:" in err
    code, _, err = ctl(url, "rules", "list", token="operate-token")
    assert code == AUTH and "needs one of the roles: admin" in err


def test_prefixes_create_list_delete(live: tuple[str, FakeView]) -> None:
    url, _ = live
    code, out, err = ctl(url, "prefixes", "create", "93799", "salaam", "--country-code", "93",
                         "--description", "test range", token="admin-token")
    assert code == OK, err
    assert out.splitlines()[2].split()[:3] == ["93799", "salaam", "93"]
    code, out, _ = ctl(url, "--json", "prefixes", "list", "--starts-with", "93799",
                       token="admin-token")
    assert [p["prefix"] for p in json.loads(out)["prefixes"]] == ["93799"]
    code, out, _ = ctl(url, "prefixes", "delete", "93799", token="admin-token")
    assert (code, out.strip()) == (OK, "deleted 93799")
    code, _, err = ctl(url, "prefixes", "delete", "93799", token="admin-token")
    assert code == API_ERROR and "HTTP 404" in err


def test_leases_create_list_show_delete(live: tuple[str, FakeView]) -> None:
    url, _ = live
    code, out, err = ctl(url, "leases", "create", "NEWCO", "--tenant", "t9", "--state",
                         "quarantined", "--quarantine-until", "2027-01-01T00:00:00+00:00",
                         token="admin-token")
    assert code == OK, err
    assert out.splitlines()[2].split() == ["NEWCO", "t9", "ALPHANUMERIC", "QUARANTINED",
                                           "2027-01-01T00:00:00Z"]
    code, out, _ = ctl(url, "leases", "list", "--tenant", "t9", token="admin-token")
    assert code == OK and [line.split()[0] for line in out.splitlines()[2:]] == ["NEWCO"]
    code, out, _ = ctl(url, "--json", "leases", "show", "NEWCO", token="admin-token")
    assert json.loads(out)["state"] == "QUARANTINED"
    code, out, _ = ctl(url, "leases", "delete", "NEWCO", token="admin-token")
    assert (code, out.strip()) == (OK, "deleted NEWCO")
    code, _, err = ctl(url, "leases", "create", "NEWCO", "--tenant", "t9", "--kind", "PIGEON",
                       token="admin-token")
    assert code == USAGE and "argument --kind: invalid choice: 'PIGEON'" in err


def test_message_for_a_person(live: tuple[str, FakeView]) -> None:
    url, view = live
    view.messages["m-2"] = {
        "message_id": "m-2", "state": "DELIVERED", "tenant_id": "demo", "operator_id": "mtn",
        "created_at": 1796288400.25, "updated_at": 1796288402.0,
        "parts": [{"part": 1, "total": 2, "state": "DELIVERED", "smsc_id": "A1",
                   "command_status": 0, "stat": "DELIVRD", "err": "000",
                   "submitted_at": 1796288400.5, "done_at": 1796288401.0},
                  {"part": 2, "total": 2, "state": "DELIVERED", "smsc_id": "A2",
                   "command_status": 0, "stat": "DELIVRD", "err": "000",
                   "submitted_at": 1796288400.5, "done_at": 1796288402.0}]}
    code, out, _ = ctl(url, "message", "m-2", token="admin-token")
    assert code == OK
    lines = out.splitlines()
    assert "state           DELIVERED" in lines
    assert "created         2026-12-03T09:00:00.250Z" in lines
    parts = [line.split() for line in lines if line.startswith(("1/2", "2/2"))]
    assert parts == [["1/2", "DELIVERED", "A1", "0", "DELIVRD", "000", "2026-12-03T09:00:00.500Z",
                      "2026-12-03T09:00:01Z"],
                     ["2/2", "DELIVERED", "A2", "0", "DELIVRD", "000", "2026-12-03T09:00:00.500Z",
                      "2026-12-03T09:00:02Z"]]


def test_global_options_after_the_command_and_version(live: tuple[str, FakeView]) -> None:
    url, _ = live
    out, err = io.StringIO(), io.StringIO()
    assert main(["operators", "--url", url, "--json", "--token", "read-token"], out, err) == OK
    assert len(json.loads(out.getvalue())["operators"]) == 5
    out = io.StringIO()
    assert main(["--url", "http://127.0.0.1:1", "leases", "list", "--url", url,
                 "--token", "admin-token"], out, err) == OK  # the later --url wins
    assert out.getvalue().startswith("SENDER")
    assert main(["--timeout", "soon", "operators"], out, err) == USAGE
    assert "argument --timeout: 'soon' is not a number of seconds" in err.getvalue()
    out = io.StringIO()
    assert main(["--version"], out, err) == OK
    assert out.getvalue().startswith("smppctl ")


def test_every_option_has_help() -> None:
    from smppd.smppctl import parser

    assert options_without_help(parser(), "smppctl") == []
