"""`smppd` from its installed entry point: check-config and the one-command demo."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import options_without_help
from e2e_helpers import operator, write_config

SMPPD = str(Path(sys.executable).parent / "smppd")
REPO = Path(__file__).resolve().parents[2]


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


def test_demo_runs_and_prints_the_table(tmp_path: Path) -> None:
    result = smppd("demo", "--exit", "--messages", "50", "--state-dir", str(tmp_path),
                   "--api-port", "0", "--sim-port", "0", cwd=tmp_path, timeout=90.0)
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


def test_demo_does_not_import_the_simulators() -> None:
    code = ("import sys, smppd.runtime.demo, smppd.runtime.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'simulators'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("args", "message"), [
    (["--api-port", "70000"], "argument --api-port: '70000' is not a port"),
    (["--sim-port", "x"], "argument --sim-port: 'x' is not a port"),
    (["--sim-port", "65534"], "--sim-port 65534: the five MNOs need ports up to 65538"),
    (["--messages", "0"], "argument --messages: '0' is not a count"),
])
def test_demo_bad_options_name_the_option(tmp_path: Path, args: list[str], message: str) -> None:
    result = smppd("demo", "--exit", "--state-dir", str(tmp_path), *args, cwd=tmp_path)
    assert result.returncode in (1, 2)
    assert message in result.stderr, result.stderr
    assert result.stdout == ""


def test_demo_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for option in ("--api-port", "--sim-port"):
            result = smppd("demo", "--exit", option, str(port), "--state-dir", str(tmp_path),
                           cwd=tmp_path)
            assert result.returncode == 1
            assert f"smppd demo: {option} {port}:" in result.stderr, result.stderr
            assert "in use" in result.stderr


@pytest.mark.parametrize("command", ["smppd", "smppd-sim", "smppctl", "smppd-rotate",
                                     "smppd-faultproxy"])
def test_every_command_tells_its_version(command: str) -> None:
    from importlib.metadata import version

    result = subprocess.run([str(Path(sys.executable).parent / command), "--version"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{command} {version('smppd')}"


def test_subcommands_tell_the_version_and_take_global_options_after_them(
        tmp_path: Path) -> None:
    from importlib.metadata import version

    for sub in ("run", "check-config", "migrate", "demo"):
        result = smppd(sub, "--version")
        assert (result.returncode, result.stdout.strip()) == (0, f"smppd {version('smppd')}")
    path = write_config(tmp_path, [operator("op", ["127.0.0.1:2775"], tps=-1)])
    result = smppd("run", "--config", str(path), "--log-format", "text", "--log-level", "debug")
    assert result.returncode == 2
    assert "operators.op.tps" in result.stderr
    result = smppd("run", "--log-level", "LOUD")
    assert result.returncode == 2
    assert "argument --log-level: invalid choice: 'LOUD'" in result.stderr


def test_check_config_run_and_migrate_take_the_config_the_same_way(tmp_path: Path) -> None:
    good = write_config(tmp_path, [operator("op", ["127.0.0.1:2775"], binds=2)])
    for args in (["check-config", str(good)], ["check-config", "--config", str(good)],
                 ["check-config", "-c", str(good)]):
        result = smppd(*args)
        assert result.returncode == 0, result.stderr
        assert "OK, 1 operator, 2 binds" in result.stdout
    missing = str(tmp_path / "absent.toml")
    for sub in ("check-config", "run", "migrate"):
        from_env = smppd_env(sub, SMPPD_CONFIG=missing)
        assert from_env.returncode == 2, (sub, from_env.stderr)
        assert "absent.toml" in from_env.stderr, (sub, from_env.stderr)
    result = smppd_env("check-config", SMPPD_CONFIG=str(good))
    assert result.returncode == 0 and "OK, 1 operator" in result.stdout
    result = smppd_env("check-config", "--config", str(good), SMPPD_CONFIG=missing)
    assert result.returncode == 0, "--config wins over SMPPD_CONFIG"
    result = smppd("check-config", str(good), "--config", missing)
    assert result.returncode == 2
    assert "give the file once" in result.stderr


def smppd_env(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SMPPD_")}
    return subprocess.run([SMPPD, *args], capture_output=True, text=True, timeout=60,
                          cwd=REPO, env={**base, **env}, check=False)


def test_every_option_has_help() -> None:
    from simulators.cli import parser as sim_parser
    from smppd.runtime.cli import parser as smppd_parser

    assert (options_without_help(smppd_parser(), "smppd")
            + options_without_help(sim_parser(), "smppd-sim")) == []


def test_demo_from_a_built_wheel(tmp_path: Path) -> None:
    """A normal install (a wheel, not this source tree): the demo finds its configs,
    migrations and the simulator as installed files."""
    import site
    import sysconfig

    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO),
                            "-w", str(wheels)], capture_output=True, text=True, timeout=300,
                           check=False)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("smppd-*.whl")
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True,
                   timeout=120)
    python = env_dir / "bin" / "python"
    # The dependencies come from this environment's site-packages; smppd itself only
    # from the wheel (a path listed in a .pth does not run that folder's .pth files, so
    # the editable install of this tree stays out).
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig."
                                   "get_paths()['purelib'])"], capture_output=True, text=True,
                                  check=True).stdout.strip())
    deps = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    (purelib / "deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                                "-q", "--no-deps", str(wheel)], capture_output=True, text=True,
                               timeout=300, check=False)
    assert installed.returncode == 0, installed.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([str(python), "-c", "import smppd, control; print(smppd.__file__);"
                            " print(control.__file__)"], capture_output=True, text=True,
                           cwd=work, check=True).stdout.split()
    assert all(Path(p).is_relative_to(env_dir) for p in where), where
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMPPD_")}
    result = subprocess.run([str(env_dir / "bin" / "smppd"), "demo", "--exit", "--messages",
                             "20", "--api-port", "0", "--sim-port", "0", "--state-dir",
                             str(tmp_path / "state")], capture_output=True, text=True,
                            cwd=work, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "20 messages, 20 with a final state" in result.stdout


def test_demo_takes_free_ports_when_the_defaults_are_taken(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from smppd.runtime import demo

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setattr(demo, "API_PORT", port)
        monkeypatch.setattr(demo, "SIM_PORT", port - 2)  # the MNOs' range covers it
        assert demo.choose_ports(None, None) == (0, 0)
        assert demo.choose_ports(0, 0) == (0, 0)


def test_simulator_ports_and_ready_file(tmp_path: Path) -> None:
    import json
    import signal
    import time

    sim = str(Path(sys.executable).parent / "smppd-sim")
    bad = subprocess.run([sim, "--ports-from", "70000"], capture_output=True, text=True,
                         timeout=30, check=False)
    assert bad.returncode == 2 and "argument --ports-from: '70000' is not a port" in bad.stderr
    ready = tmp_path / "ready.json"
    log = tmp_path / "sim.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sim, "--config", str(REPO / "conf" / "simulator.toml"),
                                 "--ports-from", "0", "--admin-port", "0", "--ready-file",
                                 str(ready)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no ready file"
            time.sleep(0.05)
        found = json.loads(ready.read_text())
        assert [m["config_port"] for m in found["mnos"]] == [2775, 2776, 2777, 2778, 2779]
        for mno in found["mnos"]:  # each listens where the file says
            with socket.create_connection(("127.0.0.1", mno["port"]), timeout=5):
                pass
        assert found["admin_port"] not in (None, 8780)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    import re

    first = log.read_text().splitlines()[0]  # RFC 3339 UTC times, as the daemon's
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO simulators MNO roshan "
                    r"listening on 127\.0\.0\.1:\d+$", first), first
