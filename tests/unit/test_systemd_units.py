"""The systemd units and the daemon's side of the contract with systemd.

Units: ``systemd-analyze verify`` on every unit in systemd/, and the hardening of
smppd.service scored by ``systemd-analyze security --offline=yes`` (asserted, not
eyeballed). The units name their binaries under /opt/smppd/venv (the install
location in docs/operations.md), which does not exist here; verify checks that
ExecStart= is executable, so each unit is verified as a copy whose /opt/smppd/venv
points at this checkout's virtualenv: every directive is still parsed and every
command still resolved, against a binary that really runs.

Daemon: sd_notify over a real NOTIFY_SOCKET (READY=1 after start, WATCHDOG=1 with
a STATUS line, RELOADING=1/READY=1 around a reload, STOPPING=1), and the loop-lag
watchdog that stops petting when the loop is blocked.

Dashboard: every series docs/grafana-dashboard.json queries is one the daemon exports.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from e2e_helpers import operator, write_config
from prometheus_client import CollectorRegistry

from control.metrics import ControlMetrics
from simulators import AccountConfig, MnoConfig, ReceiptConfig, SimConfig
from simulators.server import SmscSimulator
from smppd.config import DaemonSection, load_config
from smppd.metrics import Metrics
from smppd.runtime.daemon import Daemon
from smppd.runtime.watchdog import LoopWatchdog, RateMeter, status_line, watchdog_period

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
INSTALL_BIN = "/opt/smppd/venv/bin/"
VENV_BIN = str(Path(sys.executable).parent) + "/"
MAX_EXPOSURE = 2.0


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    if not os.access(found, os.X_OK):
        pytest.fail("systemd-analyze is missing: install systemd to check the units")
    return found


def unit_files() -> list[Path]:
    return sorted(p for p in UNITS.iterdir() if p.suffix in (".service", ".timer", ".socket"))


def local_copy(unit: Path, directory: Path) -> Path:
    """The unit with its install-time binary paths pointing at this virtualenv."""
    copy = directory / unit.name
    copy.write_text(unit.read_text().replace(INSTALL_BIN, VENV_BIN))
    for sibling in unit_files():  # a timer needs its service next to it
        if not (directory / sibling.name).exists():
            (directory / sibling.name).write_text(sibling.read_text().replace(INSTALL_BIN,
                                                                              VENV_BIN))
    return copy


# --------------------------------------------------------------------------- units


def test_the_units_exist() -> None:
    names = {p.name for p in unit_files()}
    assert {"smppd.service", "smppd-sim@.service"} <= names


@pytest.mark.parametrize("unit", unit_files(), ids=lambda p: p.name)
def test_unit_verifies(unit: Path, tmp_path: Path) -> None:
    copy = local_copy(unit, tmp_path)
    done = subprocess.run([systemd_analyze(), "verify", str(copy)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=60, check=False)
    # verify exits 0 on unknown keys but warns about them: any line naming our unit fails.
    stem = unit.name.split("@")[0].removesuffix(".service").removesuffix(".timer")
    ours = [line for line in done.stderr.splitlines() if stem in line]
    assert done.returncode == 0, done.stderr
    assert ours == [], "\n".join(ours)


def test_units_name_install_paths_that_the_test_rewrites() -> None:
    for unit in unit_files():
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                command = line.split("=", 1)[1].lstrip("-@:+!")
                assert command.startswith((INSTALL_BIN, "/bin/", "/usr/bin/")), line


def exposure(unit: Path) -> float:
    done = subprocess.run([systemd_analyze(), "security", "--offline=yes", str(unit)],
                          capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", done.stdout)
    assert match, done.stdout + done.stderr
    return float(match.group(1))


def test_daemon_unit_exposure_is_at_most_2() -> None:
    score = exposure(UNITS / "smppd.service")
    assert score <= MAX_EXPOSURE, f"smppd.service exposure {score} > {MAX_EXPOSURE}"


def test_simulator_unit_is_hardened_too() -> None:
    assert exposure(UNITS / "smppd-sim@.service") <= MAX_EXPOSURE


def directives(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_daemon_unit_contract() -> None:
    d = directives(UNITS / "smppd.service")
    assert d["Type"] == ["notify"]
    assert d["NotifyAccess"] == ["main"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["Restart"] == ["on-failure"]
    assert d["DynamicUser"] == ["yes"]
    assert d["StateDirectory"] == ["smppd"]
    assert d["LoadCredential"] == ["vault-secret-id:/etc/smppd/vault-secret-id"]
    assert d["CapabilityBoundingSet"] == [""]
    assert "StartLimitBurst" in d and "StartLimitIntervalSec" in d
    # The stop timeout outlasts the longest stop: the windows (bind.stop waits drain +
    # 5 s), then held receipts (Dispatcher.settle, drain), then NATS (2 s).
    example = tomllib.loads((ROOT / "conf" / "smppd.example.toml").read_text())
    drain = max(DaemonSection().drain_timeout, example["daemon"]["drain_timeout"])
    assert float(d["TimeoutStopSec"][0]) > 2 * drain + 5.0 + 2.0
    assert float(d["WatchdogSec"][0]) >= 10


# --------------------------------------------------------------------------- watchdog


def test_watchdog_period_is_a_third_of_watchdog_usec() -> None:
    assert watchdog_period({"WATCHDOG_USEC": "30000000"}) == pytest.approx(10.0)
    assert watchdog_period({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=1) == 10.0
    assert watchdog_period({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_period({}) is None
    assert watchdog_period({"WATCHDOG_USEC": "0"}) is None


class LaggyLoop:
    """A fake clock and sleep: each sleep takes its period plus the next scripted lag."""

    def __init__(self, lags: list[float]) -> None:
        self.now = 0.0
        self.lags = lags

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if not self.lags:
            raise asyncio.CancelledError
        self.now += seconds + self.lags.pop(0)


async def test_watchdog_pets_only_while_the_loop_keeps_time() -> None:
    loop = LaggyLoop([0.0, 0.01, 6.0, 0.0, 30.0])
    pets: list[float] = []
    lags: list[float] = []
    dog = LoopWatchdog(10.0, lambda: pets.append(loop.now), on_lag=lags.append,
                       clock=loop.clock, sleep=loop.sleep)
    with pytest.raises(asyncio.CancelledError):
        await dog.run()
    # 10, 20.01 on time; 36.01 late by 6 s (>= max_lag 5 s): held back; 46.01 on time;
    # 86.01 late by 30 s: held back.
    assert pets == pytest.approx([10.0, 20.01, 46.01])
    assert lags == pytest.approx([6.0, 30.0])
    assert (dog.pets, dog.misses) == (3, 2)


def test_status_line_and_rate() -> None:
    meter = RateMeter()
    assert meter.update(100.0, 0) == 0.0
    assert meter.update(101.0, 1240) == pytest.approx(1240.0)
    assert meter.update(103.0, 1240) == 0.0
    assert status_line(5, 5, 1240.4) == "5/5 operators bound, 1,240 msg/s"


# --------------------------------------------------------------------------- sd_notify


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)

    async def until(self, needle: str) -> list[str]:
        """Every datagram up to and including the first containing ``needle``."""
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        async with asyncio.timeout(5.0):
            while True:
                seen.append((await loop.sock_recv(self.sock, 4096)).decode())
                if needle in seen[-1]:
                    return seen


async def test_daemon_speaks_sd_notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       request: pytest.FixtureRequest) -> None:
    notify = NotifySocket(tmp_path / "notify")
    request.addfinalizer(notify.sock.close)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "150000")  # a 50 ms watchdog period
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    account = AccountConfig("esme", ["secret"])
    sim = SmscSimulator(SimConfig(mnos=[MnoConfig(name="alpha", accounts=[account],
                                                  receipts=ReceiptConfig(enabled=False))],
                                  admin_port=None))
    await sim.start()
    path = write_config(tmp_path, [operator("alpha", sim)])
    daemon = Daemon(load_config(path))
    try:
        await daemon.start()
        ready = await notify.until("READY=1")
        assert "STATUS=" in ready[-1] and "operators bound" in ready[-1]
        # READY=1 came after the store opened and every bind was started.
        assert await daemon.store.get_message("no-such-id") is None
        assert all(b.state != "idle" for op in daemon.operators.values() for b in op.binds)
        pet = await notify.until("WATCHDOG=1")
        assert re.search(r"STATUS=\d+/1 operators bound, [\d,]+ msg/s", pet[-1])
        await daemon.reloader.reload()
        around = await notify.until("READY=1")
        assert any("RELOADING=1" in m for m in around)
    finally:
        await daemon.stop()
        await sim.stop()
        if daemon.parts.notifier._notifier is not None:
            daemon.parts.notifier._notifier.socket.close()  # sdnotify never closes its socket
    assert any("STOPPING=1" in m for m in await notify.until("STOPPING=1"))


# --------------------------------------------------------------------------- dashboard


def exported_series() -> set[str]:
    registry = CollectorRegistry()
    Metrics(registry)
    ControlMetrics(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",)}
    return {family.name + suffix for family in registry.collect()
            for suffix in suffixes.get(family.type, ("",))}


def test_dashboard_queries_only_exported_series() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queried = {name for expr in exprs for name in re.findall(r"\bsmppd_[a-z_]+", expr)}
    assert queried - exported_series() == set()
    for needed in ("smppd_bind_up", "smppd_tps_limit", "smppd_window_in_use",
                   "smppd_submit_latency_seconds_bucket", "smppd_receipt_delay_seconds_bucket",
                   "smppd_receipts_unmatched_total", "smppd_throttled_total",
                   "smppd_lease_checks_total", "smppd_lease_cache_hit_ratio"):
        assert needed in queried
    assert any("histogram_quantile(0.95" in e for e in exprs)
