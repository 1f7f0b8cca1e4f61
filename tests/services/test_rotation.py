"""smppd-rotate end to end: a real OpenBao dev server and the SMSC simulator's admin API."""

from __future__ import annotations

import asyncio
import string
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from vault_fixtures import BaoServer, bao, free_port, setup_approle  # noqa: F401

from simulators import SmscSimulator, parse_config
from smppd.link.connection import BaseHandler, SmppConnection
from smppd.protocol.constants import Status
from smppd.protocol.pdu import BindTransceiver, Pdu
from smppd.protocol.session import Role, Session
from vault.rotate import ALPHABET, new_password, run

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 5.0


@pytest.fixture
async def sim(clock: Any) -> AsyncIterator[SmscSimulator]:
    config = {"admin": {"port": 0}, "mno": [
        {"name": "roshan", "port": 0, "account": [
            {"system_id": "smppd-roshan", "password": "rosh-pw", "max_binds": 10}]},
        {"name": "etisalat-af", "port": 0, "account": [
            {"system_id": "smppd-etisalat", "password": "etis-pw", "max_binds": 10}]},
    ]}
    async with SmscSimulator(parse_config(config), clock=clock) as simulator:
        yield simulator


async def bind_status(sim: SmscSimulator, mno: str, system_id: str, password: str) -> int:
    """Bind with these credentials, report the bind_resp status, unbind."""
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(
        lambda: SmppConnection(Session(Role.ESME), BaseHandler()), "127.0.0.1", sim.port_of(mno))
    resp: Pdu = await asyncio.wait_for(
        conn.request(BindTransceiver(system_id=system_id, password=password),
                     check_status=False), TIMEOUT)
    if resp.command_status == 0:
        await conn.unbind(TIMEOUT)
    else:
        conn.abort()
    return resp.command_status


def put(bao: BaoServer, path: str, **data: str) -> int:  # noqa: F811
    resp = bao.root().secrets.kv.v2.create_or_update_secret(path, secret=data)
    return int(resp["data"]["version"])


def read(bao: BaoServer, path: str, version: int | None = None) -> tuple[dict[str, str], int]:  # noqa: F811
    resp = bao.root().secrets.kv.v2.read_secret_version(path, version=version,
                                                         raise_on_deleted_version=True)
    return resp["data"]["data"], int(resp["data"]["metadata"]["version"])


