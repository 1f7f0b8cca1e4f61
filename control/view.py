"""The narrow interface the control API reads the daemon through.

``control`` never imports ``smppd``: the daemon hands the app an object with these
methods, and reports bad input by raising ``InputError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from prometheus_client import CollectorRegistry

if TYPE_CHECKING:
    from control.plane import ControlPlane


class InputError(Exception):
    """Bad input; ``problems`` are (field, message) pairs, ``status`` the HTTP status."""

    def __init__(self, problems: list[tuple[str, str]], status: int = 422,
                 title: str = "Invalid request") -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = problems
        self.status = status
        self.title = title
        self.extra: dict[str, Any] = {}  # more members of the problem document
        self.headers: dict[str, str] = {}  # e.g. Retry-After on a 503


class Unavailable(Exception):
    """The daemon cannot take the request now (shutting down, store down): a 503
    with Retry-After ``retry_after`` seconds."""

    def __init__(self, detail: str, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Forbidden(Exception):
    """The caller's token may not act for this tenant (403); ``field`` names where the
    tenant came from."""

    def __init__(self, detail: str, field: str = "tenant_id") -> None:
        super().__init__(detail)
        self.field = field


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls: the token's name (None: the API is open), the tenants it may act
    for (None: every tenant) and its roles, implied ones included (None: the API is
    open, so every role)."""

    name: str | None = None
    tenants: frozenset[str] | None = None
    roles: frozenset[str] | None = None

    def has(self, role: str) -> bool:
        return self.roles is None or role in self.roles

    def may_act_for(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants

    def check(self, tenant: Any, field: str = "tenant_id") -> None:
        """Forbidden unless the caller may act for ``tenant`` (a non-string is left to
        validation, which names the field)."""
        if isinstance(tenant, str) and not self.may_act_for(tenant.strip()):
            raise Forbidden(f"this token may not act for tenant {tenant!r}"
                            f" (its tenants: {', '.join(sorted(self.tenants or ()))})", field)


ANYONE = Caller()


class GatewayView(Protocol):
    @property
    def registry(self) -> CollectorRegistry: ...

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, detail): a field per dependency ("ok" or what is wrong)."""

    def operator_statuses(self) -> list[dict[str, Any]]: ...

    def status_snapshot(self) -> dict[str, Any]:
        """What the status page shows: operators with their binds (as
        operator_statuses, plus rates and when each bind's last error was first seen),
        totals and the last errors."""

    def operator_status(self, operator_id: str) -> dict[str, Any] | None: ...

    async def submit(self, bodies: list[Any], idempotency_key: str | None,
                     caller: Caller = ANYONE) -> list[dict[str, Any]]:
        """Validate and accept; the same Idempotency-Key from the same caller (token and
        tenants) within 48 h answers the first request's results again."""

    async def message(self, message_id: str) -> dict[str, Any] | None: ...

    async def events(self, kind: str, after: int, limit: int,
                     tenants: frozenset[str] | None = None) -> list[dict[str, Any]]:
        """Events after the cursor; with ``tenants``, only those of their messages."""

    async def webhook_dead(self, after: int, limit: int,
                           tenants: frozenset[str] | None = None) -> list[dict[str, Any]]:
        """Dead webhook deliveries after the cursor, oldest first (of those tenants)."""

    async def webhook_replay(self, delivery_id: int) -> bool:
        """A dead delivery back in the outbox, due now; False: no such dead delivery."""

    async def reload(self) -> dict[str, Any]:
        """Re-read the config; raise InputError (nothing changed) when it is invalid."""

    def set_log_level(self, level: str) -> dict[str, Any]:
        """Set the root log level (an upper-case logging level name)."""

    # -- bind management and the control plane (issue 5) --

    @property
    def control(self) -> ControlPlane | None:
        """Routing and leases; None when the daemon runs without them."""

    async def operator_action(self, operator_id: str,
                              action: Literal["pause", "resume", "rebind",
                                              "reload_credentials"],
                              ) -> dict[str, Any] | None:
        """Pause (binds stay up, receipts flow), resume, rebind, or read the operator's
        credentials from Vault now (rebinding if they changed); None: no operator."""

    def patch_operator(self, operator_id: str, tps: float | None,
                       window: int | None) -> dict[str, Any] | None:
        """Change TPS / window at runtime (until the next reload); None: no operator."""

    def bind_status(self, operator_id: str, bind: str) -> dict[str, Any] | None:
        """One bind's detail; None: no such operator or bind."""
