"""No secret ever reaches a log line.

The check that matters runs over the whole suite: tests/conftest.py formats every
log record of the run as the daemon's JSON line and fails the session if a known
test secret (conf/*.toml passwords, ``register_secret`` values) appears in one.
These tests show that the scan works and is on, and drive the paths most likely to
leak: a refused bind, a rebind with new credentials, a rejected config reload.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from conftest import LOG_SCAN, SecretScan, conf_secrets, register_secret
from e2e_helpers import operator, write_config

from simulators import AccountConfig, MnoConfig, ReceiptConfig, SimConfig
from simulators.server import SmscSimulator
from smppd.config import load_config
from smppd.runtime.daemon import Daemon

GOOD = register_secret("Gd-7q!x")
WRONG = register_secret("Wr-4z?k")
ROTATED = register_secret("Rt-9w#m")


def test_the_demo_passwords_are_known_secrets() -> None:
    secrets = conf_secrets()
    assert {"rosh-pw", "etis-pw", "mtn-pw", "awcc-pw", "salm-pw"} <= secrets
    assert {"rosh-pw", GOOD} <= LOG_SCAN.secrets


def test_the_scan_is_on_and_catches_a_planted_secret() -> None:
    assert LOG_SCAN in logging.getLogger().handlers
    scan = SecretScan({"planted-pw"})
    record = logging.LogRecord("smppd.x", logging.INFO, __file__, 1, "bind", None, None)
    record.error = "refused for planted-pw"
    scan.handle(record)
    assert [(s, '"error": "refused for planted-pw"' in line) for _, s, line in scan.hits] == [
        ("planted-pw", True)]
    seen = LOG_SCAN.lines
    logging.getLogger("smppd.test").debug("counted", extra={"event": "counted"})
    assert LOG_SCAN.lines == seen + 1  # even DEBUG records are scanned


async def wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + 5.0
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_refused_bind_rebind_and_bad_reload_log_no_secret(tmp_path: Path) -> None:
    sim = SmscSimulator(SimConfig(mnos=[MnoConfig(
        name="alpha", accounts=[AccountConfig("esme", [GOOD, ROTATED])],
        receipts=ReceiptConfig(enabled=False))], admin_port=None))
    await sim.start()
    def write(password: str, tps: int = 10) -> Path:
        return write_config(tmp_path, [operator("alpha", sim, password=password, tps=tps,
                                                reconnect_min=0.02, reconnect_max=0.05)],
                            drain_timeout=0.5)

    path = write(WRONG)
    seen = len(LOG_SCAN.hits), LOG_SCAN.lines
    daemon = Daemon(load_config(path))
    try:
        await daemon.start()
        op = daemon.operators["alpha"]
        await wait_for(lambda: op.binds[0].attempts >= 2, "refused binds")  # logged retries
        write(GOOD)
        assert (await daemon.reloader.reload()).ok
        await wait_for(lambda: op.healthy, "bound with the good password")
        write(ROTATED, tps=-1)  # invalid: rejected, logged with its problems
        assert not (await daemon.reloader.reload()).ok
        write(ROTATED)
        assert (await daemon.reloader.reload()).ok
        await wait_for(lambda: op.healthy and op.password() == ROTATED, "rebound")
    finally:
        await daemon.stop()
        await sim.stop()
    assert LOG_SCAN.lines > seen[1] + 3  # the paths above did log
    assert LOG_SCAN.hits[seen[0]:] == []
