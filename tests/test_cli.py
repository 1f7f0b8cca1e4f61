"""`smppd` from its installed entry point: check-config and the one-command demo."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import operator, write_config

SMPPD = str(Path(sys.executable).parent / "smppd")
REPO = Path(__file__).resolve().parent.parent
DEMO_PORTS = (2775, 2776, 2777, 2778, 2779, 8080, 8780)  # conf/simulator.toml, conf/demo.toml


def smppd(*args: str, cwd: Path | None = None, timeout: float = 60.0,
          ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMPPD_")}
    return subprocess.run([SMPPD, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or REPO, env=env, check=False)


def test_check_config_good_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, [operator("op", ["127.0.0.1:2775"], binds=2)])
    result = smppd("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "OK, 1 operator, 2 binds" in result.stdout


@pytest.mark.parametrize(("keys", "key"), [
    ({"tps": 0}, "operators.op.tps"),
    ({"window": 0}, "operators.op.window"),
    ({"enquire_link_interval": 20.0, "inactivity_timeout": 10.0}, "operators.op."),
])
def test_check_config_bad_file_names_file_and_key(tmp_path: Path, keys: dict[str, Any],
                                                  key: str) -> None:
    path = write_config(tmp_path, [operator("op", ["127.0.0.1:2775"], **keys)])
    result = smppd("check-config", str(path))
    assert result.returncode == 1
    assert f"{path}: {key}" in result.stderr, result.stderr
    assert result.stdout == ""


def test_check_config_bad_host(tmp_path: Path) -> None:
    path = write_config(tmp_path, [operator("op", ["127.0.0.1:99999"])])
    result = smppd("check-config", str(path))
    assert result.returncode == 1
    assert f"{path}: operators.op.hosts" in result.stderr, result.stderr


def test_check_config_missing_file(tmp_path: Path) -> None:
    result = smppd("check-config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "nope.toml" in result.stderr


def test_check_config_shipped_files() -> None:
    result = smppd("check-config", str(REPO / "conf" / "demo.toml"))
    assert result.returncode == 0, result.stderr


def test_run_with_bad_config_exits_non_zero(tmp_path: Path) -> None:
    path = write_config(tmp_path, [operator("op", ["127.0.0.1:2775"], tps=-1)])
    result = smppd("run", "--config", str(path), timeout=30.0)
    assert result.returncode == 2
    assert "operators.op.tps" in result.stderr


def _taken(port: int) -> bool:
    with socket.socket() as sock:
        # as the servers do: connections of an earlier run in TIME_WAIT are no obstacle
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_demo_runs_and_prints_the_table(tmp_path: Path) -> None:
    taken = [port for port in DEMO_PORTS if _taken(port)]
    assert not taken, (f"the demo needs 127.0.0.1 ports {DEMO_PORTS}; taken now: {taken} "
                       "(stop whatever listens there, e.g. another smppd demo or smppd-sim)")
    result = smppd("demo", "--exit", "--messages", "50", "--state-dir", str(tmp_path),
                   cwd=tmp_path, timeout=90.0)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("operator"))
    assert header.split() == ["operator", "sent", "delivered", "failed", "p50", "ms", "p95", "ms"]
    rows = {line.split()[0]: line.split() for line in lines
            if line.split() and line.split()[0] in
            ("Roshan", "Etisalat-AF", "MTN-AF", "AWCC", "Salaam")}
    assert len(rows) == 5
    assert sum(int(row[1]) for row in rows.values()) == 50
    # the simulated MNOs fail a share of messages on purpose (receipt outcomes)
    assert all(int(row[1]) == int(row[2]) + int(row[3]) for row in rows.values()), result.stdout
    assert sum(int(row[2]) for row in rows.values()) > 25
    assert "50 messages, 50 with a final state" in result.stdout
