"""`smppd demo`: simulated MNOs, the daemon on embedded defaults, a sample batch.

Starts the five simulated operators of the packaged simulator.toml (``smppd-sim`` as
a subprocess, through its entry point: the daemon does not import the simulators),
the daemon with the packaged demo.toml (SQLite in a fresh state directory), sends a
batch of GSM 03.38, UCS2 and long messages across the operators' prefixes through
the HTTP API, waits for the receipts and prints a per-operator table; then keeps
serving the API (and the status page) until Ctrl-C, or exits with --exit.

Ports: the API on 8080 and the MNOs on 2775..2779 when those are free, else on free
ports; --api-port and --sim-port choose (0: free ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp

from correlation.store import FINAL_STATES
from smppd.config import load_config
from smppd.runtime.daemon import Daemon

DATA = files("smppd") / "data"  # demo.toml and simulator.toml, shipped as package data
API_PORT, SIM_PORT, MNO_COUNT = 8080, 2775, 5
SIM_START = 15.0  # seconds the simulator may take to listen


class DemoError(Exception):
    """Why the demo cannot run; the message names the option to change."""


TEXTS = [
    "Your verification code is 482913. It expires in 5 minutes.",
    "Salam! Your balance is 125.50 AFN. Recharge with *222# {promo} ~ 20% bonus €",
    "سلام، پیام شما دریافت شد. تشکر از اعتماد شما",  # Dari: UCS2
    "Appointment confirmed for Saturday 10:30. Reply STOP to opt out. 🙂",  # emoji: UCS2
    ("This is a long message that needs more than one segment to arrive, so the gateway "
     "splits it with a user data header, records the SMSC id of every part and reports "
     "the message delivered only when every part has been delivered. Thank you!"),
]


def sample_batch(prefixes: list[str], count: int) -> list[dict[str, Any]]:
    batch = []
    for i in range(count):
        prefix = prefixes[i % len(prefixes)]
        number = f"+{prefix}{(1_000_000 + i * 7919) % 10_000_000:07d}"[: 12]
        number = number + "0" * (12 - len(number))
        batch.append({
            "tenant_id": "demo",
            "source": "SMPPD" if i % 3 else "2020",
            "destination": number,
            "text": TEXTS[i % len(TEXTS)],
        })
    return batch


def free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        # as the servers do: connections of an earlier run in TIME_WAIT are no obstacle
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def choose_ports(api_port: int | None, sim_port: int | None) -> tuple[int, int]:
    """The ports asked for (0: free ones), or the defaults when free, else 0."""
    if api_port is None:
        api_port = API_PORT if free("127.0.0.1", API_PORT) else 0
    elif api_port and not free("127.0.0.1", api_port):
        raise DemoError(f"--api-port {api_port}: the port is in use (0: a free one)")
    if sim_port is None:
        wanted = range(SIM_PORT, SIM_PORT + MNO_COUNT)
        sim_port = SIM_PORT if all(free("127.0.0.1", p) for p in wanted) else 0
    elif sim_port:
        if sim_port + MNO_COUNT - 1 > 65535:
            raise DemoError(f"--sim-port {sim_port}: the five MNOs need ports up to "
                            f"{sim_port + MNO_COUNT - 1}; at most {65536 - MNO_COUNT}")
        taken = [p for p in range(sim_port, sim_port + MNO_COUNT) if not free("127.0.0.1", p)]
        if taken:
            raise DemoError(f"--sim-port {sim_port}: the MNOs need ports {sim_port} to "
                            f"{sim_port + MNO_COUNT - 1}; in use: "
                            f"{', '.join(map(str, taken))} (0: free ones)")
    return api_port, sim_port


def simulator_command() -> list[str]:
    """smppd-sim from the same installation as this smppd."""
    beside = Path(sys.executable).parent / "smppd-sim"
    found = str(beside) if beside.exists() else shutil.which("smppd-sim")
    if found is None:
        raise DemoError("smppd-sim not found beside this Python or on PATH (it is "
                        "installed with smppd)")
    return [found]


@contextlib.asynccontextmanager
async def simulator(state_dir: Path, sim_port: int) -> AsyncIterator[dict[int, int]]:
    """The simulator subprocess; yields configured port -> port it listens on."""
    ready = state_dir / "simulator-ready.json"
    log_path = state_dir / "simulator.log"
    log_file = _fresh(ready, log_path)
    with as_file(DATA / "simulator.toml") as config, log_file:
        proc = await asyncio.create_subprocess_exec(
            *simulator_command(), "--config", str(config), "--ports-from", str(sim_port),
            "--admin-port", "0", "--ready-file", str(ready), "--log-level", "WARNING",
            stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file)
        try:
            deadline = time.monotonic() + SIM_START
            while not ready.exists():
                if proc.returncode is not None or time.monotonic() > deadline:
                    output = log_path.read_text(errors="replace").strip()
                    raise DemoError(f"the simulator did not start (--sim-port {sim_port}): "
                                    f"{output.splitlines()[-1] if output else 'no output'}")
                await asyncio.sleep(0.05)
            mnos = json.loads(ready.read_text())["mnos"]
            yield {m["config_port"]: m["port"] for m in mnos}
        finally:
            await stop_process(proc)


async def stop_process(proc: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds."""
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _fresh(ready: Path, log_path: Path) -> BinaryIO:
    """No ready file of an earlier run; the simulator's log, opened for appending."""
    ready.unlink(missing_ok=True)
    return open(log_path, "ab")  # closed by the caller's with


