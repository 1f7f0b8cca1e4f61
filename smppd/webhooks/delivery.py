"""Delivery and MO webhooks: every DLR event of a message with a callback URL (its own
``callback_url``, or its tenant's in ``[[tenants]]``) and every MO for a tenant is
POSTed, signed, as the same JSON as the event.

At least once, through the store's outbox: an event is written to the outbox in the
same write that publishes it (``WebhookSink``), so a crash or a receiver down for hours
loses nothing; the outbox worker (smppd.webhooks.worker) POSTs it. ``CallbackGuard``
refuses, at submit, a URL the daemon would not POST to (the API itself, or a tenant
with no secret to sign with).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from correlation.store import CorrelationStore, Queued, WebhookTargets
from smppd.config import Config
from smppd.intake.events import EventSink
from smppd.intake.message import MessageError, Outbound
from smppd.webhooks import client as webhook_http


class Tenants:
    """Which tenant an event is for, from the running config (a reload applies)."""

    def __init__(self, config: Callable[[], Config]) -> None:
        self._config = config
        self._seen: Config | None = None
        self._defaults: tuple[str, ...] = ()
        self._mo: dict[str, str] = {}

    def _refresh(self) -> None:
        config = self._config()
        if config is not self._seen:
            self._seen = config
            self._defaults = tuple(t.id for t in config.tenants if t.callback_url)
            self._mo = {d: t.id for t in config.tenants for d in t.mo_destinations}

    def targets(self, kind: str, events: Sequence[dict[str, Any]]) -> WebhookTargets | None:
        """What of these events goes to the outbox; None: none of them."""
        self._refresh()
        if kind == "dlr":  # the store looks at each event's message
            return WebhookTargets(tenants=self._defaults)
        owners = [self._mo.get(str(event.get("destination", ""))) for event in events]
        return WebhookTargets(owners=owners) if any(owners) else None


class WebhookSink:
    """An EventSink that also queues the events' webhooks. Over the embedded sink (events
    in the same store) both go in one write; over NATS the outbox is written once the
    events are published (a failure there is retried by the caller: JetStream drops the
    duplicate publish). The write takes the new rows for the deliverer's ``lease`` and
    hands them to ``on_queued``: it POSTs them from memory, with no claim."""

    def __init__(self, inner: EventSink, store: CorrelationStore, tenants: Tenants, *,
                 combined: bool, on_queued: Callable[[Queued], None],
                 lease: Callable[[], float | None] = lambda: None) -> None:
        self.inner = inner
        self._store = store
        self._tenants = tenants
        self._combined = combined
        self._on_queued = on_queued
        self._lease = lease  # None: take nothing (the deliverer is not running)

    async def publish(self, kind: str, event: dict[str, Any]) -> None:
        await self.publish_many(kind, [event])

    async def publish_many(self, kind: str, events: Sequence[dict[str, Any]]) -> None:
        targets = self._tenants.targets(kind, events)
        if targets is None:
            if self._combined:
                await self._store.store_events(kind, events)
            else:
                await self.inner.publish_many(kind, events)
            return
        lease = self._lease()
        if self._combined:
            queued = await self._store.store_events_with_webhooks(kind, events, targets,
                                                                  lease=lease)
        else:
            await self.inner.publish_many(kind, events)
            queued = await self._store.webhook_enqueue(kind, events, targets, lease=lease)
        if queued.rows:
            self._on_queued(queued)


class CallbackGuard:
    """Dispatcher.callback_check: a message's callback_url must not point at this
    daemon's API, and its tenant must have a secret to sign with."""

    def __init__(self, config: Callable[[], Config], api_port: Callable[[], int | None],
                 accepted: Callable[[], None] = lambda: None) -> None:
        self._config = config
        self._api_port = api_port
        self._accepted = accepted  # told of each URL let through

    def __call__(self, msg: Outbound) -> None:
        assert msg.callback_url is not None
        config = self._config()
        host, port = config.api.listen
        port = self._api_port() or port
        if port and webhook_http.points_at(msg.callback_url, host, port):
            raise MessageError([("callback_url", "must not point at this daemon's API")])
        if config.tenant(msg.tenant_id) is None:
            raise MessageError([("callback_url", f"tenant {msg.tenant_id!r} has no "
                                 "[[tenants]] entry with a secret to sign webhooks with")])
        self._accepted()
