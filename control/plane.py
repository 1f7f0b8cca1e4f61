"""The control plane's own state: data, the lease service, the routing table, and cache
invalidation. The daemon builds one and hands it to the API through its view; the
dispatcher calls ``select_now`` and ``validate`` in-process.

The routing table is held in memory (rules and prefixes are small) and reloaded
after a change; while it is not loaded, ``select`` reads the rows one destination
needs straight from the database (the fallback path).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from control.data import ControlData, LeaseIn, PrefixIn, RuleIn
from control.leases import Cache, Lease, LeaseResult, LeaseService, NatsInvalidation
from control.metrics import ControlMetrics
from control.routing import Decision, Health, PrefixRow, RoutingTable, RuleRow, SelectRequest
from control.routing import select as select_operator

log = logging.getLogger("control.plane")


class ControlPlane:
    def __init__(self, data: ControlData, cache: Cache, *,
                 health: Callable[[], Mapping[str, Health]],
                 ttl: float = 300.0, negative_ttl: float = 30.0,
                 key_prefix: str = "smppd:lease:", enforce: bool = True,
                 metrics: ControlMetrics | None = None, nats_url: str | None = None,
                 clock: Callable[[], float] = time.time,
                 draw: Callable[[], float] = random.random) -> None:
        self.data = data
        self.health = health
        self.enforce = enforce
        self.metrics = metrics
        self.clock = clock
        self.draw = draw
        self.leases = LeaseService(data, cache, ttl=ttl, negative_ttl=negative_ttl,
                                   key_prefix=key_prefix, clock=clock,
                                   observe=metrics.observe_lease if metrics else None)
        if metrics is not None:
            metrics.track_hit_ratio(lambda: self.leases.hit_ratio)
        self.table: RoutingTable | None = None
        self._stale: RoutingTable | None = None  # dispatch keeps routing while reloading
        self.nats = (NatsInvalidation(nats_url, self._on_invalidation) if nats_url else None)
        self._reload: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the data and load the routing table; a failure here is loud."""
        await self.data.open()
        await self.reload_routing()
        if self.nats is not None:
            await self.nats.start()

    async def stop(self) -> None:
        if self.nats is not None:
            await self.nats.stop()
        if self._reload is not None:
            self._reload.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reload
        await self.leases.cache.close()
        await self.data.close()

    # -- routing --

    async def reload_routing(self) -> None:
        prefixes, rules = await self.data.routing_rows()
        self.table = self._stale = RoutingTable(prefixes, rules)

    def _schedule_reload(self) -> None:
        self.table = None  # the fallback path serves until the new table is in

        async def reload() -> None:
            try:
                await self.reload_routing()
            except Exception as exc:
                log.warning("routing reload failed", extra={"event": "routing_reload_failed",
                                                            "error": type(exc).__name__})

        if self._reload is not None:
            self._reload.cancel()  # the new load reads everything anyway
        self._reload = asyncio.ensure_future(reload())

    def select_now(self, req: SelectRequest) -> Decision | None:
        """In-process selection over the loaded table (None: not loaded)."""
        table = self.table or self._stale
        return self._select(table, req) if table is not None else None

    async def select(self, req: SelectRequest) -> Decision:
        if self.table is not None:
            return self._select(self.table, req)
        prefixes, rules = await self.data.routing_rows(req.destination)
        return self._select(RoutingTable(prefixes, rules), req)

    def _select(self, table: RoutingTable, req: SelectRequest) -> Decision:
        decision = select_operator(table, req, self.health(), now=self.clock(), draw=self.draw)
        if self.metrics is not None:
            self.metrics.selections.labels(
                "chosen" if decision.operator_id else "none").inc()
        return decision

    # -- leases --

    async def validate(self, sender: str, tenant_id: str) -> LeaseResult:
        return await self.leases.validate(sender, tenant_id)

    async def invalidate(self, senders: Iterable[str] = (), everything: bool = False,
                         routing: bool = False) -> dict[str, Any]:
        senders = list(senders)
        count = await self.leases.invalidate(senders, everything) if senders or everything else 0
        if routing or everything:
            self._schedule_reload()
        return {"leases": "all" if count < 0 else count, "routing": routing or everything}

    async def _on_invalidation(self, senders: list[str], everything: bool,
                               routing: bool) -> None:
        await self.invalidate(senders, everything, routing)

    # -- admin: every change invalidates what it affects --

    async def put_rule(self, rule: RuleIn, rule_id: int | None = None) -> RuleRow | None:
        await self._check_operators([o.operator_id for o in rule.operators])
        row = await self.data.put_rule(rule, rule_id)
        self._schedule_reload()
        return row

    async def delete_rule(self, rule_id: int) -> RuleRow | None:
        row = await self.data.delete_rule(rule_id)
        if row is not None:
            self._schedule_reload()
        return row

    async def put_prefix(self, prefix: PrefixIn) -> PrefixRow:
        await self._check_operators([prefix.operator_id])
        row = await self.data.put_prefix(prefix)
        self._schedule_reload()
        return row

    async def delete_prefix(self, prefix: str) -> bool:
        found = await self.data.delete_prefix(prefix)
        if found:
            self._schedule_reload()
        return found

    async def put_lease(self, lease: LeaseIn) -> Lease:
        row = await self.data.put_lease(lease)
        await self.leases.invalidate([lease.sender])
        return row

    async def delete_lease(self, sender: str) -> bool:
        found = await self.data.delete_lease(sender)
        await self.leases.invalidate([sender])
        return found

    async def _check_operators(self, ids: list[str]) -> None:
        if len(set(ids)) != len(ids):
            raise UnknownOperator([], "an operator may appear once per rule")
        known = await self.data.operator_ids()
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise UnknownOperator(unknown)


class UnknownOperator(ValueError):
    """A reference to operators that do not exist (or twice to one): HTTP 409."""

    def __init__(self, ids: list[str], message: str = "") -> None:
        super().__init__(message or "unknown operator(s): " + ", ".join(ids))
        self.ids = ids
