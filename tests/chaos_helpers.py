"""Helpers for the chaos tests: the fault proxy in the test's loop, driven by
toxiproxy-python, between the daemon and the SMSC simulator, and the count of a run
from the SMSC's side against the store (``simulators.tally``).

    async with fault_proxy() as server:
        link = await SmscLink.open(server, "op", sim.port_of("op"))
        path = write_config(tmp_path, [operator("op", [link.address])])
        await link.add("latency", latency=500)

The proxy runs on the real clock: the daemon's timers (response timeout, enquire_link)
run on it too, and the tests assert outcomes, never how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar

import toxiproxy

from simulators.faultproxy import FaultProxy
from simulators.server import SmscSimulator
from simulators.tally import Tally, tally
from smppd.runtime.daemon import Daemon

T = TypeVar("T")


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """toxiproxy-python blocks (requests): run it off the loop the proxy serves on."""
    return await asyncio.to_thread(fn, *args, **kwargs)


@contextlib.asynccontextmanager
async def fault_proxy() -> AsyncIterator[toxiproxy.Toxiproxy]:
    fp = FaultProxy()
    await fp.start("127.0.0.1", 0)
    server = toxiproxy.Toxiproxy()
    server.update_api_consumer("127.0.0.1", fp.port)
    try:
        yield server
    finally:
        await fp.stop()


class SmscLink:
    """One proxy in front of an SMSC: the address the daemon binds to, and its toxics."""

    def __init__(self, proxy: Any) -> None:
        self.proxy = proxy
        self.address: str = proxy.listen

    @classmethod
    async def open(cls, server: toxiproxy.Toxiproxy, name: str, port: int) -> SmscLink:
        proxy = await call(server.create, name=name, upstream=f"127.0.0.1:{port}",
                           listen="127.0.0.1:0")
        return cls(proxy)

    async def add(self, kind: str, *, stream: str = "downstream", **attributes: int) -> str:
        """Add a toxic; returns its name, for ``remove``."""
        name = f"{kind}_{stream}"
        await call(self.proxy.add_toxic, name=name, type=kind, stream=stream,
                   attributes=attributes)
        return name

    async def add_both(self, kind: str, **attributes: int) -> list[str]:
        return [await self.add(kind, stream=s, **attributes) for s in ("upstream", "downstream")]

    async def remove(self, *names: str) -> None:
        for name in names:
            await call(self.proxy.destroy_toxic, name)


def submit_destinations(sims: Iterable[SmscSimulator], name: str) -> list[str]:
    """The destination of every submit_sm the MNO ``name`` received, over each of the
    simulators given (one SMSC's lives, before and after a restart)."""
    return [entry["destination_addr"] for sim in sims
            for entry in sim.mno(name).recorder.entries("submit_sm")]


async def count(daemon: Daemon, ids: list[str], sims: Iterable[SmscSimulator],
                name: str) -> Tally:
    """The run so far, from the SMSC's side and the store's."""
    stored = {i: await daemon.store.get_message(i) for i in ids}
    destinations = {i: m["destination"] for i, m in stored.items() if m is not None}
    accepted = {i: destinations.get(i, f"absent:{i}") for i in ids}
    states = {i: (m["state"] if m is not None else None) for i, m in stored.items()}
    return tally(accepted, submit_destinations(sims, name), states)
