"""An in-memory GatewayView over a seeded SQLite control plane, and ways to serve the
control app over it: in the test's loop (``serving_app``) or from a thread (for
synchronous clients: schemathesis, smppctl).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from control.app import create_app
from control.auth import Authenticator, Token
from control.data import SqliteData, migrate
from control.leases import MemoryCache
from control.metrics import ControlMetrics
from control.plane import ControlPlane
from control.routing import Health
from control.view import ANYONE, Caller, InputError

OPERATORS = ("roshan", "etisalat", "mtn", "awcc", "salaam")
TOKENS = {"reader": ("read-token", ["read"]), "submitter": ("submit-token", ["submit"]),
          "operator": ("operate-token", ["operate"]), "admin": ("admin-token", ["admin"])}


def authenticator() -> Authenticator:
    return Authenticator(Token(name, hashlib.sha256(secret.encode()).hexdigest(),
                               frozenset(roles)) for name, (secret, roles) in TOKENS.items())


class FakeOperator:
    def __init__(self, op_id: str) -> None:
        self.id = op_id
        self.paused = False
        self.tps = 100.0
        self.window = 10

    def status(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.id.title(),
                "state": "paused" if self.paused else "bound", "binds_configured": 1,
                "binds_up": 1, "tps_limit": self.tps, "tps_current": 0.0,
                "window": self.window, "queued": 0, "in_flight": 0,
                "binds": [{"bind": f"{self.id}-0", "state": "bound", "host": "127.0.0.1:2775",
                           "window_in_use": 0, "attempts": 1, "last_error": None}]}


class FakeView:
    def __init__(self, plane: ControlPlane, registry: CollectorRegistry) -> None:
        self.control = plane
        self.registry = registry
        self.ops = {op: FakeOperator(op) for op in OPERATORS}
        self.messages: dict[str, dict[str, Any]] = {}

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        return True, {"store": "ok"}

    def operator_statuses(self) -> list[dict[str, Any]]:
        return [op.status() for op in self.ops.values()]

    def operator_status(self, operator_id: str) -> dict[str, Any] | None:
        op = self.ops.get(operator_id)
        return op.status() if op else None

    def status_snapshot(self) -> dict[str, Any]:
        operators = [{**op.status(), "submit_rate": 0.0, "receipt_rate": 0.0, "spilled": 0,
                      "receipts_unmatched": 0} for op in self.ops.values()]
        totals = {"submit_rate": 0.0, "receipt_rate": 0.0,
                  "tps_limit": sum(op.tps for op in self.ops.values()), "queued": 0,
                  "spilled": 0, "in_flight": 0, "unmatched": 0, "receipts_held": 0}
        return {"time": "2026-12-03T09:00:00.000Z", "started_at": "2026-12-03T08:00:00.000Z",
                "uptime_seconds": 3600.0, "rate_window_seconds": 5.0, "totals": totals,
                "operators": operators, "errors": []}

    async def operator_action(self, operator_id: str, action: str) -> dict[str, Any] | None:
        op = self.ops.get(operator_id)
        if op is None:
            return None
        if action in ("pause", "resume"):
            op.paused = action == "pause"
        return op.status()

    def patch_operator(self, operator_id: str, tps: float | None,
                       window: int | None) -> dict[str, Any] | None:
        op = self.ops.get(operator_id)
        if op is None:
            return None
        op.tps = tps if tps is not None else op.tps
        op.window = window if window is not None else op.window
        return op.status()

    def bind_status(self, operator_id: str, bind: str) -> dict[str, Any] | None:
        op = self.ops.get(operator_id)
        if op is None or bind != f"{operator_id}-0":
            return None
        bind_status: dict[str, Any] = op.status()["binds"][0]
        return bind_status

    async def submit(self, bodies: list[Any], idempotency_key: str | None,
                     caller: Caller = ANYONE) -> list[dict[str, Any]]:
        import jsonschema_rs

        from control.openapi import document

        out = []
        for body in bodies:  # as strict as the daemon's own validation, by the document
            problems = [(".".join(str(p) for p in e.instance_path) or "body", e.message)
                        for e in jsonschema_rs.Draft202012Validator(
                            document()["components"]["schemas"]["MessageIn"])
                        .iter_errors(body)]
            if problems:
                raise InputError(problems)
            message_id = str(uuid.uuid4())
            self.messages[message_id] = {"message_id": message_id, "state": "ACCEPTED"}
            out.append({"message_id": message_id, "operator_id": "roshan", "parts": 1,
                        "duplicate": False})
        return out

    async def message(self, message_id: str) -> dict[str, Any] | None:
        return self.messages.get(message_id)

    async def events(self, kind: str, after: int, limit: int,
                     tenants: frozenset[str] | None = None) -> list[dict[str, Any]]:
        return []

    async def webhook_dead(self, after: int, limit: int,
                           tenants: frozenset[str] | None = None) -> list[dict[str, Any]]:
        dead = {"id": 1, "kind": "dlr", "tenant_id": "t1", "url": None, "attempts": 3,
                "last_error": "max age reached; last: http 503", "created_at": 1.0,
                "dead_at": 2.0, "event": {"schema": "smppd.dlr.v1", "message_id": "m1"}}
        return [dead][:limit] if after < 1 and (tenants is None or "t1" in tenants) else []

    async def webhook_replay(self, delivery_id: int) -> bool:
        return delivery_id == 1

    async def reload(self) -> dict[str, Any]:
        return {"reloaded": True}

    def set_log_level(self, level: str) -> dict[str, Any]:
        return {"level": level}


async def make_view() -> FakeView:
    registry = CollectorRegistry()
    data = SqliteData(":memory:")
    await migrate(data, seed=True)
    plane = ControlPlane(data, MemoryCache(), health=lambda: {op: Health() for op in OPERATORS},
                         metrics=ControlMetrics(registry), draw=lambda: 0.0)
    await plane.start()
    return FakeView(plane, registry)


Client = tuple[aiohttp.ClientSession, str, "FakeView"]


async def start_app(view: FakeView, auth: Authenticator | None = None,
                    metrics_public: bool = True) -> tuple[web.AppRunner, int]:
    """The control app over ``view`` listening on 127.0.0.1:<free port>."""
    runner = web.AppRunner(create_app(view, auth, metrics_public))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@contextlib.asynccontextmanager
async def serving_app(view: FakeView, auth: Authenticator | None = None,
                      metrics_public: bool = True) -> AsyncIterator[str]:
    """The control app over ``view`` for the block; yields its base URL. The view's
    control plane is stopped after."""
    runner, port = await start_app(view, auth, metrics_public)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await view.control.stop()


@contextlib.asynccontextmanager
async def authed_client() -> AsyncIterator[Client]:
    """An HTTP session, the base URL and the view of the app with TOKENS required
    (metrics too)."""
    view = await make_view()
    async with serving_app(view, authenticator(), metrics_public=False) as url, \
            aiohttp.ClientSession() as http:
        yield http, url, view


@contextlib.contextmanager
def serve_in_thread(auth: Authenticator | None = None,
                    metrics_public: bool = True) -> Iterator[tuple[str, FakeView]]:
    """The control app on 127.0.0.1:<free port>, in its own thread and event loop."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def start() -> None:
        view = await make_view()
        runner, port = await start_app(view, auth, metrics_public)
        box.update(view=view, runner=runner, port=port)

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield f"http://127.0.0.1:{box['port']}", box["view"]
    finally:
        async def stop() -> None:
            await box["runner"].cleanup()
            await box["view"].control.stop()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
