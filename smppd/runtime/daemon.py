"""The daemon: the parts ``smppd.runtime.wiring`` builds, started and stopped by
``smppd.runtime.lifecycle``, seen by the control API through ``smppd.runtime.api_view``.

``Daemon(config)`` is the one object the command line, the demo and the tests hold:
``start()``, ``stop()``, ``run_until_signalled()``, the parts by name
(``operators``, ``store``, ``dispatcher``, ...) and the API's view (``submit``,
``operator_statuses``, ``events``, ...).
"""

from __future__ import annotations

from typing import Any

from control.view import ANYONE, Caller
from correlation.store import CorrelationStore
from smppd.config import Config
from smppd.intake.events import EventSink
from smppd.runtime.api_view import GatewayApi
from smppd.runtime.lifecycle import Lifecycle
from smppd.runtime.notify import Notifier
from smppd.runtime.wiring import build


class Daemon:
    def __init__(self, config: Config, *, store: CorrelationStore | None = None,
                 sink: EventSink | None = None, notifier: Notifier | None = None) -> None:
        parts = build(config, store=store, sink=sink, notifier=notifier)
        self.parts = parts
        # The parts callers reach for most; the rest are under ``parts``.
        self.store = parts.store
        self.operators = parts.fleet.operators
        self.dispatcher = parts.dispatcher
        self.bus = parts.bus
        self.vault = parts.vault
        self.reloader = parts.reloader
        self.lifecycle = Lifecycle(parts, serve_api=self._start_api)
        self.api = GatewayApi(parts, started=lambda: self.lifecycle.ready)

    @property
    def config(self) -> Config:
        """The running config (a reload swaps it)."""
        return self.parts.fleet.config

    @property
    def api_port(self) -> int | None:
        return self.parts.server.port

    @property
    def ready(self) -> bool:
        return self.lifecycle.ready

    async def start(self) -> None:
        await self.lifecycle.start()

    async def stop(self) -> None:
        await self.lifecycle.stop()

    async def run_until_signalled(self) -> None:
        await self.lifecycle.run_until_signalled()

    def request_stop(self) -> None:
        self.lifecycle.request_stop()

    async def _start_api(self) -> None:
        await self.parts.server.start(self.api)

    def summary(self) -> str:
        return self.parts.fleet.summary()

    # -- the API's view, for callers in the same process --

    async def submit(self, bodies: list[Any], idempotency_key: str | None,
                     caller: Caller = ANYONE) -> list[dict[str, Any]]:
        return await self.api.submit(bodies, idempotency_key, caller)

    async def message(self, message_id: str) -> dict[str, Any] | None:
        return await self.api.message(message_id)

    async def events(self, kind: str, after: int, limit: int,
                     tenants: frozenset[str] | None = None) -> list[dict[str, Any]]:
        return await self.api.events(kind, after, limit, tenants)

    def operator_statuses(self) -> list[dict[str, Any]]:
        return self.api.operator_statuses()

    def operator_status(self, operator_id: str) -> dict[str, Any] | None:
        return self.api.operator_status(operator_id)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        return await self.api.readiness()
