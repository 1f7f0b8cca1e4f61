"""Absorb rate of the SMSC simulator: python bench/bench_simulator.py [--count N] [--window W]

The simulator runs in a child process (uvloop, one core), the raw load generator in
this one; prints submit_sm/s without receipts, with receipts, and with recording on.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
from multiprocessing.connection import Connection

import uvloop

from simulators.config import AccountConfig, MnoConfig, ReceiptConfig, SimConfig
from simulators.loadgen import blast
from simulators.server import SmscSimulator


def _config(receipts: bool, record: bool) -> SimConfig:
    return SimConfig(admin_port=None, mnos=[MnoConfig(
        name="bench",
        accounts=[AccountConfig("bench", ["pw"], tps=10**9)],
        record=record,
        receipts=ReceiptConfig(enabled=receipts, delay_ms=(1.0, 5.0),
                               outcomes={"DELIVRD": 90, "UNDELIV": 10}),
    )])


def _serve(pipe: Connection, receipts: bool, record: bool) -> None:
    async def main() -> None:
        sim = SmscSimulator(_config(receipts, record))
        await sim.start()
        pipe.send(sim.port_of("bench"))
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # until told to stop
        await sim.stop()

    uvloop.run(main())


def measure(label: str, *, receipts: bool, record: bool, count: int, window: int) -> None:
    parent, child = mp.Pipe()
    proc = mp.Process(target=_serve, args=(child, receipts, record), daemon=True)
    proc.start()
    try:
        port = parent.recv()
        uvloop.run(blast("127.0.0.1", port, "bench", "pw", count=count // 10, window=window,
                         receipts=receipts))  # warm-up
        result = uvloop.run(blast("127.0.0.1", port, "bench", "pw", count=count, window=window,
                                  receipts=receipts))
    finally:
        parent.send("stop")
        proc.join(10)
    extra = f", {result.receipts:,} receipts" if receipts else ""
    print(f"{label:<32} {result.rate:>10,.0f} submit_sm/s  ({result.responses:,} in "
          f"{result.elapsed:.2f} s{extra})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300_000)
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args()
    measure("no receipts, no recording", receipts=False, record=False, count=args.count,
            window=args.window)
    measure("receipts, no recording", receipts=True, record=False, count=args.count,
            window=args.window)
    measure("no receipts, recording on", receipts=False, record=True, count=args.count,
            window=args.window)


if __name__ == "__main__":
    main()