def token_args(bao: BaoServer, prefix: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:  # noqa: F811
    monkeypatch.setenv("ROTATE_TEST_TOKEN", bao.root_token)
    return ["--vault-addr", bao.addr, "--auth", "token", "--token-env", "ROTATE_TEST_TOKEN",
            "--path-template", prefix + "/{operator_id}"]


def test_new_password() -> None:
    passwords = {new_password() for _ in range(200)}
    assert len(passwords) == 200
    assert all(len(p) == 8 and set(p) <= set(ALPHABET) for p in passwords)
    assert set(ALPHABET) == set(string.ascii_letters + string.digits)
    with pytest.raises(ValueError):
        new_password(9)


async def test_rotation_end_to_end_with_approle(bao: BaoServer, sim: SmscSimulator,  # noqa: F811
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    prefix = f"r{uuid.uuid4().hex[:8]}"
    put(bao, f"{prefix}/roshan", system_id="smppd-roshan", password="rosh-pw",
        system_type="SMPPD")
    role_id, secret_file = setup_approle(bao, f"rotate-{prefix}", prefix, tmp_path)
    args = ["--vault-addr", bao.addr, "--role-id", role_id, "--secret-id-file",
            str(secret_file), "--path-template", prefix + "/{operator_id}",
            "--operator", "roshan", "--smsc-admin", f"http://127.0.0.1:{sim.admin_port}"]

    assert await run(args) == 0
    data, version = read(bao, f"{prefix}/roshan")
    assert version == 2 and data["system_type"] == "SMPPD"  # other fields kept
    first = data["password"]
    assert first != "rosh-pw" and len(first) == 8
    # during the switch the SMSC takes both
    assert await bind_status(sim, "roshan", "smppd-roshan", first) == Status.ESME_ROK
    assert await bind_status(sim, "roshan", "smppd-roshan", "rosh-pw") == Status.ESME_ROK
    out = capsys.readouterr()
    assert "roshan: rotated to version 2" in out.out
    assert first not in out.out + out.err

    # the next rotation retires the oldest: the previous version still binds, version 1 not
    assert await run(args) == 0
    second = read(bao, f"{prefix}/roshan")[0]["password"]
    assert await bind_status(sim, "roshan", "smppd-roshan", second) == Status.ESME_ROK
    assert await bind_status(sim, "roshan", "smppd-roshan", first) == Status.ESME_ROK
    assert await bind_status(sim, "roshan", "smppd-roshan", "rosh-pw") == Status.ESME_RINVPASWD


async def test_no_keep_old_and_mno_names(bao: BaoServer, sim: SmscSimulator,  # noqa: F811
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"r{uuid.uuid4().hex[:8]}"
    put(bao, f"{prefix}/etisalat", system_id="smppd-etisalat", password="etis-pw")
    args = [*token_args(bao, prefix, monkeypatch), "--operator", "etisalat",
            "--smsc-admin", f"http://127.0.0.1:{sim.admin_port}",
            "--smsc-mno", "etisalat=etisalat-af", "--no-keep-old"]
    assert await run(args) == 0
    new = read(bao, f"{prefix}/etisalat")[0]["password"]
    assert await bind_status(sim, "etisalat-af", "smppd-etisalat", new) == Status.ESME_ROK
    assert await bind_status(sim, "etisalat-af", "smppd-etisalat", "etis-pw") \
        == Status.ESME_RINVPASWD


async def test_cas_conflict_fails_and_resyncs_the_smsc(
        bao: BaoServer, sim: SmscSimulator, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    prefix = f"r{uuid.uuid4().hex[:8]}"
    put(bao, f"{prefix}/roshan", system_id="smppd-roshan", password="rosh-pw")
    # another job won the race: version 2 is there, this job started from version 1
    put(bao, f"{prefix}/roshan", system_id="smppd-roshan", password="winner1")
    sim.mno("roshan").set_passwords("smppd-roshan", ["rosh-pw", "winner1"])
    args = [*token_args(bao, prefix, monkeypatch), "--operator", "roshan",
            "--expect-version", "1", "--smsc-admin", f"http://127.0.0.1:{sim.admin_port}"]

    assert await run(args) == 1
    err = capsys.readouterr().err
    assert "roshan: FAILED" in err and "check-and-set conflict" in err
    assert "version 1 is no longer the current one" in err
    assert read(bao, f"{prefix}/roshan")[1] == 2  # nothing written
    # the SMSC accepts what Vault holds (the loser's password was replaced)
    assert sim.mno("roshan").accounts["smppd-roshan"].passwords == ["rosh-pw", "winner1"]
    assert await bind_status(sim, "roshan", "smppd-roshan", "winner1") == Status.ESME_ROK


async def test_all_operators(bao: BaoServer, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    prefix = f"r{uuid.uuid4().hex[:8]}"
    for op_id in ("awcc", "mtn", "salaam"):
        put(bao, f"{prefix}/{op_id}", system_id=f"smppd-{op_id}", password=f"{op_id[:4]}-pw")
    assert await run([*token_args(bao, prefix, monkeypatch), "--all"]) == 0
    for op_id in ("awcc", "mtn", "salaam"):
        data, version = read(bao, f"{prefix}/{op_id}")
        assert version == 2 and data["password"] != f"{op_id[:4]}-pw"
    assert await run([*token_args(bao, f"{prefix}-empty", monkeypatch), "--all"]) == 1


async def test_failures_exit_1(bao: BaoServer, sim: SmscSimulator,  # noqa: F811
                               monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    prefix = f"r{uuid.uuid4().hex[:8]}"
    put(bao, f"{prefix}/roshan", system_id="smppd-roshan", password="rosh-pw")
    put(bao, f"{prefix}/ghostmno", system_id="smppd-ghost", password="ghost-pw")
    base = token_args(bao, prefix, monkeypatch)
    admin = ["--smsc-admin", f"http://127.0.0.1:{sim.admin_port}"]
    # the SMSC refuses (unknown MNO): Vault is left alone
    assert await run([*base, "--operator", "ghostmno", *admin]) == 1
    assert "HTTP 404" in capsys.readouterr().err
    assert read(bao, f"{prefix}/ghostmno")[1] == 1
    # one bad operator fails the run, the good one is still rotated
    assert await run([*base, "--operator", "nosuchop", "--operator", "roshan", *admin]) == 1
    err = capsys.readouterr().err
    assert "nosuchop: FAILED" in err and "not found" in err
    assert read(bao, f"{prefix}/roshan")[1] == 2
    # Vault unreachable
    dead = ["--vault-addr", f"http://127.0.0.1:{free_port()}"]
    assert await run(base + dead + ["--operator", "roshan"]) == 1
    assert "unreachable" in capsys.readouterr().err
    # SMSC admin unreachable
    assert await run([*base, "--operator", "roshan",
                      "--smsc-admin", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "SMSC admin" in capsys.readouterr().err
    assert read(bao, f"{prefix}/roshan")[1] == 2


@pytest.mark.parametrize("argv", [
    [],
    ["--vault-addr", "http://127.0.0.1:1", "--auth", "token"],  # no operator
    ["--vault-addr", "vault:8200", "--auth", "token", "--operator", "x"],
    ["--vault-addr", "http://127.0.0.1:1", "--operator", "x"],  # approle without role id
    ["--vault-addr", "http://127.0.0.1:1", "--auth", "token", "--all",
     "--path-template", "{operator_id}/creds"],
    ["--vault-addr", "http://127.0.0.1:1", "--auth", "token", "--operator", "x",
     "--smsc-mno", "x"],
    ["--vault-addr", "http://127.0.0.1:1", "--auth", "token", "--operator", "x",
     "--operator", "y", "--expect-version", "3"],
])
async def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        await run(argv)
    assert info.value.code == 2


async def test_missing_token_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROTATE_NO_TOKEN", raising=False)
    assert await run(["--vault-addr", "http://127.0.0.1:1", "--auth", "token",
                      "--token-env", "ROTATE_NO_TOKEN", "--operator", "x"]) == 2


def test_console_entry_point_exit_codes() -> None:
    """``python -m vault.rotate`` is what the smppd-rotate script runs (vault.rotate:main)."""
    proc = subprocess.run([sys.executable, "-m", "vault.rotate", "--operator", "x"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert "--vault-addr" in proc.stderr
