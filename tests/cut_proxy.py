"""A link a test can cut, in front of PostgreSQL, NATS or Redis: one proxy of the
project's fault proxy (``simulators.faultproxy``), driven with toxiproxy-python as a
real Toxiproxy would be. ``cut()`` disables it (every connection dropped, new ones
refused, as a dead host would), ``restore()`` enables it again on the same port."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import toxiproxy

from simulators.faultproxy import FaultProxy

_names = itertools.count(1)


def dsn_via(dsn: str, port: int) -> str:
    """A PostgreSQL DSN pointed at 127.0.0.1:``port`` (a proxy), user and database kept."""
    parts = urlsplit(dsn)
    user = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{port}"))


class CutProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = f"{target_host}:{target_port}"
        self.port = 0
        self._server = FaultProxy()
        self._proxy: Any = None

    async def start(self) -> CutProxy:
        await self._server.start("127.0.0.1", 0)
        self._proxy = await self._call(
            toxiproxy.Toxiproxy().create, name=f"cut{next(_names)}", listen="127.0.0.1:0",
            upstream=self.target)
        self.port = int(self._proxy.listen.rsplit(":", 1)[1])
        return self

    async def cut(self) -> None:
        await self._call(self._proxy.disable)

    async def restore(self) -> None:
        await self._call(self._proxy.enable)

    async def _call(self, method: Any, **kwargs: Any) -> Any:
        # The client keeps its server's address in class attributes: point it at ours.
        toxiproxy.Toxiproxy().update_api_consumer("127.0.0.1", self._server.port)
        return await asyncio.to_thread(method, **kwargs)

    async def close(self) -> None:
        await self._server.stop()


@contextlib.asynccontextmanager
async def cut_link(url: str, default_port: int) -> AsyncIterator[CutProxy]:
    """A started CutProxy in front of the server ``url`` names, closed after the block."""
    target = urlsplit(url)
    proxy = await CutProxy(target.hostname or "127.0.0.1", target.port or default_port).start()
    try:
        yield proxy
    finally:
        await proxy.close()
