"""What the control API sees of the daemon: ``control.view.GatewayView``.

``control`` never imports ``smppd``: the daemon hands the app this object. It reads
the fleet's operators, the store and the dispatcher, and reports bad input by
raising ``InputError`` (a problem naming the field).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from control.plane import ControlPlane
from control.view import ANYONE, Caller, InputError, Unavailable
from smppd.config import OperatorSettings
from smppd.intake.message import MessageError, problems_of
from smppd.link.operator import Operator
from smppd.runtime.wiring import Components
from smppd.webhooks.client import redacted
from vault.client import VaultError

log = logging.getLogger("smppd.daemon")  # its records keep the name they had

CHECK_TIMEOUT = 1.0  # seconds a readiness check may take


class GatewayApi:
    """``started``: whether the daemon is up (and not stopping)."""

    def __init__(self, parts: Components, started: Callable[[], bool]) -> None:
        self.parts = parts
        self.fleet = parts.fleet
        self._started = started

    @property
    def control(self) -> ControlPlane:
        return self.parts.control

    @property
    def registry(self) -> CollectorRegistry:
        self.fleet.export_counters()  # a scrape sees the counts of this moment
        return self.parts.metrics.registry

    # -- health --

    async def dependencies(self) -> dict[str, str]:
        """Each dependency this mode uses: "ok", or what is wrong with it. Asked
        concurrently, each within CHECK_TIMEOUT seconds."""
        p = self.parts
        checks: dict[str, Awaitable[object]] = {"store": p.store.ping()}
        if p.redis is not None:
            checks["redis"] = p.redis.ping()
        config = self.fleet.config
        if p.vault is not None and config.vault is not None:
            checks["vault"] = _vault_health(config.vault.addr)
        names = list(checks)
        answers = await asyncio.gather(
            *(asyncio.wait_for(checks[name], CHECK_TIMEOUT) for name in names),
            return_exceptions=True)
        found = {name: _verdict(answer) for name, answer in zip(names, answers, strict=True)}
        if p.bus is not None:  # the client reconnects on its own: ask it
            nc = p.bus.nc
            found["nats"] = "ok" if nc is not None and nc.is_connected else "unreachable"
        return found

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready: started, a bind up, and every dependency the message path needs
        answering: the store (nothing is accepted without it) and NATS (the intake and
        the receipts' way out). Redis and Vault are reported, not required: without
        Redis each replica paces at its share of the TPS and lease answers come from
        the database; without Vault the credentials read last keep working."""
        operators = self.fleet.operators
        bound = {op.id: op.bound_count for op in operators.values()}
        found = await self.dependencies()
        required = [name for name in ("store", "nats") if name in found]
        ready = (self._started() and any(bound.values())
                 and all(found[name] == "ok" for name in required))
        failing = {op.id: [{"bind": b.name, "reason": b.error_reason, "error": b.last_error,
                            "since": b.error_since} for b in op.binds if b.error_reason]
                   for op in operators.values()}
        return ready, {**found, "required": required, "binds_up": bound,
                       "bind_errors": {op_id: errors for op_id, errors in failing.items()
                                       if errors}}

    # -- operators and binds --

    def operator_statuses(self) -> list[dict[str, Any]]:
        return [self._operator_view(op) for op in self.fleet.operators.values()]

    def operator_status(self, operator_id: str) -> dict[str, Any] | None:
        op = self.fleet.operators.get(operator_id)
        return self._operator_view(op) if op is not None else None

    def status_snapshot(self) -> dict[str, Any]:
        return self.parts.board.snapshot(self.operator_statuses())

    def _operator_view(self, op: Operator) -> dict[str, Any]:
        return {**op.status(), "learned_id_forms": self.parts.matcher.learned_id_forms(op.id)}

    async def operator_action(self, operator_id: str, action: str) -> dict[str, Any] | None:
        op = self.fleet.operators.get(operator_id)
        if op is None:
            return None
        if action == "pause":
            op.pause_gate.close()  # binds stay up; receipts keep flowing
        elif action == "resume":
            op.pause_gate.open()
        elif action == "reload_credentials":
            vault = self.parts.vault
            if vault is None or not vault.uses_vault(op.id):
                raise InputError([("id", "this operator's credentials are not in Vault")],
                                 status=409, title="Conflict")
            try:
                await vault.reload(op)
            except VaultError as exc:
                raise Unavailable(f"vault: {exc}") from None
        else:
            await op.rebind()
        log.info("operator action", extra={"event": f"operator_{action}", "operator": op.id})
        return op.status()

    def patch_operator(self, operator_id: str, tps: float | None,
                       window: int | None) -> dict[str, Any] | None:
        """Runtime only: a reload (or restart) puts the config's values back."""
        op = self.fleet.operators.get(operator_id)
        if op is None:
            return None
        # The whole change is checked as the config would be (every rule, cross-field
        # ones too) before any of it applies.
        changes = {k: v for k, v in (("tps", tps), ("window", window)) if v is not None}
        current = {name: getattr(op.config, name) for name in OperatorSettings.model_fields}
        try:
            OperatorSettings.model_validate({**current, **changes})
        except ValidationError as exc:
            raise InputError(problems_of(exc)) from None
        if tps is not None:
            op.set_tps(tps)
            self.fleet.show_limit(op)
        if window is not None:
            op.set_window(window)
        log.info("operator patched", extra={"event": "operator_patched", "operator": op.id,
                                            "tps": tps, "window": window})
        return op.status()

    def bind_status(self, operator_id: str, bind: str) -> dict[str, Any] | None:
        op = self.fleet.operators.get(operator_id)
        found = [b for b in op.binds if b.name == bind] if op is not None else []
        if not found:
            return None
        return {"operator_id": operator_id, "paused": op.pause_gate.shut if op else False,
                **found[0].status()}

    # -- messages and events --

    async def submit(self, bodies: list[Any], idempotency_key: str | None,
                     caller: Caller = ANYONE) -> list[dict[str, Any]]:
        dispatcher = self.parts.dispatcher
        if not dispatcher.accepting:
            raise Unavailable("shutting down: not accepting messages")
        prepared = []
        problems: list[tuple[str, str]] = []
        single = len(bodies) == 1
        for index, body in enumerate(bodies):
            try:
                prepared.append(dispatcher.prepare(body))
            except MessageError as exc:
                prefix = "" if single else f"messages[{index}]."
                problems.extend((prefix + f, m) for f, m in exc.problems)
        if problems:
            raise InputError(problems)
        return await self.parts.submissions.submit(bodies, prepared, idempotency_key, caller)

    async def message(self, message_id: str) -> dict[str, Any] | None:
        found = await self.parts.store.get_message(message_id)
        if found is None:
            return None
        found.pop("body", None)  # the text is the tenant's business, not the API's
        if found.get("callback_url"):  # its user:password or query may be a credential
            found["callback_url"] = redacted(found["callback_url"])
        return {k: v for k, v in found.items() if not isinstance(v, bytes)}

    async def events(self, kind: str, after: int, limit: int,
                     tenants: frozenset[str] | None = None) -> list[dict[str, Any]]:
        records = await self.parts.store.list_events(
            kind, after, limit, tenants=None if tenants is None else sorted(tenants))
        return [{"id": r.id, "kind": r.kind, "created_at": r.created_at, **r.payload}
                for r in records]

    async def webhook_dead(self, after: int, limit: int,
                           tenants: frozenset[str] | None = None) -> list[dict[str, Any]]:
        webhooks = self.parts.webhooks
        if webhooks is None:
            return []
        found: list[dict[str, Any]] = await webhooks.dead(
            after, limit, None if tenants is None else sorted(tenants))
        return found

    async def webhook_replay(self, delivery_id: int) -> bool:
        webhooks = self.parts.webhooks
        return webhooks is not None and bool(await webhooks.replay(delivery_id))

    # -- administration --

    async def reload(self) -> dict[str, Any]:
        result = await self.parts.reloader.reload()
        if not result.ok:
            problems = [(key or "config", message) for key, message in result.errors]
            raise InputError(problems, status=422, title="Configuration rejected")
        return result.to_dict()

    def set_log_level(self, level: str) -> dict[str, Any]:
        logging.getLogger().setLevel(level)
        log.warning("log level changed", extra={"event": "log_level", "level": level})
        return {"level": level}


def _verdict(answer: object) -> str:
    if isinstance(answer, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(answer, BaseException):
        return "unreachable"
    return answer if isinstance(answer, str) else "ok"


async def _vault_health(addr: str) -> str:
    """Vault's /v1/sys/health: ok (active or standby), sealed, or unreachable."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=CHECK_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as http, \
            http.get(f"{addr.rstrip('/')}/v1/sys/health") as resp:
        if resp.status in (200, 429, 472, 473):  # active, standby, DR / performance standby
            return "ok"
        return "sealed" if resp.status == 503 else f"http {resp.status}"
