"""The SMSC simulator: several MNOs on their own ports, plus the admin HTTP API.

    sim = SmscSimulator(config)          # ports 0 in the config: free ports
    await sim.start()
    port = sim.port_of("roshan")
    sim.mno("roshan").behaviour.black_hole = True
    await sim.stop()
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable

from aiohttp import web

from .config import SimConfig, tls_context
from .mno import Mno
from .tls import TlsServerProtocol

log = logging.getLogger("simulators")


class SmscSimulator:
    def __init__(self, config: SimConfig, *, clock: Callable[[], float] = time.time) -> None:
        """``clock`` (wall time, seconds) drives TPS windows and receipt dates."""
        self.config = config
        self.clock = clock
        self.mnos: dict[str, Mno] = {}
        self.admin_port: int | None = None
        self._servers: list[asyncio.Server] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for index, mno_config in enumerate(self.config.mnos):
                mno = Mno(mno_config, self.clock, loop)
                server = await loop.create_server(mno.new_connection, mno_config.host,
                                                  mno_config.port)
                mno.port = server.sockets[0].getsockname()[1]
                self.mnos[mno.name] = mno
                self._servers.append(server)
                log.info("MNO %s listening on %s:%d", mno.name, mno_config.host, mno.port)
                context = tls_context(mno_config, f"mno[{index}]")
                if context is not None:
                    server = await loop.create_server(
                        functools.partial(TlsServerProtocol, context, mno.new_connection),
                        mno_config.host, mno_config.tls_port)
                    mno.tls_port = server.sockets[0].getsockname()[1]
                    self._servers.append(server)
                    log.info("MNO %s listening with TLS on %s:%d", mno.name, mno_config.host,
                             mno.tls_port)
            if self.config.admin_port is not None:
                await self._start_admin()
        except BaseException:
            await self.stop()
            raise

    async def _start_admin(self) -> None:
        from .admin import make_app  # aiohttp app only when asked for

        self._runner = web.AppRunner(make_app(self.mnos), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.admin_host, self.config.admin_port)
        await site.start()
        self.admin_port = int(self._runner.addresses[0][1])  # the real one when 0 was asked
        log.info("admin API on http://%s:%d", self.config.admin_host, self.admin_port)

    async def stop(self) -> None:
        """Stop listening, drop every connection, stop the admin API."""
        for server in self._servers:
            server.close()
        for mno in self.mnos.values():
            mno.close_all()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def mno(self, name: str) -> Mno:
        return self.mnos[name]

    def port_of(self, name: str) -> int:
        return self.mnos[name].port

    def tls_port_of(self, name: str) -> int:
        port = self.mnos[name].tls_port
        if port is None:
            raise KeyError(f"MNO {name} has no TLS listener (no tls_cert)")
        return port

    async def __aenter__(self) -> SmscSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
