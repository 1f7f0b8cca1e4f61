"""What several bench scripts share: the simulated MNO "bench" in a process of its own,
the daemon's operator table for it, and scratch PostgreSQL databases and NATS streams.

Imports of the project's packages are inside the functions: a spawned child process
loads only what it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit, urlunsplit

BENCH = "bench"  # the MNO, its account and the daemon's operator
PASSWORD = "pw"


def sim_config(*, window: int, max_binds: int, receipts: bool = True) -> Any:
    """The simulator with one MNO "bench": no TPS limit, no recording, receipts in 1-5 ms."""
    from simulators.config import AccountConfig, MnoConfig, ReceiptConfig, SimConfig

    return SimConfig(admin_port=None, mnos=[MnoConfig(
        name=BENCH, record=False, window=window,
        accounts=[AccountConfig(BENCH, [PASSWORD], tps=10**9, max_binds=max_binds)],
        receipts=ReceiptConfig(enabled=receipts, delay_ms=(1.0, 5.0), outcomes={"DELIVRD": 1}),
    )])


def simulator_process(pipe: Connection, window: int, max_binds: int, receipts: bool) -> None:
    """A child process's body: the simulator (``sim_config``); sends its port, runs until
    anything comes down ``pipe``, then sends what it counted and stops."""
    import uvloop

    from simulators.server import SmscSimulator

    async def main() -> None:
        sim = SmscSimulator(sim_config(window=window, max_binds=max_binds, receipts=receipts))
        await sim.start()
        pipe.send(sim.port_of(BENCH))
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # until told to stop
        counters = sim.mno(BENCH).counters
        pipe.send({"submits": counters.submits, "receipts_sent": counters.receipts_sent})
        await sim.stop()

    uvloop.run(main())


def bench_operator(port: int, binds: int) -> dict[str, Any]:
    """The daemon's [[operators]] table for the simulator's "bench" MNO at ``port``."""
    return {"id": BENCH, "prefixes": ["9370"], "hosts": [f"127.0.0.1:{port}"],
            "system_id": BENCH, "password": PASSWORD, "tps": 1_000_000, "window": 100,
            "binds": binds, "response_timeout": 30.0}


async def admin_execute(admin_dsn: str, sql: str) -> None:
    """One statement on its own connection (CREATE/DROP DATABASE take no transaction)."""
    import asyncpg

    conn = await asyncpg.connect(admin_dsn, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(admin_dsn: str, prefix: str) -> str:
    """A new, empty database beside ``admin_dsn``'s; returns its DSN."""
    name = f"{prefix}_{secrets.token_hex(6)}"  # lower-case hex: a safe identifier
    await admin_execute(admin_dsn, f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}"))


async def drop_database(admin_dsn: str, dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    await admin_execute(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def scratch_database(admin_dsn: str, prefix: str) -> AsyncIterator[str]:
    """A new database for one run; yields its DSN, drops it after."""
    dsn = await create_database(admin_dsn, prefix)
    try:
        yield dsn
    finally:
        await drop_database(admin_dsn, dsn)


async def delete_streams(js: Any, names: dict[str, str]) -> None:
    """Remove a run's JetStream streams (the ``[nats]`` names), those never made too."""
    for stream in (names["dispatch_stream"], names["dlr_stream"], names["mo_stream"]):
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
