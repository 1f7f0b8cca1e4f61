"""Shared builders for the daemon's end-to-end tests: simulated MNOs on free ports,
a daemon config TOML pointing at them, and a polling helper.

    mnos = [mno("alpha", tps=200)]
    async with running_sim(mnos) as sim:
        path = write_config(tmp_path, [operator("alpha", sim)], api_port=0)
        async with running_daemon(path) as daemon: ...
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp

from correlation.sqlite_store import SqliteStore
from correlation.store import FINAL_STATES
from simulators import AccountConfig, Behaviour, MnoConfig, ReceiptConfig, SimConfig
from simulators.server import SmscSimulator
from smppd.config import load_config
from smppd.runtime.daemon import Daemon

SYSTEM_ID = "esme"
PASSWORD = "secret"
# Operator keys that keep a test fast: quick reconnects, short timeouts.
FAST = {
    "enquire_link_interval": 5.0,
    "inactivity_timeout": 15.0,
    "response_timeout": 5.0,
    "reconnect_min": 0.05,
    "reconnect_max": 0.3,
    "primary_probe_interval": 0.2,
}


# --------------------------------------------------------------------------- simulator


def mno(name: str, *, tps: int = 1000, max_binds: int = 4, receipt_delay_ms: float = 20.0,
        outcomes: Mapping[str, float] | None = None, behaviour: Behaviour | None = None,
        port: int = 0, **config: Any) -> MnoConfig:
    """One simulated MNO with one account (SYSTEM_ID/PASSWORD) and fast receipts."""
    receipts = ReceiptConfig(delay_ms=(receipt_delay_ms, receipt_delay_ms),
                             outcomes=dict(outcomes or {"DELIVRD": 1.0}))
    return MnoConfig(name=name, port=port,
                     accounts=[AccountConfig(SYSTEM_ID, [PASSWORD], tps=tps,
                                             max_binds=max_binds)],
                     receipts=receipts, behaviour=behaviour or Behaviour(), **config)


@contextlib.asynccontextmanager
async def running_sim(mnos: list[MnoConfig]) -> AsyncIterator[SmscSimulator]:
    sim = SmscSimulator(SimConfig(mnos=mnos, admin_port=None))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def free_port() -> int:
    """A port with nothing listening on it (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- daemon config


def operator(op_id: str, hosts: list[str] | SmscSimulator, *, prefix: str | None = None,
             **keys: Any) -> dict[str, Any]:
    """An [[operators]] table; ``hosts`` may be the simulator (its MNO named ``op_id``)."""
    if isinstance(hosts, SmscSimulator):
        hosts = [f"127.0.0.1:{hosts.port_of(op_id)}"]
    table: dict[str, Any] = {
        "id": op_id, "name": op_id.title(), "mcc": "412", "mnc": ["40"],
        "prefixes": [prefix or "937"], "hosts": hosts,
        "system_id": SYSTEM_ID, "password": PASSWORD,
        "binds": 1, "window": 10, "tps": 500,
    }
    table.update(FAST)
    table.update(keys)
    return table


def write_config(directory: Path, operators: list[dict[str, Any]], *, api_port: int = 0,
                 drain_timeout: float = 5.0, hold: float = 5.0,
                 **tables: Mapping[str, Any]) -> Path:
    """A daemon TOML in ``directory`` (state in ``directory/state``); returns its path.

    ``tables`` adds keys to [daemon], [api] or [store], or whole tables ([redis],
    [nats], [vault], ...): ``write_config(d, ops, store={"kind": "postgres", "dsn": dsn})``.
    """
    sections: dict[str, dict[str, Any]] = {
        "daemon": {"state_dir": str(directory / "state"), "drain_timeout": drain_timeout},
        "api": {"listen": f"127.0.0.1:{api_port}"},
        "store": {"receipt_hold_seconds": hold},
    }
    for name, keys in tables.items():
        sections.setdefault(name, {}).update(keys)
    lines: list[str] = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in keys.items())
    for table in operators:
        lines.append("[[operators]]")
        nested = {k: v for k, v in table.items() if isinstance(v, dict)}
        lines.extend(f"{k} = {toml_value(v)}" for k, v in table.items() if k not in nested)
        for key, sub in nested.items():
            lines.append(f"[operators.{key}]")
            lines.extend(f'"{k}" = {toml_value(v)}' for k, v in sub.items())
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "smppd.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def toml_value(value: Any) -> str:
    """``value`` as TOML (str, number, bool, list, inline table)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


@contextlib.asynccontextmanager
async def running_daemon(config_path: Path) -> AsyncIterator[Daemon]:
    daemon = Daemon(load_config(config_path))
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


@contextlib.asynccontextmanager
async def daemon_on_sim(directory: Path, smsc: MnoConfig, *, hold: float = 5.0,
                        **operator_keys: Any) -> AsyncIterator[tuple[SmscSimulator, Daemon]]:
    """The simulated MNO ``smsc`` and a daemon with one operator on it (named as the
    MNO, ``operator_keys`` on its table), every bind up."""
    async with running_sim([smsc]) as sim:
        path = write_config(directory, [operator(smsc.name, sim, **operator_keys)], hold=hold)
        async with running_daemon(path) as daemon:
            await wait_bound(daemon)
            yield sim, daemon


# --------------------------------------------------------------------------- waiting


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02,
                   what: str | Callable[[], str] = "condition") -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for "
                                 f"{what() if callable(what) else what}")
        await asyncio.sleep(interval)


async def wait_bound(daemon: Daemon, count: int | None = None, timeout: float = 5.0) -> None:
    """Every operator has ``count`` (default: all its configured) binds up."""
    def all_bound() -> bool:
        return all(op.bound_count == (count if count is not None else len(op.binds))
                   for op in daemon.operators.values())
    await wait_for(all_bound, timeout, what="binds up")


async def wait_final(daemon: Daemon, ids: list[str], timeout: float = 10.0,
                     ) -> dict[str, dict[str, Any]]:
    """Wait until every message has a final state; returns id -> stored message."""
    finals: dict[str, dict[str, Any]] = {}

    async def done() -> bool:
        for message_id in ids:
            if message_id not in finals:
                found = await daemon.store.get_message(message_id)
                if found is not None and found["state"] in FINAL_STATES:
                    finals[message_id] = found
        return len(finals) == len(ids)

    await wait_for(done, timeout, interval=0.05,
                   what=f"final states ({len(ids)} messages)")
    return finals


async def submit(daemon: Daemon, count: int, *, prefix: str = "9370", text: str = "hello",
                 **fields: Any) -> list[str]:
    """Accept ``count`` messages straight through the daemon (no HTTP); returns their ids."""
    bodies = [{"tenant_id": "t1", "source": "SMPPD", "destination": f"+{prefix}{i:07d}",
               "text": text, **fields} for i in range(count)]
    accepted = await daemon.submit(bodies, None)
    return [a["message_id"] for a in accepted]


def numbered(first: int, count: int) -> list[dict[str, Any]]:
    """Messages ``first``.. with distinct destinations (+9370 and the number, 7 digits),
    so the SMSC's PDUs say which message each one is."""
    return [{"tenant_id": "t1", "source": "SMPPD", "destination": f"+9370{i:07d}",
             "text": f"message {i}"} for i in range(first, first + count)]


