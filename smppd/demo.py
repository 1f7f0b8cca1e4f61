"""`smppd demo`: simulated MNOs, the daemon on embedded defaults, a sample batch.

Starts the five simulated operators of conf/simulator.toml, the daemon with
conf/demo.toml (SQLite in a fresh state directory), sends a batch of GSM 03.38,
UCS2 and long messages across the operators' prefixes through the HTTP API, waits
for the receipts and prints a per-operator table; then keeps serving the API until
Ctrl-C (or exits with --exit).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from correlation.store import FINAL_STATES
from smppd.config import load_config
from smppd.daemon import Daemon

CONF = Path(__file__).resolve().parent.parent / "conf"
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


async def run_demo(*, exit_after: bool, count: int, state_dir: str | None) -> int:
    from simulators.config import load_config as load_sim_config
    from simulators.server import SmscSimulator

    sim = SmscSimulator(load_sim_config(CONF / "simulator.toml"))
    config = load_config(CONF / "demo.toml")
    config.daemon.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="smppd-demo-"))
    await sim.start()
    daemon = Daemon(config)
    try:
        await daemon.start()
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
        print(f"\nAPI on {url} (try {url}/v1/operators); Ctrl-C to stop.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        return 0
    finally:
        await daemon.stop()
        await sim.stop()


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