def _prepare(state_dir: str | None) -> tuple[Path, Any]:
    """The state directory (a new temporary one unless given) and the packaged config."""
    directory = Path(state_dir or tempfile.mkdtemp(prefix="smppd-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    with as_file(DATA / "demo.toml") as path:
        config = load_config(path)
    config.daemon.state_dir = directory
    return directory, config


async def run_demo(*, exit_after: bool, count: int, state_dir: str | None,
                   api_port: int | None = None, sim_port: int | None = None) -> int:
    try:
        return await _demo(exit_after, count, state_dir, api_port, sim_port)
    except DemoError as exc:
        print(f"smppd demo: {exc}", file=sys.stderr)
        return 1


async def _demo(exit_after: bool, count: int, state_dir: str | None,
                api_port: int | None, sim_port: int | None) -> int:
    api_port, sim_port = choose_ports(api_port, sim_port)
    directory, config = _prepare(state_dir)
    config.api.listen = (config.api.listen[0], api_port)
    async with simulator(directory, sim_port) as ports:
        for op in config.operators:  # each operator to where its MNO listens now
            op.hosts = [(host, ports.get(port, port)) for host, port in op.hosts]
        daemon = Daemon(config)
        try:
            try:
                await daemon.start()
            except OSError as exc:
                raise DemoError(f"cannot serve the API on port {api_port} (--api-port): "
                                f"{exc.strerror or exc}") from None
            return await _show(daemon, config, exit_after, count)
        finally:
            await daemon.stop()


async def _show(daemon: Daemon, config: Any, exit_after: bool, count: int) -> int:
    await _wait_bound(daemon, 10.0)
    url = f"http://127.0.0.1:{daemon.api_port}"
    prefixes = [p for op in config.operators for p in op.prefixes]
    started = time.monotonic()
    ids = await _send(url, sample_batch(prefixes, count))
    finals = await _wait_final(daemon, ids, 60.0)
    elapsed = time.monotonic() - started
    _print_table(daemon, finals, elapsed)
    if exit_after:
        return 0 if len(finals) == len(ids) else 1
    print(f"\nAPI on {url} (try {url}/v1/operators), the status page on {url}/;"
          " Ctrl-C to stop.", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    return 0


async def _wait_bound(daemon: Daemon, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if all(op.bound_count == len(op.binds) for op in daemon.operators.values()):
            return
        await asyncio.sleep(0.05)
    down = [op.id for op in daemon.operators.values() if not op.healthy]
    print(f"warning: not every bind is up after {limit:.0f}s (unbound: {down})", file=sys.stderr)


async def _send(url: str, batch: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    async with aiohttp.ClientSession() as http:
        for start in range(0, len(batch), 100):
            chunk = batch[start:start + 100]
            async with http.post(f"{url}/v1/messages/bulk", json={"messages": chunk}) as resp:
                body = await resp.json()
                if resp.status != 202:
                    raise RuntimeError(f"bulk submit refused: {resp.status} {body}")
                ids.extend(item["message_id"] for item in body["accepted"])
    return ids


async def _wait_final(daemon: Daemon, ids: list[str], limit: float) -> dict[str, dict[str, Any]]:
    finals: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and len(finals) < len(ids):
        for message_id in ids:
            if message_id in finals:
                continue
            found = await daemon.store.get_message(message_id)
            if found is not None and found["state"] in FINAL_STATES:
                finals[message_id] = found
        if len(finals) < len(ids):
            await asyncio.sleep(0.2)
    return finals


def _print_table(daemon: Daemon, finals: dict[str, dict[str, Any]], elapsed: float) -> None:
    rows = []
    for op in daemon.operators.values():
        mine = [m for m in finals.values() if m["operator_id"] == op.id]
        delivered = sum(1 for m in mine if m["state"] == "DELIVERED")
        status = op.status()
        latency = status["submit_latency_ms"] or {"p50": 0.0, "p95": 0.0}
        rows.append((op.config.name, status["counters"].get("accepted", 0), delivered,
                     len(mine) - delivered, latency["p50"], latency["p95"]))
    header = ("operator", "sent", "delivered", "failed", "p50 ms", "p95 ms")
    print(f"\n{header[0]:<14}{header[1]:>8}{header[2]:>11}{header[3]:>8}{header[4]:>9}"
          f"{header[5]:>9}")
    for name, sent, delivered, failed, p50, p95 in rows:
        print(f"{name:<14}{sent:>8}{delivered:>11}{failed:>8}{p50:>9.1f}{p95:>9.1f}")
    total = sum(r[1] for r in rows)
    print(f"\n{total} messages, {len(finals)} with a final state, in {elapsed:.1f}s")
