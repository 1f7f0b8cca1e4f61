"""Live reload against the SMSC simulator: operators added and removed, settings
changed without dropping binds, credentials changed with a rebind, and an invalid
file that changes nothing (SIGHUP and POST /v1/admin/reload).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from simulators import AccountConfig, MnoConfig, ReceiptConfig, SimConfig
from simulators.server import SmscSimulator
from smppd.config import Config, load_config
from smppd.runtime.daemon import Daemon
from smppd.runtime.notify import Notifier
from smppd.runtime.reload import plan

NAMES = ("alpha", "beta", "gamma")


def mno(name: str) -> MnoConfig:
    # Two passwords per account: the tests rotate from the first to the second.
    return MnoConfig(name=name, accounts=[AccountConfig("esme", ["secret", "rotated"])],
                     receipts=ReceiptConfig(delay_ms=(5.0, 5.0)))


@pytest.fixture
async def sim() -> AsyncIterator[SmscSimulator]:
    simulator = SmscSimulator(SimConfig(mnos=[mno(n) for n in NAMES], admin_port=None))
    await simulator.start()
    yield simulator
    await simulator.stop()


def operator(sim: SmscSimulator, name: str, prefix: str, **keys: Any) -> str:
    table = {"id": name, "hosts": [f"127.0.0.1:{sim.port_of(name)}"], "system_id": "esme",
             "password": "secret", "prefixes": [prefix], "tps": 100, "window": 10,
             "reconnect_min": 0.05, "reconnect_max": 0.2, **keys}
    return "[[operators]]\n" + "\n".join(f"{k} = {toml(v)}" for k, v in table.items())


def toml(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {toml(v)}' for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return f'"{value}"' if isinstance(value, str) else repr(value)


def write(path: Path, state: Path, *operators: str, extra: str = "") -> Path:
    path.write_text(f'[daemon]\nstate_dir = "{state}"\ndrain_timeout = 0.5\n'
                    f'[api]\nlisten = "127.0.0.1:0"\n{extra}\n' + "\n".join(operators) + "\n")
    return path


class RecordingNotifier(Notifier):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def _send(self, message: str) -> None:
        self.sent.append(message)


async def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 5.0
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def all_bound(daemon: Daemon) -> bool:
    return all(op.bound_count == len(op.binds) for op in daemon.operators.values())


@pytest.fixture
async def running(tmp_path: Path, sim: SmscSimulator) -> AsyncIterator[tuple[Daemon, Path]]:
    path = write(tmp_path / "smppd.toml", tmp_path / "state",
                 operator(sim, "alpha", "9370"), operator(sim, "beta", "9371"))
    daemon = Daemon(load_config(path), notifier=RecordingNotifier())
    await daemon.start()
    await wait_for(lambda: all_bound(daemon), "binds up")
    yield daemon, path
    await daemon.stop()


async def post_reload(daemon: Daemon) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{daemon.api_port}/v1/admin/reload") as resp:
        return resp.status, await resp.json(content_type=None)


def conns(daemon: Daemon, op_id: str) -> list[object]:
    return [bind.conn for bind in daemon.operators[op_id].binds]


# --------------------------------------------------------------------------- plan


def config(**alpha: Any) -> Config:
    base = {"id": "alpha", "hosts": ["127.0.0.1:1"], "system_id": "esme", "password": "secret"}
    return Config.model_validate({"operators": [{**base, **alpha}]})


def test_plan_sorts_changes_into_live_and_rebind() -> None:
    old = config()
    assert plan(old, config()).retuned == {} and plan(old, config()).rebind == {}
    live = plan(old, config(tps=10, window=3, status_table={"0x45": {"transient": True}}))
    assert live.retuned == {"alpha": ["window", "tps", "status_table"]} and live.rebind == {}
    moved = plan(old, config(hosts=["127.0.0.1:2"], password="other"))
    assert moved.rebind == {"alpha": ["hosts", "credentials"]} and moved.retuned == {}
    api = Config.model_validate({"api": {"listen": "127.0.0.1:9"},
                                 "operators": [{"id": "beta", "hosts": ["127.0.0.1:1"],
                                                "system_id": "e", "password": "p"}]})
    changed = plan(old, api)
    assert (changed.added, changed.removed, changed.restart_required) == (
        ["beta"], ["alpha"], ["api"])


# --------------------------------------------------------------------------- live


async def test_add_remove_and_retune_without_dropping_binds(
        running: tuple[Daemon, Path], sim: SmscSimulator) -> None:
    daemon, path = running
    alpha_conns = conns(daemon, "alpha")
    write(path, path.parent / "state",
          operator(sim, "alpha", "9370", tps=40, window=4,
                   status_table={"0x45": {"transient": True, "retries": 2}}),
          operator(sim, "gamma", "9372"))

    status, body = await post_reload(daemon)

    assert status == 200, body
    assert body["added"] == ["gamma"] and body["removed"] == ["beta"]
    assert body["retuned"] == {"alpha": ["window", "tps", "status_table"]}
    assert body["rebound"] == [] and body["failed_messages"] == 0
    alpha = daemon.operators["alpha"]
    assert conns(daemon, "alpha") == alpha_conns and all(alpha_conns)  # same sessions
    assert alpha.limiter.limit == 40 and alpha.window == 4
    assert alpha.config.rule_for(0x45).retries == 2
    assert alpha_conns[0].session.window.size == 4  # type: ignore[attr-defined]
    assert "beta" not in daemon.operators and "beta" not in daemon.dispatcher.operators
    await wait_for(lambda: sim.mno("beta").bound_count == 0, "beta unbound")
    await wait_for(lambda: daemon.operators["gamma"].healthy, "gamma bound")
    assert sim.mno("alpha").bound_count == 1
    # New traffic routes by the new table.
    accepted = await daemon.submit([{"tenant_id": "t", "source": "ACME",
                                     "destination": "+93720000001", "text": "hi"}], None)
    assert accepted[0]["operator_id"] == "gamma"
    assert daemon.parts.notifier.sent[-2:][0] == "RELOADING=1"  # type: ignore[attr-defined]
    assert daemon.parts.notifier.sent[-1].startswith("READY=1\nSTATUS=2/2 operators bound")  # type: ignore[attr-defined]


async def test_credentials_and_bind_count_change(running: tuple[Daemon, Path],
                                                 sim: SmscSimulator) -> None:
    daemon, path = running
    beta_conns = conns(daemon, "beta")
    alpha_first = conns(daemon, "alpha")[0]
    write(path, path.parent / "state",
          operator(sim, "alpha", "9370", password="rotated"),
          operator(sim, "beta", "9371", binds=2))

    status, body = await post_reload(daemon)

    assert status == 200, body
    assert body["rebound"] == ["alpha"] and body["retuned"] == {"beta": ["binds"]}
    await wait_for(lambda: all_bound(daemon) and conns(daemon, "alpha")[0] is not alpha_first,
                   "alpha rebound")
    assert daemon.operators["alpha"].password() == "rotated"
    assert conns(daemon, "beta")[0] is beta_conns[0]  # beta kept its session, gained one
    assert len(daemon.operators["beta"].binds) == 2
    await wait_for(lambda: sim.mno("beta").bound_count == 2, "beta's second bind")


async def test_removed_operator_never_drops_a_message_silently(
        running: tuple[Daemon, Path], sim: SmscSimulator) -> None:
    daemon, path = running
    daemon.operators["beta"].pause_gate.close()  # its queue cannot empty before the drain timeout
    accepted = await daemon.submit([{"tenant_id": "t", "source": "ACME",
                                     "destination": f"+9371000000{i}", "text": "hi"}
                                    for i in range(3)], None)
    write(path, path.parent / "state", operator(sim, "alpha", "9370"))

    status, body = await post_reload(daemon)

    # The part the send loop already held went out; every other one is failed, with a reason.
    assert status == 200 and body["failed_messages"] >= 2
    failed = 0
    for item in accepted:
        stored = await daemon.store.get_message(item["message_id"])
        assert stored is not None
        if stored["state"] == "FAILED":
            assert stored["reason"] == "operator removed by a config reload"
            failed += 1
        else:
            assert stored["state"] in ("SUBMITTED", "DELIVERED")
    assert failed == body["failed_messages"]


async def test_invalid_file_changes_nothing(running: tuple[Daemon, Path],
                                            sim: SmscSimulator) -> None:
    daemon, path = running
    before_config, before_conns = daemon.config, {i: conns(daemon, i) for i in daemon.operators}
    write(path, path.parent / "state", operator(sim, "alpha", "9370", tps=-5),
          operator(sim, "gamma", "9372"))

    status, body = await post_reload(daemon)

    assert status == 422
    assert body["title"] == "Configuration rejected"
    assert {"field": "operators.alpha.tps", "message": "must be greater than 0"} in body["errors"]
    assert daemon.config is before_config
    assert {i: conns(daemon, i) for i in daemon.operators} == before_conns
    assert daemon.operators["alpha"].limiter.limit == 100
    status_line = daemon.parts.notifier.sent[-1]  # type: ignore[attr-defined]
    assert status_line.startswith("READY=1\nSTATUS=reload failed")
    assert "operators.alpha.tps" in status_line

    path.write_text("this is [not toml")
    status, body = await post_reload(daemon)
    assert status == 422 and "invalid TOML" in body["errors"][0]["message"]
    assert daemon.config is before_config


async def test_sighup_reloads(running: tuple[Daemon, Path], sim: SmscSimulator) -> None:
    daemon, path = running
    task = asyncio.ensure_future(daemon.run_until_signalled())
    await asyncio.sleep(0)  # let it install its signal handlers
    write(path, path.parent / "state", operator(sim, "alpha", "9370", tps=25),
          operator(sim, "beta", "9371"))

    os.kill(os.getpid(), signal.SIGHUP)
    await wait_for(lambda: daemon.operators["alpha"].limiter.limit == 25, "the reload")

    daemon.request_stop()
    await task
    asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