def submits(sim: SmscSimulator, name: str) -> list[dict[str, Any]]:
    """The submit_sm PDUs an MNO recorded."""
    return sim.mno(name).recorder.entries("submit_sm")


def nats_names() -> dict[str, str]:
    """[nats] stream, subject and consumer names of one test's own, so runs never meet."""
    tag = uuid.uuid4().hex[:8]
    return {
        "dispatch_stream": f"T{tag}_DISPATCH",
        "dlr_stream": f"T{tag}_DLR",
        "mo_stream": f"T{tag}_MO",
        "dispatch_subject": f"t{tag}.smpp.operator",
        "invalid_subject": f"t{tag}.smpp.dispatch.invalid",
        "dlr_subject": f"t{tag}.sms.dlr",
        "mo_subject": f"t{tag}.sms.mo",
        "consumer": f"c{tag}",
    }


# --------------------------------------------------------------------------- subprocesses

SMPPD = Path(sys.executable).parent / "smppd"


class DaemonProcess:
    """`smppd run --config FILE` as a subprocess, its log in ``log``, its API at ``api_port``."""

    def __init__(self, config: Path, api_port: int, log: Path) -> None:
        self.config = config
        self.url = f"http://127.0.0.1:{api_port}"
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, ready: str = "/readyz") -> None:
        with _append(self.log) as out:
            self.proc = await asyncio.create_subprocess_exec(
                str(SMPPD), "--log-format", "text", "run", "--config", str(self.config),
                stdout=out, stderr=out, cwd=self.config.parent)
        await wait_for(lambda: self._answers(ready), 15.0, interval=0.1,
                       what=f"{self.url}{ready}")

    async def _answers(self, route: str) -> bool:
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise AssertionError(f"smppd exited {self.proc.returncode}:\n{self.log.read_text()}")
        try:
            async with aiohttp.ClientSession() as http, http.get(self.url + route) as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    async def post_bulk(self, messages: list[dict[str, Any]]) -> list[str]:
        ids: list[str] = []
        async with aiohttp.ClientSession() as http:
            for start in range(0, len(messages), 100):
                chunk = {"messages": messages[start:start + 100]}
                async with http.post(f"{self.url}/v1/messages/bulk", json=chunk) as resp:
                    assert resp.status == 202, await resp.text()
                    ids.extend(a["message_id"] for a in (await resp.json())["accepted"])
        return ids

    async def signal(self, sig: int, timeout: float = 45.0) -> int:
        # 45 s: systemd/smppd.service's TimeoutStopSec, the stop budget the daemon keeps
        # (a standby's stop may use its drain_timeout twice: unbinding, then held receipts).
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return await asyncio.wait_for(asyncio.shield(self.proc.wait()), timeout)
        except TimeoutError:
            pass
        # Still running: have it log where every task waits (SIGUSR1), then kill it and
        # fail with its log, so a hang says where it hung.
        self.proc.send_signal(signal.SIGUSR1)
        with contextlib.suppress(AssertionError):
            await wait_for(lambda: _dumped(self.log), 5.0, interval=0.1, what="a task dump")
        await self.kill()
        raise AssertionError(f"smppd did not exit within {timeout} s of signal {sig}:\n"
                             f"{self.log.read_text()}")

    async def terminate(self) -> int:
        return await self.signal(signal.SIGTERM)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


class Processes(list[DaemonProcess]):
    """The `smppd run` subprocesses of one test (the ``processes`` fixture kills those
    left running), each logging to smppd-N.log beside its config."""

    async def start(self, config: Path, api_port: int, ready: str = "/readyz",
                    ) -> DaemonProcess:
        process = DaemonProcess(config, api_port, config.parent / f"smppd-{len(self) + 1}.log")
        self.append(process)
        await process.start(ready)
        return process


@contextlib.asynccontextmanager
async def open_sqlite(path: str | Path, **options: Any) -> AsyncIterator[SqliteStore]:
    """The SQLite store at ``path``, open for the block."""
    store = SqliteStore(str(path), **options)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def stored_messages(state_dir: Path, ids: list[str]) -> dict[str, dict[str, Any]]:
    """id -> stored message, of those of ``ids`` in the SQLite store in ``state_dir``
    (read once the daemon that wrote it is gone)."""
    async with open_sqlite(state_dir / "smppd.sqlite") as store:
        return {i: m for i in ids if (m := await store.get_message(i)) is not None}


def _dumped(log: Path) -> bool:
    return "waits in" in log.read_text()


def _append(path: Path) -> BinaryIO:
    return open(path, "ab")  # the child writes its log there
