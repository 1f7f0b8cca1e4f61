"""One proxy: a listener on ``listen`` that forwards each connection to ``upstream``
through the proxy's toxics. Disabling it stops the listener and closes every
connection, as Toxiproxy does; enabling it listens again on the same address.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from typing import Any

from .clock import Clock
from .errors import Conflict, FieldError, NotFound
from .link import Connection
from .toxics import Toxic, parse_toxic

log = logging.getLogger("simulators.faultproxy")

CONNECT_TIMEOUT = 10.0  # seconds to reach the upstream before the client is dropped


def parse_address(value: object, field: str, *, any_port: bool) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) to ``(host, port)``; port 0 only if ``any_port``."""
    if not isinstance(value, str):
        raise FieldError(field, "must be a string host:port")
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise FieldError(field, f"{value!r} is not host:port")
    port = int(port_text)
    if not (0 if any_port else 1) <= port <= 65535:
        raise FieldError(field, f"port {port} is out of range")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Proxy:
    def __init__(self, name: str, listen: str, upstream: str, *, clock: Clock,
                 rng: random.Random) -> None:
        parse_address(listen, "listen", any_port=True)
        parse_address(upstream, "upstream", any_port=False)
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.clock = clock
        self.rng = rng
        self.toxics: dict[str, Toxic] = {}
        self.connections: set[Connection] = set()
        self._server: asyncio.Server | None = None
        self._accepting: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self._server is not None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream,
                "enabled": self.enabled, "toxics": [t.to_json() for t in self.toxics.values()]}

    # --- listening ------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            return
        host, port = parse_address(self.listen, "listen", any_port=True)
        loop = asyncio.get_running_loop()
        try:
            # One address only, so port 0 gives one port (not one per resolved address).
            infos = await loop.getaddrinfo(host or "0.0.0.0", port, type=socket.SOCK_STREAM)  # noqa: S104
            server = await asyncio.start_server(self._accept, str(infos[0][4][0]), port)
        except OSError as exc:
            raise FieldError("listen", f"cannot listen on {self.listen}: "
                                       f"{exc.strerror or exc}") from exc
        bound = server.sockets[0].getsockname()
        self.listen = format_address(bound[0], bound[1])  # the real port when 0 was asked
        self._server = server
        log.info("proxy %s listening on %s, upstream %s", self.name, self.listen, self.upstream)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._accepting):
            task.cancel()
        connections = list(self.connections)
        for conn in connections:
            conn.close()
        await asyncio.gather(*self._accepting, *(c.wait_closed() for c in connections),
                             return_exceptions=True)
        await server.wait_closed()
        log.info("proxy %s stopped", self.name)

    async def update(self, fields: dict[str, Any]) -> None:
        """``listen``, ``upstream``, ``enabled`` as given; a new address restarts it."""
        listen = fields.get("listen", self.listen)
        upstream = fields.get("upstream", self.upstream)
        enabled = fields.get("enabled", self.enabled)
        parse_address(listen, "listen", any_port=True)
        parse_address(upstream, "upstream", any_port=False)
        if not isinstance(enabled, bool):
            raise FieldError("enabled", "must be true or false")
        if listen != self.listen or upstream != self.upstream or not enabled:
            await self.stop()
        self.listen, self.upstream = listen, upstream
        if enabled:
            await self.start()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._accepting.add(task)
        try:
            host, port = parse_address(self.upstream, "upstream", any_port=False)
            try:
                upstream = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                  CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                log.warning("proxy %s: upstream %s unreachable: %s", self.name, self.upstream, exc)
                writer.close()
                return
            conn = Connection((reader, writer), upstream, self.toxics.values(),
                              clock=self.clock, rng=self.rng, on_closed=self.connections.discard)
            self.connections.add(conn)
            conn.start()
        except asyncio.CancelledError:  # stopped while reaching the upstream
            writer.close()
            raise
        finally:
            self._accepting.discard(task)

    # --- toxics ---------------------------------------------------------------------

    def toxic(self, name: str) -> Toxic:
        try:
            return self.toxics[name]
        except KeyError:
            raise NotFound(f"toxic not found: {name}") from None

    def add_toxic(self, body: object) -> Toxic:
        toxic = parse_toxic(body)
        if toxic.name in self.toxics:
            raise Conflict(f"toxic already exists: {toxic.name}")
        self.toxics[toxic.name] = toxic
        for conn in list(self.connections):
            conn.attach(toxic)
        return toxic

    def update_toxic(self, name: str, body: object) -> Toxic:
        toxic = self.toxic(name)
        toxic.update(body)
        for conn in list(self.connections):
            conn.reroll(toxic)
        return toxic

    def remove_toxic(self, name: str) -> None:
        toxic = self.toxic(name)
        del self.toxics[name]
        for conn in list(self.connections):
            conn.detach(toxic)

    def remove_toxics(self) -> None:
        for name in list(self.toxics):
            self.remove_toxic(name)
